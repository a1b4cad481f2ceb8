"""Releases: deploy a version with the team's own commands, gate it against the last good one, and roll
back to it when the gate says so (``flows.release`` runs the steps; this package holds their parts)."""
