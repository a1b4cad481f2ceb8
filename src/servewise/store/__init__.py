"""Run history: runs, their request records and telemetry samples, and the notes kept beside them, in SQLite
(embedded, the default) or PostgreSQL (shared by a team); ``open_store`` picks the backend."""

from servewise.errors import StoreError
from servewise.store.location import open_store, redact
from servewise.store.rows import RunCopy, RunRow, StoredResult, new_run_id
from servewise.store.sql import Store
from servewise.store.sqlite import RunStore, default_store_path

__all__ = [
    "RunCopy",
    "RunRow",
    "RunStore",
    "Store",
    "StoreError",
    "StoredResult",
    "default_store_path",
    "new_run_id",
    "open_store",
    "redact",
]
