"""The one thing a backend supplies: a connection that takes portable SQL (``?`` placeholders) and gives rows
back. The store's logic and its migrations are written once against it (``store.sql``, ``store.migrations``)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from servewise.store.schema import Dialect

Row = tuple[Any, ...]


class Connection(Protocol):
    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; its rows (none for a statement that returns none)."""
        ...

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """Append rows the fastest way the backend has (a row with the key of one already there replaces it
        on SQLite and is refused on PostgreSQL: callers never write a key twice)."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Everything inside commits together or not at all."""
        ...

    def schema_lock(self) -> AbstractContextManager[None]:
        """A transaction that holds the store's schema lock: one process at a time creates or upgrades it."""
        ...

    def close(self) -> None: ...
