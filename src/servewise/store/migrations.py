"""Versioned store schema, one chain for both backends: a store from an older servewise is upgraded in place,
in one transaction under the schema lock; one from a newer servewise is refused, so nothing is written in a
shape this release cannot read.

Version 1 (release 0.1.0) kept later commands' notes inside the run's summary JSON; version 2 keeps
them in ``annotations`` beside it, so the measured result is written once and never rewritten; version 3
adds each request's cached prompt tokens, its conversation and turn, and a reasoning model's first
answer time and reasoning tokens. PostgreSQL stores began at version 3; the steps are portable SQL, so a
later step serves both backends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from servewise.errors import StoreError
from servewise.store.connection import Connection
from servewise.store.schema import annotations_table, create_statements

SCHEMA_VERSION = 3

# version 1 summary keys that were notes, grouped by the note kind that now holds them
_V1_NOTES: dict[str, tuple[str, ...]] = {
    "gate": ("gate",),
    "repeat": ("repeat_spread", "repeat_group"),
    "stage": ("stage", "probes"),
    "plan": ("plan", "plan_note"),
}
_V1_FIELD_NAMES = {"repeat_spread": "spread", "repeat_group": "group", "plan_note": "note"}


def schema_version(db: Connection) -> int | None:
    """The version a store was written in; None for a new (empty) one."""
    if not db.execute(db.dialect.has_table, ("meta",)):
        return None
    rows = db.execute("SELECT value FROM meta WHERE key = 'schema_version'")
    return int(rows[0][0]) if rows else None


def _refuse_newer(version: int | None, where: str) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"the run store at {where} was written by a newer servewise (store schema {version}; this "
            f"release reads up to {SCHEMA_VERSION}): upgrade servewise, or use another --store"
        )


def migrate(db: Connection, where: str) -> None:
    """Create a new store, upgrade an old one, or refuse one from a newer release (``where`` names it, with
    no credentials, in the refusal)."""
    version = schema_version(db)
    _refuse_newer(version, where)
    if version == SCHEMA_VERSION:
        return
    with db.schema_lock():
        found = schema_version(db)  # another process may have created or upgraded it while this one waited
        _refuse_newer(found, where)
        if found == SCHEMA_VERSION:
            return
        if found is None:
            for statement in create_statements(db.dialect):
                db.execute(statement)
        else:
            for step in _STEPS[found - 1 :]:
                step(db)
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )


def _v1_to_v2(db: Connection) -> None:
    db.execute("ALTER TABLE runs ADD COLUMN summary_schema INTEGER")
    db.execute(annotations_table(db.dialect))
    rows = db.execute("SELECT id, kind, summary_json FROM runs WHERE summary_json IS NOT NULL")
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


def _v2_to_v3(db: Connection) -> None:
    for column, kind in (("cached_tokens", "INTEGER"), ("session_id", "INTEGER"), ("turn", "INTEGER"),
                         ("t_answer", db.dialect.real), ("reasoning_tokens", "INTEGER")):  # fmt: skip
        db.execute(f"ALTER TABLE records ADD COLUMN {column} {kind}")


# _STEPS[v - 1] upgrades version v to v + 1
_STEPS: list[Callable[[Connection], None]] = [_v1_to_v2, _v2_to_v3]


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
