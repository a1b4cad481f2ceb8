"""The run's ground-floor records: what one request and one telemetry sample leave behind.

Every part reads and writes these plain types; none of them depends on anything else in servewise.
Times are seconds on the run clock (``time.perf_counter()``, CLOCK_MONOTONIC on Linux, which is
shared by every process on the machine, so worker processes and samplers line up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ErrorClass(StrEnum):
    """Why a request failed; one per failed request."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    PROTOCOL = "protocol"
    CANCELLED = "cancelled"
    LOST = "lost"  # in flight on a load worker whose machine or actor went away (runs on Ray)


class TokenSource(StrEnum):
    """Where an output-token count came from (the glossary's order of preference)."""

    USAGE = "usage"
    TOKENIZER = "tokenizer"
    CHUNKS = "chunks"


class Phase(StrEnum):
    """Which window of the run a request was scheduled in; only steady-state feeds throughput."""

    WARMUP = "warmup"
    STEADY = "steady"
    COOLDOWN = "cooldown"


@dataclass(slots=True)
class RequestRecord:
    """One request, as measured. ``chunk_times`` are arrivals of content-bearing chunks."""

    index: int
    t_sched: float
    t_send: float = 0.0
    t_first: float | None = None
    t_end: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] | None = None
    max_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    output_tokens_source: TokenSource = TokenSource.CHUNKS
    status: int | None = None
    error: ErrorClass | None = None
    error_detail: str = ""
    finish_reason: str | None = None
    phase: Phase = Phase.STEADY
    worker: int = 0
    cached_tokens: int | None = None  # the server's usage.prompt_tokens_details.cached_tokens
    session: int | None = None  # the conversation a turn belongs to (session and trace workloads)
    turn: int | None = None  # 1 for a conversation's first request
    t_answer: float | None = None  # the first answer (not reasoning) chunk's arrival: TTFA's end
    reasoning_tokens: int | None = None  # from usage, else the reasoning chunks before the answer

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ttft(self) -> float | None:
        return None if self.t_first is None else self.t_first - self.t_send

    @property
    def e2e(self) -> float | None:
        return None if self.t_end is None else self.t_end - self.t_send


@dataclass(slots=True, frozen=True)
class Sample:
    """One telemetry reading: ``source`` is the sampler (host, process, gpu, metrics, client)."""

    t: float
    source: str
    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


def record_to_row(record: RequestRecord) -> tuple:
    """A compact tuple for shipping records between processes (pickles far faster than the dataclass)."""
    return (
        record.index,
        record.t_sched,
        record.t_send,
        record.t_first,
        record.t_end,
        record.chunk_times,
        record.chunk_tokens,
        record.max_tokens,
        record.input_tokens,
        record.output_tokens,
        record.output_tokens_source.value,
        record.status,
        record.error.value if record.error else None,
        record.error_detail,
        record.finish_reason,
        record.phase.value,
        record.worker,
        record.cached_tokens,
        record.session,
        record.turn,
        record.t_answer,
        record.reasoning_tokens,
    )


def shift_row(row: tuple, delta: float) -> tuple:
    """A row with its times moved onto another clock (a remote worker's onto the driver's run clock)."""
    (index, t_sched, t_send, t_first, t_end, chunk_times, *middle, t_answer, reasoning) = row
    return (index, t_sched + delta, t_send + delta, None if t_first is None else t_first + delta,
            None if t_end is None else t_end + delta, [t + delta for t in chunk_times], *middle,
            None if t_answer is None else t_answer + delta, reasoning)  # fmt: skip


def record_from_row(row: tuple) -> RequestRecord:
    (index, t_sched, t_send, t_first, t_end, chunk_times, chunk_tokens, max_tokens, input_tokens, output_tokens,
     source, status, error, detail, finish, phase, worker, cached, session, turn, t_answer, reasoning) = row  # fmt: skip
    return RequestRecord(
        index=index,
        t_sched=t_sched,
        t_send=t_send,
        t_first=t_first,
        t_end=t_end,
        chunk_times=chunk_times,
        chunk_tokens=chunk_tokens,
        max_tokens=max_tokens,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        output_tokens_source=TokenSource(source),
        status=status,
        error=ErrorClass(error) if error else None,
        error_detail=detail,
        finish_reason=finish,
        phase=Phase(phase),
        worker=worker,
        cached_tokens=cached,
        session=session,
        turn=turn,
        t_answer=t_answer,
        reasoning_tokens=reasoning,
    )
