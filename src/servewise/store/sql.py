"""The run store as every command sees it, whichever backend holds the runs: its logic is written once, in
portable SQL over a backend's ``Connection``. SQLite (``RunStore``) and PostgreSQL (``PostgresStore``) differ
only in how they connect and how they append rows fast; ``store.open_store`` picks one, and flows and the CLI
are typed against ``Store``, never a backend's class.

Records and samples are appended in batches during the run and committed as they come, so a crash
or Ctrl-C loses at most the batch in hand and memory stays flat however long the run is. Reads page through
them by key, so a million records are never held at once and no cursor stays open between calls.

A run's measured result is written once, when it finishes, as typed JSON with its schema version, in one
statement with its status: no reader sees a run finished without its result, or before its records. What
later commands note on it (a gate verdict, a repeat spread, a stage, a plan) goes into the ``annotations``
table beside it, never into the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Self

from servewise.errors import StoreError
from servewise.records import RequestRecord, Sample, record_to_row
from servewise.results import Annotations
from servewise.results.base import Result
from servewise.store.connection import Connection, Row
from servewise.store.rows import (
    ANNOTATION_COLUMNS,
    RECORD_COLUMNS,
    RESULT_SCHEMA,
    RUN_COLUMNS,
    SAMPLE_COLUMNS,
    RunCopy,
    RunRow,
    StoredResult,
    decode_annotations,
    decode_record,
    decode_run,
    decode_sample,
    encode_json,
    encode_records,
    encode_result,
    encode_samples,
    new_run_id,
    note_kind,
)

PAGE = 5000  # records (or samples) read per query
RUN_PAGE = 100  # runs read per query: a run's summary can be tens of kB
_RUNS = ", ".join(RUN_COLUMNS)
_RECORDS = ", ".join(RECORD_COLUMNS[1:])


class Store:
    """All reads and writes of run history go through here. ``location`` names the store for people (a path,
    or a URL without credentials); ``local_dir`` is where commands keep files beside its runs (server logs)."""

    def __init__(self, db: Connection, location: str, local_dir: Path) -> None:
        self._db = db
        self.location = location
        self.local_dir = local_dir

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
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
            (run_id, kind, parent_id, time.time(), encode_json(spec), encode_json(labels), tool_version,
             encode_json(target), encode_json(environment)),
        )  # fmt: skip
        return run_id

    def finish_run(self, run_id: str, result: StoredResult) -> None:
        """Write the measured result once; the run is visible as finished only from here."""
        self._db.execute(
            "UPDATE runs SET status = ?, finished_at = ?, summary_json = ?, summary_schema = ? WHERE id = ?",
            (result.status, time.time(), encode_result(result), RESULT_SCHEMA, run_id),
        )

    def annotate(self, run_id: str, note: Result) -> None:
        """Keep a later command's note beside the run's result (the newest note of a kind wins)."""
        self._put_note(run_id, note_kind(note), time.time(), encode_result(note))

    def _put_note(self, run_id: str, kind: str, created_at: float, value_json: str) -> None:
        """Deleted and written again, so it is the newest in written order; the conflict clause is for two
        processes noting the same run at once (the gate service asked twice): the later one wins."""
        with self._db.transaction():
            self._db.execute("DELETE FROM annotations WHERE run_id = ? AND kind = ?", (run_id, kind))
            self._db.execute(
                "INSERT INTO annotations (run_id, kind, created_at, value_json) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (run_id, kind) DO UPDATE SET created_at = excluded.created_at,"
                " value_json = excluded.value_json",
                (run_id, kind, created_at, value_json),
            )

    def _annotations(self, run_ids: list[str]) -> dict[str, Annotations]:
        marks = ", ".join("?" * len(run_ids))
        rows = self._db.execute(
            f"SELECT run_id, kind, value_json FROM annotations WHERE run_id IN ({marks})"
            f" ORDER BY {self._db.dialect.written_order}",
            run_ids,
        )
        return {rid: decode_annotations((k, v) for r, k, v in rows if r == rid) for rid in run_ids}

    def _decode(self, rows: list[Row]) -> list[RunRow]:
        notes = self._annotations([row[0] for row in rows]) if rows else {}
        return [decode_run(row, notes[row[0]]) for row in rows]

    def get_run(self, run_id: str) -> RunRow:
        rows = self._db.execute(f"SELECT {_RUNS} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            rows = self._db.execute(
                f"SELECT {_RUNS} FROM runs WHERE id LIKE ? ORDER BY created_at DESC LIMIT 2", (f"%{run_id}%",)
            )
            if len(rows) != 1:
                raise StoreError(f"no run {run_id!r} in {self.location} (see `servewise runs list`)")
        return self._decode(rows)[0]

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
        clauses: list[str] = []
        params: list[Any] = []
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
        found: list[RunRow] = []
        for page in self._run_pages(clauses, params):
            for run in page:
                if labels and any(run.labels.get(k) != v for k, v in labels.items()):
                    continue
                found.append(run)
                if limit and len(found) >= limit:
                    return found
        return found

    def _run_pages(self, clauses: list[str], params: list[Any]) -> Iterator[list[RunRow]]:
        """Newest first, a page at a time, by (created_at, id): a run created meanwhile is never seen twice."""
        after: tuple[float, str] | None = None
        while True:
            keyset = ["(created_at < ? OR (created_at = ? AND id < ?))"] if after else []
            where = " AND ".join(clauses + keyset)
            rows = self._db.execute(
                f"SELECT {_RUNS} FROM runs {'WHERE ' + where if where else ''}"
                " ORDER BY created_at DESC, id DESC LIMIT ?",
                [*params, *((after[0], after[0], after[1]) if after else ()), RUN_PAGE],
            )
            if not rows:
                return
            yield self._decode(rows)
            after = (rows[-1][3], rows[-1][0])

    def earlier_steps(self, run: RunRow) -> list[str]:
        """The ids of the steps of ``run``'s sweep that ran before it, oldest first (none outside a sweep)."""
        if run.parent_id is None:
            return []
        siblings = self.list_runs(parent_id=run.parent_id)
        return [r.id for r in reversed(siblings) if r.created_at < run.created_at]

    # -- records ------------------------------------------------------------------------------

    def append_records(self, run_id: str, records: Iterable[RequestRecord]) -> int:
        return self.append_rows(run_id, [record_to_row(r) for r in records])

    def append_rows(self, run_id: str, rows: Iterable[tuple[Any, ...]]) -> int:
        """Rows as the workers ship them (``records.record_to_row``): no dataclass on the parent's path."""
        stored = encode_records(run_id, rows)
        with self._db.transaction():
            self._db.insert_many("records", RECORD_COLUMNS, stored)
        return len(stored)

    def iter_records(self, run_id: str) -> Iterator[RequestRecord]:
        for page in self._record_pages(run_id, _RECORDS):
            yield from map(decode_record, page)

    def _record_pages(self, run_id: str, columns: str) -> Iterator[list[Row]]:
        """A run's records in index order, ``PAGE`` at a time (``idx`` first among ``columns``)."""
        last = -1
        while True:
            rows = self._db.execute(
                f"SELECT {columns} FROM records WHERE run_id = ? AND idx > ? ORDER BY idx LIMIT ?",
                (run_id, last, PAGE),
            )
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def load_window(self, run_id: str) -> tuple[float, float] | None:
        """The first and last send of a run, on its records' clock (which its samples share): the span its
        load was on, without the workers' start before it or the last answers' drain after it."""
        rows = self._db.execute("SELECT MIN(t_send), MAX(t_send) FROM records WHERE run_id = ?", (run_id,))
        first, last = rows[0] if rows else (None, None)
        return None if first is None or last is None else (float(first), float(last))

    def count_records(self, run_id: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM records WHERE run_id = ?", (run_id,))[0][0])

    # -- samples ------------------------------------------------------------------------------

    def append_samples(self, run_id: str, samples: Iterable[Sample]) -> int:
        rows = encode_samples(run_id, samples)
        with self._db.transaction():
            self._db.insert_many("samples", SAMPLE_COLUMNS, rows)
        return len(rows)

    def samples(self, run_id: str, source: str | None = None) -> list[Sample]:
        sql = "SELECT t, source, name, value, labels_json FROM samples WHERE run_id = ?"
        params: list[Any] = [run_id]
        if source:
            sql += " AND source = ?"
            params.append(source)
        return [decode_sample(row) for row in self._db.execute(sql + " ORDER BY t", params)]

    # -- copying between stores (``flows.sync``) ----------------------------------------------

    def run_statuses(self) -> dict[str, str]:
        """Every run's id and status, sweep steps included: what a copy has to decide from."""
        return {rid: status for rid, status in self._db.execute("SELECT id, status FROM runs")}

    def read_copy(self, run_id: str) -> RunCopy:
        """A run as stored, byte for byte: its row, its notes, and its records and samples a page at a time."""
        rows = self._db.execute(f"SELECT {_RUNS} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.location}")
        return RunCopy(
            run=rows[0],
            notes=self.note_rows(run_id),
            records=self.count_records(run_id),
            record_pages=self._record_pages(run_id, _RECORDS),
            sample_pages=self._sample_pages(run_id),
        )

    def _sample_pages(self, run_id: str) -> Iterator[list[Row]]:
        offset = 0
        while True:
            rows = self._db.execute(
                f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM samples WHERE run_id = ?"
                " ORDER BY t, source, name, value, labels_json LIMIT ? OFFSET ?",
                (run_id, PAGE, offset),
            )
            if not rows:
                return
            yield rows
            offset += len(rows)

    def write_copy(self, copy: RunCopy, on_page: Callable[[int], None] | None = None) -> None:
        """Store a run read from another store under its own id, replacing an unfinished copy of it. Its
        records and samples are committed page by page and its row last, so nobody sees it before it is
        whole, and a copy cut short is started over by the next one."""
        run_id = copy.run[0]
        with self._db.transaction():
            for table in ("runs", "annotations", "records", "samples"):
                self._db.execute(f"DELETE FROM {table} WHERE {'id' if table == 'runs' else 'run_id'} = ?",
                                 (run_id,))  # fmt: skip
        for page in copy.record_pages:
            with self._db.transaction():
                self._db.insert_many("records", RECORD_COLUMNS, [(run_id, *row) for row in page])
            if on_page is not None:
                on_page(len(page))
        for page in copy.sample_pages:
            with self._db.transaction():
                self._db.insert_many("samples", SAMPLE_COLUMNS, page)
        with self._db.transaction():
            self._db.insert_many("annotations", ANNOTATION_COLUMNS, copy.notes)
            self._db.insert_many("runs", RUN_COLUMNS, [copy.run])

    def note_rows(self, run_id: str) -> list[Row]:
        """A run's notes as stored (``ANNOTATION_COLUMNS``), in the order they were written."""
        return self._db.execute(
            f"SELECT {', '.join(ANNOTATION_COLUMNS)} FROM annotations WHERE run_id = ?"
            f" ORDER BY {self._db.dialect.written_order}",
            (run_id,),
        )

    def put_notes(self, notes: Iterable[Row]) -> None:
        """Notes from another store (``ANNOTATION_COLUMNS`` rows), each replacing this store's of its kind."""
        for run_id, kind, created_at, value_json in notes:
            self._put_note(run_id, kind, created_at, value_json)
