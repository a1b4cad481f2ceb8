"""`trace analyze` and `trace from-log` as use cases: describe a trace as it would be replayed, and make
one from a log of captured requests that can be shared."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from servewise.analysis.cache import theoretical_hit_rate
from servewise.results import TraceLengths, TraceRateBucket, TraceSessions, TraceSummary
from servewise.results.trace import TraceConversion
from servewise.spec.errors import SpecError
from servewise.workload.trace import DEFAULT_BLOCK_SIZE, Trace, load_trace, trace_segments
from servewise.workload.trace_log import (
    DEFAULT_OUTPUT_TOKENS,
    MooncakeRow,
    convert_log,
    load_tokenizer,
    word_tokens,
)

RATE_BUCKETS = 20
PEAK_WINDOWS_S = (1.0, 10.0, 60.0, 300.0, 600.0, 3600.0)
PEAK_MIN_REQUESTS = 10  # the peak window is the shortest that holds this many requests at the mean rate


def analyze_trace(path: str, time_scale: float = 1.0, block_size: int = DEFAULT_BLOCK_SIZE) -> TraceSummary:
    """Duration, rate over time and its peak, lengths, sessions and the prefix hit rate of a trace."""
    trace = load_trace(path, time_scale=time_scale, block_size=block_size)
    return summarize_trace(trace, time_scale)


def trace_from_log(
    log: str,
    out: str,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    tokenizer: str | None = None,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> TraceConversion:
    """Convert a captured request log into a Mooncake trace at ``out``, and describe what was written.

    The trace is written beside ``out`` and loaded back, as a replay would read it, before it replaces
    ``out``: a bad log or a failed write leaves no trace behind, nor a half-written one.
    """
    if Path(out).resolve() == Path(log).resolve():
        raise SpecError(f"trace from-log: the trace would overwrite the log {log}: give another --output")
    tokenize = load_tokenizer(tokenizer) if tokenizer else word_tokens
    converted = convert_log(log, block_size=block_size, tokenize=tokenize, output_tokens=output_tokens)
    with _replacing(out) as temp:
        _write_rows(temp, converted.rows)
        summary = summarize_trace(load_trace(temp, block_size=block_size)).model_copy(update={"path": out})
    logged = converted.logged_prompt_tokens
    return TraceConversion(
        log=log,
        tokenizer=tokenizer,
        sessions=converted.sessions,
        output_from_usage=converted.output_from_usage,
        output_from_max_tokens=converted.output_from_max_tokens,
        output_defaulted=converted.output_defaulted,
        requests_with_prompt_usage=converted.requests_with_prompt_usage,
        prompt_tokens_ratio=converted.counted_prompt_tokens / logged if logged else None,
        trace=summary,
    )


@contextlib.contextmanager
def _replacing(out: str) -> Iterator[str]:
    """A temporary path beside ``out`` that becomes ``out`` if the block succeeds, and is gone if not."""
    target = Path(out)
    try:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise SpecError(f"trace from-log: cannot write {out}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield temp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # as a plain open() would have made it, not mkstemp's 0600
        os.replace(temp, target)
    except OSError as exc:
        raise SpecError(f"trace from-log: cannot write {out}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _write_rows(path: str, rows: list[MooncakeRow]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.writelines(row.json_line() for row in rows)


def summarize_trace(trace: Trace, time_scale: float = 1.0) -> TraceSummary:
    offsets = trace.offsets_s
    duration = trace.duration_s
    requests = len(trace)
    peak, window, peak_start = _peak(offsets, duration)
    bucket_s, buckets = _rate_over_time(offsets, duration)
    with_ids = int(np.count_nonzero(np.diff(trace.hash_starts)))
    return TraceSummary(
        path=trace.path,
        format=trace.format,
        block_size=trace.block_size,
        time_scale=time_scale,
        requests=requests,
        duration_s=duration,
        mean_rate_rps=requests / duration if duration > 0 else None,
        peak_rate_rps=peak,
        peak_window_s=window,
        peak_start_s=peak_start,
        bucket_s=bucket_s,
        rate_over_time=buckets,
        input_tokens=_lengths(trace.input_tokens),
        output_tokens=_lengths(trace.output_tokens),
        sessions=_sessions(trace.session_ids),
        requests_with_hash_ids=with_ids,
        theoretical_prefix_hit_rate=theoretical_hit_rate(trace_segments(trace, i) for i in range(requests)),
    )


def _peak(
    offsets: npt.NDArray[np.float64], duration: float
) -> tuple[float | None, float | None, float | None]:
    """The most requests in any window of W seconds, as req/s, and where that window starts.

    W is the shortest of 1 s, 10 s, 1 min, 5 min, 10 min, 1 h that holds ten requests at the mean rate
    (so a sparse trace's peak is not one request in one second); a trace shorter than W is one window.
    """
    if duration <= 0:
        return None, None, None
    mean = len(offsets) / duration
    window = next((w for w in PEAK_WINDOWS_S if w * mean >= PEAK_MIN_REQUESTS), PEAK_WINDOWS_S[-1])
    if window >= duration:  # the whole trace is one window: its peak is its mean
        return mean, duration, 0.0
    ends = np.searchsorted(offsets, offsets + window, side="left")
    counts = ends - np.arange(len(offsets))
    best = int(np.argmax(counts))
    return float(counts[best]) / window, window, float(offsets[best])


def _rate_over_time(
    offsets: npt.NDArray[np.float64], duration: float
) -> tuple[float | None, list[TraceRateBucket]]:
    if duration <= 0:
        return None, []
    counts, edges = np.histogram(offsets, bins=RATE_BUCKETS, range=(0.0, duration))
    width = duration / RATE_BUCKETS
    return width, [
        TraceRateBucket(start_s=float(start), rps=float(count) / width)
        for start, count in zip(edges[:-1], counts, strict=True)
    ]


def _lengths(values: npt.NDArray[np.int32]) -> TraceLengths:
    if len(values) == 0:
        return TraceLengths(count=0)
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99]))
    return TraceLengths(
        count=len(values), p50=p50, p90=p90, p99=p99, mean=float(values.mean()), max=int(values.max())
    )


def _sessions(session_ids: npt.NDArray[np.int32]) -> TraceSessions | None:
    known = session_ids[session_ids >= 0]
    if len(known) == 0:
        return None
    turns = np.bincount(known)
    turns = turns[turns > 0]
    return TraceSessions(
        count=len(turns), requests=len(known), mean_turns=float(turns.mean()), max_turns=int(turns.max())
    )
