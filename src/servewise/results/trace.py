"""What `servewise trace analyze` found in a trace: its timing, lengths, sessions and prefix reuse."""

from __future__ import annotations

from typing import Literal

from servewise.results.base import Result


class TraceLengths(Result):
    """A token-length distribution over the trace's requests."""

    count: int
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    mean: float | None = None
    max: int | None = None


class TraceRateBucket(Result):
    """Requests per second arriving in ``[start_s, start_s + bucket_s)`` (after time scaling)."""

    start_s: float
    rps: float


class TraceSessions(Result):
    """The trace's sessions: how many, and how many requests (turns) each has."""

    count: int
    requests: int
    mean_turns: float
    max_turns: int


class TraceSummary(Result):
    """One trace as it would be replayed: times are seconds from the first request, already scaled."""

    path: str
    format: Literal["mooncake", "plain"]
    block_size: int
    time_scale: float
    requests: int
    duration_s: float
    mean_rate_rps: float | None
    peak_rate_rps: float | None
    peak_window_s: float | None
    peak_start_s: float | None
    bucket_s: float | None
    rate_over_time: list[TraceRateBucket]
    input_tokens: TraceLengths
    output_tokens: TraceLengths
    sessions: TraceSessions | None
    requests_with_hash_ids: int
    theoretical_prefix_hit_rate: float | None


class TraceConversion(Result):
    """What `servewise trace from-log` wrote, where its numbers came from, and the trace as analyzed."""

    log: str
    tokenizer: str | None  # the tokenizer.json used; None: the twin's word estimate
    sessions: int
    output_from_usage: int  # requests whose output length is the logged usage.completion_tokens
    output_from_max_tokens: int
    output_defaulted: int
    requests_with_prompt_usage: int
    prompt_tokens_ratio: float | None  # counted / logged usage.prompt_tokens, over those requests
    trace: TraceSummary
