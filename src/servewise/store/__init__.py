"""Run history: runs, their request records and telemetry samples, and the notes kept beside them."""

from servewise.errors import StoreError
from servewise.store.sqlite import RunRow, RunStore, StoredResult, default_store_path

__all__ = ["RunRow", "RunStore", "StoreError", "StoredResult", "default_store_path"]
