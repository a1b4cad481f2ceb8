"""Which store a command opens: ``--store``, else ``$SERVEWISE_STORE``, else the user's SQLite file. A
``postgresql://`` (or ``postgres://``) URL is a shared PostgreSQL store, anything else a SQLite path.

A URL's credentials come from its environment (``PGPASSWORD``, a libpq service or pass file); one written
into the URL is accepted but never shown: ``redact`` is the only form of a URL that leaves this package.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from servewise.errors import UsageError
from servewise.store.sql import Store
from servewise.store.sqlite import RunStore, default_store_path

_SCHEMES = ("postgresql", "postgres")
NEEDS_PSYCOPG = "the PostgreSQL store needs psycopg: pip install 'servewise[postgres]'"


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.partition("://")[0].lower() in _SCHEMES


def redact(url: str) -> str:
    """The URL without its password (in the user part or a ``password=`` parameter): safe to show or store."""
    parts = urlsplit(url)
    user, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}{at}{hostport}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if "password" not in k.lower()]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


def chosen_location(location: str | Path | None = None) -> str | Path:
    """``location``, else ``$SERVEWISE_STORE``, else the default SQLite path."""
    if location:
        return location
    if env := os.environ.get("SERVEWISE_STORE"):
        return env
    return default_store_path()


def open_store(location: str | Path | None = None) -> Store:
    """The store at ``location`` (see ``chosen_location``), created or upgraded to this release's schema."""
    where = chosen_location(location)
    if is_url(where):
        try:
            from servewise.store.postgres import PostgresStore
        except ImportError as exc:
            if exc.name is not None and exc.name.partition(".")[0] == "psycopg":
                raise UsageError(NEEDS_PSYCOPG) from None
            raise
        return PostgresStore(str(where))
    return RunStore(Path(where).expanduser())
