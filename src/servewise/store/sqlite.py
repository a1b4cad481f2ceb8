"""SQLite run store. Portable SQL only, so a shared PostgreSQL store can follow behind the same methods.

Records and samples are appended in batches during the run and committed as they come, so a crash
or Ctrl-C loses at most the batch in hand and memory stays flat however long the run is.

A run's measured result is written once, when it finishes, as typed JSON with its schema version;
what later commands note on it (a gate verdict, a repeat spread, a stage, a plan) goes into the
``annotations`` table beside it, never into the result.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servewise.errors import StoreError
from servewise.records import ErrorClass, Phase, RequestRecord, Sample, TokenSource, record_to_row
from servewise.results import Annotations, ColdstartResult, ReleaseResult, RunResult, SweepResult
from servewise.results.annotations import NOTE_KINDS
from servewise.results.base import Result
from servewise.store.migrations import migrate

RESULT_SCHEMA = 2  # the shape of summary_json: 1 = release 0.1.0 (notes inside), 2 = typed, notes apart
StoredResult = RunResult | SweepResult | ColdstartResult | ReleaseResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    parent_id TEXT,
    created_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    labels_json TEXT NOT NULL,
    tool_version TEXT NOT NULL,
    target_json TEXT NOT NULL,
    environment_json TEXT NOT NULL,
    summary_json TEXT,
    summary_schema INTEGER
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS records (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    worker INTEGER NOT NULL,
    phase TEXT NOT NULL,
    t_sched REAL NOT NULL,
    t_send REAL NOT NULL,
    t_first REAL,
    t_end REAL,
    status INTEGER,
    error TEXT,
    error_detail TEXT,
    max_tokens INTEGER,
    input_tokens INTEGER,
    output_tokens INTEGER,
    tokens_source TEXT NOT NULL,
    finish_reason TEXT,
    chunk_offsets BLOB,
    chunk_tokens BLOB,
    cached_tokens INTEGER,
    session_id INTEGER,
    turn INTEGER,
    t_answer REAL,
    reasoning_tokens INTEGER,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL,
    t REAL NOT NULL,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    labels_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_run ON samples (run_id, source, name);
CREATE TABLE IF NOT EXISTS annotations (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    value_json TEXT NOT NULL,
    PRIMARY KEY (run_id, kind)
);
"""


def default_store_path() -> Path:
    """``$SERVEWISE_STORE``, else ``$XDG_DATA_HOME/servewise/runs.db`` (``~/.local/share/...``)."""
    if env := os.environ.get("SERVEWISE_STORE"):
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "servewise" / "runs.db"


def new_run_id(now: float | None = None) -> str:
    """Sortable by time, unique without coordination: ``20261125-140512-a3f9``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now or time.time()))
    return f"{stamp}-{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class RunRow:
    id: str
    kind: str
    parent_id: str | None
    created_at: float
    finished_at: float | None
    status: str
    spec: dict[str, Any]
    labels: dict[str, str]
    tool_version: str
    target: dict[str, Any]
    environment: dict[str, Any]
    result: StoredResult | None
    annotations: Annotations

    @property
    def measured(self) -> RunResult | None:
        """The bench or sweep result, when this run has one (not a coldstart, not unfinished)."""
        return self.result if isinstance(self.result, RunResult) else None

    def export_json(self) -> dict[str, Any] | None:
        """The result with its notes laid in, the one JSON shape `runs show --json` and exports print."""
        if self.result is None:
            return None
        return self.result.to_json() | self.annotations.legacy_json()


def _result_type(kind: str) -> type[StoredResult]:
    if kind == "sweep":
        return SweepResult
    if kind == "release":
        return ReleaseResult
    return ColdstartResult if kind == "coldstart" else RunResult


def _pack_floats(values: list[float], origin: float) -> bytes:
    return array("f", (v - origin for v in values)).tobytes()


def _unpack_floats(blob: bytes | None, origin: float) -> list[float]:
    if not blob:
        return []
    return [origin + v for v in array("f", blob)]


class RunStore:
    """All reads and writes of run history go through here."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the run store at {self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            migrate(self._db, _SCHEMA, self.path)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"cannot open the run store at {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        kind: str,
        spec: dict[str, Any],
        labels: dict[str, str],
        tool_version: str,
        target: dict[str, Any],
        environment: dict[str, Any],
        parent_id: str | None = None,
        run_id: str | None = None,
    ) -> str:
        run_id = run_id or new_run_id()
        self._db.execute(
            "INSERT INTO runs (id, kind, parent_id, created_at, status, spec_json, labels_json, tool_version,"
            " target_json, environment_json) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
            (
                run_id,
                kind,
                parent_id,
                time.time(),
                json.dumps(spec, sort_keys=True),
                json.dumps(labels, sort_keys=True),
                tool_version,
                json.dumps(target, sort_keys=True),
                json.dumps(environment, sort_keys=True),
            ),
        )
        return run_id

    def finish_run(self, run_id: str, result: StoredResult) -> None:
        """Write the measured result once; the run is visible as finished only from here."""
        self._db.execute(
            "UPDATE runs SET status = ?, finished_at = ?, summary_json = ?, summary_schema = ? WHERE id = ?",
            (result.status, time.time(), json.dumps(result.to_json()), RESULT_SCHEMA, run_id),
        )

    def annotate(self, run_id: str, note: Result) -> None:
        """Keep a later command's note beside the run's result (the newest note of a kind wins)."""
        kind = next(k for k, t in NOTE_KINDS.items() if type(note) is t)
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM annotations WHERE run_id = ? AND kind = ?", (run_id, kind))
            self._db.execute(
                "INSERT INTO annotations (run_id, kind, created_at, value_json) VALUES (?, ?, ?, ?)",
                (run_id, kind, time.time(), json.dumps(note.to_json())),
            )

    def _annotations(self, run_id: str) -> Annotations:
        rows = self._db.execute(
            "SELECT kind, value_json FROM annotations WHERE run_id = ? ORDER BY rowid", (run_id,)
        ).fetchall()
        notes = {kind: NOTE_KINDS[kind].model_validate_json(value) for kind, value in rows if kind in NOTE_KINDS}
        return Annotations.model_validate(notes | {"order": list(notes)})

    def get_run(self, run_id: str) -> RunRow:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            row = self._db.execute(
                "SELECT * FROM runs WHERE id LIKE ? ORDER BY created_at DESC LIMIT 2", (f"%{run_id}%",)
            ).fetchall()
            if len(row) != 1:
                raise StoreError(f"no run {run_id!r} in {self.path} (see `servewise runs list`)")
            row = row[0]
        return self._row(row)

    def latest_run(self, kind: str | None = None) -> RunRow | None:
        runs = self.list_runs(kind=kind, limit=1)
        return runs[0] if runs else None

    def list_runs(
        self,
        *,
        kind: str | None = None,
        labels: dict[str, str] | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        include_children: bool = False,
        limit: int | None = None,
    ) -> list[RunRow]:
        """Newest first. Label filtering is done here so the SQL stays portable."""
        clauses, params = [], []
        if kind:
            clauses.append("kind = ?")
            params.append(kind)
        if status:
            clauses.append("status = ?")
            params.append(status)
        if parent_id:
            clauses.append("parent_id = ?")
            params.append(parent_id)
        elif not include_children:
            clauses.append("parent_id IS NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(f"SELECT * FROM runs {where} ORDER BY created_at DESC", params)
        found = []
        for raw in rows:
            run = self._row(raw)
            if labels and any(run.labels.get(k) != v for k, v in labels.items()):
                continue
            found.append(run)
            if limit and len(found) >= limit:
                break
        return found

    def earlier_steps(self, run: RunRow) -> list[str]:
        """The ids of the steps of ``run``'s sweep that ran before it, oldest first (none outside a sweep)."""
        if run.parent_id is None:
            return []
        siblings = self.list_runs(parent_id=run.parent_id)
        return [r.id for r in reversed(siblings) if r.created_at < run.created_at]

    def _row(self, row: tuple) -> RunRow:
        (rid, kind, parent, created, finished, status, spec, labels, version, target, env, summary, _) = row
        return RunRow(
            id=rid,
            kind=kind,
            parent_id=parent,
            created_at=created,
            finished_at=finished,
            status=status,
            spec=json.loads(spec),
            labels=json.loads(labels),
            tool_version=version,
            target=json.loads(target),
            environment=json.loads(env),
            result=_result_type(kind).model_validate_json(summary) if summary else None,
            annotations=self._annotations(rid),
        )

    # -- records ------------------------------------------------------------------------------

    def append_records(self, run_id: str, records: Iterable[RequestRecord]) -> int:
        return self.append_rows(run_id, [record_to_row(r) for r in records])

    def append_rows(self, run_id: str, rows: Iterable[tuple]) -> int:
        """Rows as the workers ship them (``records.record_to_row``): no dataclass on the parent's path."""
        stored = [
            (run_id, index, worker, phase, t_sched, t_send, t_first, t_end, status, error, (detail or "")[:500] or None,
             max_tokens, input_tokens, output_tokens, source, finish,
             _pack_floats(chunk_times, t_send) if chunk_times else None,
             array("i", chunk_tokens).tobytes() if chunk_tokens else None, cached, session, turn, t_answer, reasoning)
            for (index, t_sched, t_send, t_first, t_end, chunk_times, chunk_tokens, max_tokens, input_tokens,
                 output_tokens, source, status, error, detail, finish, phase, worker, cached, session, turn,
                 t_answer, reasoning) in rows
        ]  # fmt: skip
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                stored,
            )
        return len(stored)

    def iter_records(self, run_id: str) -> Iterator[RequestRecord]:
        cursor = self._db.execute(
            "SELECT idx, worker, phase, t_sched, t_send, t_first, t_end, status, error, error_detail, max_tokens, input_tokens,"
            " output_tokens, tokens_source, finish_reason, chunk_offsets, chunk_tokens, cached_tokens, session_id, turn,"
            " t_answer, reasoning_tokens"
            " FROM records WHERE run_id = ? ORDER BY idx",
            (run_id,),
        )
        for (idx, worker, phase, t_sched, t_send, t_first, t_end, status, error, detail, max_tokens, tin, tout,
             source, finish, offsets, tokens, cached, session, turn, t_answer, reasoning) in cursor:  # fmt: skip
            yield RequestRecord(
                index=idx,
                worker=worker,
                phase=Phase(phase),
                t_sched=t_sched,
                t_send=t_send,
                t_first=t_first,
                t_end=t_end,
                status=status,
                error=ErrorClass(error) if error else None,
                error_detail=detail or "",
                max_tokens=max_tokens,
                input_tokens=tin,
                output_tokens=tout,
                output_tokens_source=TokenSource(source),
                finish_reason=finish,
                chunk_times=_unpack_floats(offsets, t_send),
                chunk_tokens=list(array("i", tokens)) if tokens else None,
                cached_tokens=cached,
                session=session,
                turn=turn,
                t_answer=t_answer,
                reasoning_tokens=reasoning,
            )

    def count_records(self, run_id: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM records WHERE run_id = ?", (run_id,)).fetchone()[0]

    # -- samples ------------------------------------------------------------------------------

    def append_samples(self, run_id: str, samples: Iterable[Sample]) -> int:
        rows = [(run_id, s.t, s.source, s.name, s.value, json.dumps(dict(s.labels))) for s in samples]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def samples(self, run_id: str, source: str | None = None) -> list[Sample]:
        sql = "SELECT t, source, name, value, labels_json FROM samples WHERE run_id = ?"
        params: list[Any] = [run_id]
        if source:
            sql += " AND source = ?"
            params.append(source)
        return [
            Sample(t=t, source=src, name=name, value=value, labels=tuple(sorted(json.loads(lab).items())))
            for t, src, name, value, lab in self._db.execute(sql + " ORDER BY t", params)
        ]
