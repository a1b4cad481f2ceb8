"""Flags several commands share, declared once so each reads and helps the same everywhere.

A leaf of declarations: it imports nothing from the other command modules.
"""

from __future__ import annotations

from typing import Annotated

import typer

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Run store: a SQLite file or a postgresql://user@host/db URL, its password in PGPASSWORD or "
        "~/.pgpass (default: $SERVEWISE_STORE or ~/.local/share/servewise/runs.db).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
QuietFlag = Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")]
ApiKeyEnvOption = Annotated[
    str | None, typer.Option("--api-key-env", help="Env var holding the API key (default OPENAI_API_KEY).")
]
ApiKeyFileOption = Annotated[str | None, typer.Option("--api-key-file", help="File holding the API key.")]
LabelOption = Annotated[list[str], typer.Option("--label", help="KEY=VALUE tag, repeatable.")]
