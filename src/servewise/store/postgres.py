"""The shared run store on PostgreSQL (psycopg 3, the ``postgres`` extra): the same tables and the same
logic as SQLite (``store.sql``), for a team whose CI runners, gate service and engineers share one history.

Records are appended with COPY, one batch per transaction as on SQLite. Credentials come from libpq's own
places (``PGPASSWORD``, a service or pass file); the URL is shown only without its password, and every
failure is one line: the server cannot be reached, refuses the login or lacks the database (exit 3), or the
URL itself is malformed (exit 2).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import conninfo, sql

from servewise.errors import StoreError, UnreachableError, UsageError
from servewise.store.connection import Row
from servewise.store.location import redact
from servewise.store.migrations import migrate
from servewise.store.schema import POSTGRES
from servewise.store.sql import Store
from servewise.store.sqlite import default_store_path

CONNECT_TIMEOUT_S = 10  # unless the URL says otherwise: an unreachable host fails in seconds, not minutes
_SCHEMA_LOCK = 0x5E12_7715E  # pg_advisory_xact_lock key: one servewise at a time creates or upgrades


def _reason(exc: psycopg.Error, secret: str | None) -> str:
    """libpq's message as one line: the part after the last 'failed:' of the first line that has one (several
    addresses tried give a line each), without 'FATAL:' (or the password)."""
    lines = [part.strip() for part in str(exc).splitlines() if part.strip()] or [type(exc).__name__]
    line = next((part for part in lines if "failed: " in part), lines[0])
    reason = line.rpartition("failed: ")[2] or line
    reason = reason.removeprefix("FATAL:").strip()
    return reason.replace(secret, "***") if secret else reason


def _conninfo(url: str) -> str:
    """The URL with servewise's connect timeout and application name where it sets none; a URL libpq cannot
    parse is a usage error."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises here, not as "cannot connect" later
        given = conninfo.conninfo_to_dict(url)
    except (ValueError, psycopg.ProgrammingError) as exc:
        secret = urlsplit(url).password
        reason = str(exc).splitlines()[0]
        raise UsageError(f"malformed store URL {redact(url)}: "
                         f"{reason.replace(secret, '***') if secret else reason}") from None  # fmt: skip
    extra: dict[str, Any] = {"application_name": "servewise"}
    if "connect_timeout" not in given:
        extra["connect_timeout"] = CONNECT_TIMEOUT_S
    return conninfo.make_conninfo(url, **extra)


class PostgresConnection:
    dialect = POSTGRES

    def __init__(self, connection: psycopg.Connection[Row], where: str, secret: str | None) -> None:
        self._db = connection
        self._where = where
        self._secret = secret

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            raise UnreachableError(f"lost the run store at {self._where}: {_reason(exc, self._secret)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"the run store at {self._where}: {_reason(exc, self._secret)}") from None

    def execute(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._errors():
            cursor = self._db.execute(query.replace("?", "%s"), params or None)
            return cursor.fetchall() if cursor.description else []

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with self._errors(), self._db.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._errors(), self._db.transaction():
            yield

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        with self.transaction():
            self.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            yield

    def close(self) -> None:
        self._db.close()


class PostgresStore(Store):
    """The PostgreSQL store at ``url`` (``postgresql://user@host:5432/db``)."""

    def __init__(self, url: str) -> None:
        self.url = redact(url)
        info = _conninfo(url)
        given = conninfo.conninfo_to_dict(info).get("password")
        secret = str(given) if given else None
        try:
            connection: psycopg.Connection[Row] = psycopg.connect(info, autocommit=True)
        except psycopg.Error as exc:
            raise UnreachableError(f"cannot open the run store at {self.url}: {_reason(exc, secret)}") from None
        db = PostgresConnection(connection, self.url, secret)
        try:
            migrate(db, self.url)
        except BaseException:
            db.close()
            raise
        super().__init__(db, self.url, default_store_path().parent)
