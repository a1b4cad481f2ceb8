"""Outputs: terminal tables, the HTML report, exports."""
