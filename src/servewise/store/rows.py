"""What a stored row means, the same for every backend: a run's columns into a ``RunRow``, a worker's record
tuple into the records table's columns and back, a sample and its labels. Pure: no connection here."""

from __future__ import annotations

import json
import secrets
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from servewise.records import RequestRecord, Sample, record_from_row
from servewise.results import Annotations, ColdstartResult, ReleaseResult, RunResult, SweepResult
from servewise.results.annotations import NOTE_KINDS
from servewise.results.base import Result

RESULT_SCHEMA = 2  # the shape of summary_json: 1 = release 0.1.0 (notes inside), 2 = typed, notes apart
StoredResult = RunResult | SweepResult | ColdstartResult | ReleaseResult

RUN_COLUMNS = ("id", "kind", "parent_id", "created_at", "finished_at", "status", "spec_json", "labels_json",
               "tool_version", "target_json", "environment_json", "summary_json", "summary_schema")  # fmt: skip
RECORD_COLUMNS = ("run_id", "idx", "worker", "phase", "t_sched", "t_send", "t_first", "t_end", "status", "error",
                  "error_detail", "max_tokens", "input_tokens", "output_tokens", "tokens_source", "finish_reason",
                  "chunk_offsets", "chunk_tokens", "cached_tokens", "session_id", "turn", "t_answer",
                  "reasoning_tokens")  # fmt: skip
SAMPLE_COLUMNS = ("run_id", "t", "source", "name", "value", "labels_json")
ANNOTATION_COLUMNS = ("run_id", "kind", "created_at", "value_json")


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


@dataclass(frozen=True)
class RunCopy:
    """A run as one store holds it, for another: its ``runs`` row and notes as stored, and its records
    (without ``run_id``) and samples read a page at a time while they are written elsewhere."""

    run: tuple[Any, ...]
    notes: list[tuple[Any, ...]]
    records: int
    record_pages: Iterator[list[tuple[Any, ...]]]
    sample_pages: Iterator[list[tuple[Any, ...]]]


def _result_type(kind: str) -> type[StoredResult]:
    if kind == "sweep":
        return SweepResult
    if kind == "release":
        return ReleaseResult
    return ColdstartResult if kind == "coldstart" else RunResult


def encode_json(value: Any) -> str:
    """Specs, labels, targets and environments: sorted keys, so equal values are stored as equal text."""
    return json.dumps(value, sort_keys=True)


def encode_result(result: Result) -> str:
    """A result or note in its own field order (its model's), the order it reads and exports in."""
    return json.dumps(result.to_json())


def decode_run(row: tuple[Any, ...], annotations: Annotations) -> RunRow:
    """A ``runs`` row in ``RUN_COLUMNS`` order, with the notes kept beside it."""
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
        annotations=annotations,
    )


def decode_annotations(rows: Iterable[tuple[str, str]]) -> Annotations:
    """``(kind, value_json)`` in the order they were written; a kind this release does not know is skipped."""
    notes = {kind: NOTE_KINDS[kind].model_validate_json(value) for kind, value in rows if kind in NOTE_KINDS}
    return Annotations.model_validate(notes | {"order": list(notes)})


def note_kind(note: Result) -> str:
    return next(k for k, t in NOTE_KINDS.items() if type(note) is t)


def _pack_floats(values: list[float], origin: float) -> bytes:
    return array("f", (v - origin for v in values)).tobytes()


def _unpack_floats(blob: bytes | None, origin: float) -> list[float]:
    if not blob:
        return []
    return [origin + v for v in array("f", blob)]


def encode_records(run_id: str, rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows as the workers ship them (``records.record_to_row``) -> the records table's columns, chunk times
    packed as float32 offsets from the send (no dataclass on the parent's hot path)."""
    return [
        (run_id, index, worker, phase, t_sched, t_send, t_first, t_end, status, error, (detail or "")[:500] or None,
         max_tokens, input_tokens, output_tokens, source, finish,
         _pack_floats(chunk_times, t_send) if chunk_times else None,
         array("i", chunk_tokens).tobytes() if chunk_tokens else None, cached, session, turn, t_answer, reasoning)
        for (index, t_sched, t_send, t_first, t_end, chunk_times, chunk_tokens, max_tokens, input_tokens,
             output_tokens, source, status, error, detail, finish, phase, worker, cached, session, turn,
             t_answer, reasoning) in rows
    ]  # fmt: skip


def decode_record(row: tuple[Any, ...]) -> RequestRecord:
    """A records row in ``RECORD_COLUMNS`` order (without ``run_id``) -> the request it measured."""
    (idx, worker, phase, t_sched, t_send, t_first, t_end, status, error, detail, max_tokens, tin, tout,
     source, finish, offsets, tokens, cached, session, turn, t_answer, reasoning) = row  # fmt: skip
    return record_from_row(
        (idx, t_sched, t_send, t_first, t_end, _unpack_floats(offsets, t_send),
         list(array("i", tokens)) if tokens else None, max_tokens, tin, tout, source, status, error, detail or "",
         finish, phase, worker, cached, session, turn, t_answer, reasoning)
    )  # fmt: skip


def encode_samples(run_id: str, samples: Iterable[Sample]) -> list[tuple[Any, ...]]:
    return [(run_id, s.t, s.source, s.name, s.value, json.dumps(dict(s.labels))) for s in samples]


def decode_sample(row: tuple[Any, ...]) -> Sample:
    t, source, name, value, labels = row
    return Sample(t=t, source=source, name=name, value=value, labels=tuple(sorted(json.loads(labels).items())))
