"""Run history: runs, their request records and telemetry samples (SQLite by default)."""

from servewise.store.sqlite import RunRow, RunStore, StoreError, default_store_path

__all__ = ["RunRow", "RunStore", "StoreError", "default_store_path"]
