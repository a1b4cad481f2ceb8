"""Versioned store schema: a store from an older servewise is upgraded in place, in one transaction;
one from a newer servewise is refused, so nothing is written in a shape this release cannot read.

Version 1 (release 0.1.0) kept later commands' notes inside the run's summary JSON; version 2 keeps
them in ``annotations`` beside it, so the measured result is written once and never rewritten; version 3
adds each request's cached prompt tokens, its conversation and turn, and a reasoning model's first
answer time and reasoning tokens.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from servewise.errors import StoreError

SCHEMA_VERSION = 3

# version 1 summary keys that were notes, grouped by the note kind that now holds them
_V1_NOTES: dict[str, tuple[str, ...]] = {
    "gate": ("gate",),
    "repeat": ("repeat_spread", "repeat_group"),
    "stage": ("stage", "probes"),
    "plan": ("plan", "plan_note"),
}
_V1_FIELD_NAMES = {"repeat_spread": "spread", "repeat_group": "group", "plan_note": "note"}


def _version(db: sqlite3.Connection) -> int | None:
    has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else None


def migrate(db: sqlite3.Connection, schema: str, path: Path) -> None:
    """Create a new store, upgrade an old one, or refuse one from a newer release."""
    version = _version(db)
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"the run store at {path} was written by a newer servewise (store schema {version}; this "
            f"release reads up to {SCHEMA_VERSION}): upgrade servewise, or use another --store"
        )
    if version == SCHEMA_VERSION:
        return
    if version is None:  # a new store: every statement is idempotent, so concurrent openers agree
        db.executescript(schema)
        _set_version(db)
        return
    with db:
        db.execute("BEGIN IMMEDIATE")
        found = _version(db)  # another process may have upgraded it while this one waited
        if found == 1:
            _v1_to_v2(db)
        if found in (1, 2):
            _v2_to_v3(db)
            _set_version(db)


def _set_version(db: sqlite3.Connection) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _v1_to_v2(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE runs ADD COLUMN summary_schema INTEGER")
    db.execute(
        "CREATE TABLE annotations (run_id TEXT NOT NULL, kind TEXT NOT NULL, created_at REAL NOT NULL,"
        " value_json TEXT NOT NULL, PRIMARY KEY (run_id, kind))"
    )
    rows = db.execute("SELECT id, kind, summary_json FROM runs WHERE summary_json IS NOT NULL").fetchall()
    for run_id, kind, text in rows:
        summary, notes = split_v1_summary(json.loads(text), kind)
        for note_kind, value in notes:
            db.execute(
                "INSERT INTO annotations (run_id, kind, created_at, value_json) VALUES (?, ?, ?, ?)",
                (run_id, note_kind, time.time(), json.dumps(value)),
            )
        db.execute(
            "UPDATE runs SET summary_json = ?, summary_schema = 2 WHERE id = ?", (json.dumps(summary), run_id)
        )


def _v2_to_v3(db: sqlite3.Connection) -> None:
    for column, kind in (("cached_tokens", "INTEGER"), ("session_id", "INTEGER"), ("turn", "INTEGER"),
                         ("t_answer", "REAL"), ("reasoning_tokens", "INTEGER")):  # fmt: skip
        db.execute(f"ALTER TABLE records ADD COLUMN {column} {kind}")


def split_v1_summary(
    summary: dict[str, Any], kind: str
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """A version-1 summary -> (the measured result, its notes in the order they were written).

    A sweep's ``diagnosis`` was doctor's note on its saturating step; a bench's is its own result."""
    groups = dict(_V1_NOTES) | ({"diagnosis": ("diagnosis",)} if kind == "sweep" else {})
    owner = {key: group for group, keys in groups.items() for key in keys}
    notes: dict[str, dict[str, Any]] = {}
    measured: dict[str, Any] = {}
    for key, value in summary.items():
        group = owner.get(key)
        if group is None:
            measured[key] = value
        elif group in ("gate", "diagnosis"):
            notes[group] = value
        else:
            notes.setdefault(group, {})[_V1_FIELD_NAMES.get(key, key)] = value
    return measured, list(notes.items())
