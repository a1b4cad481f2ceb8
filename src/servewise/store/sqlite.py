"""The embedded run store: one SQLite file (WAL, so a reader never waits for a bench that is writing)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from servewise.errors import StoreError
from servewise.store.connection import Row
from servewise.store.migrations import migrate
from servewise.store.schema import SQLITE
from servewise.store.sql import Store


def default_store_path() -> Path:
    """``$XDG_DATA_HOME/servewise/runs.db`` (``~/.local/share/...``)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "servewise" / "runs.db"


class SqliteConnection:
    dialect = SQLITE

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._db.execute(sql, params).fetchall()

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        marks = ", ".join("?" * len(columns))
        self._db.executemany(f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._db:
            self._db.execute("BEGIN")
            yield

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            yield

    def close(self) -> None:
        self._db.close()


class RunStore(Store):
    """The SQLite store at ``path`` (default: ``default_store_path()``)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the run store at {self.path}: {exc}") from None
        connection = SqliteConnection(db)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            migrate(connection, str(self.path))
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"cannot open the run store at {self.path}: {exc}") from None
        except StoreError:
            db.close()
            raise
        super().__init__(connection, str(self.path), self.path.parent)
