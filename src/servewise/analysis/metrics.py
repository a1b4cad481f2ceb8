"""Metrics exactly as DESIGN.md's glossary defines them, computed from request records.

TTFT = first content chunk's arrival - t_send; E2E = last byte - t_send;
TPOT = (E2E - TTFT) / (output_tokens - 1) per request (vLLM's definition; GuideLLM's "TPOT" includes
the first token); ITL = every gap between consecutive content chunks, pooled over requests, divided by
the tokens the later chunk carried when that is known. Latencies come from steady-state requests;
throughput and goodput from the steady-state window only.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from servewise.records import Phase, RequestRecord, TokenSource
from servewise.results import (
    CacheOutcome,
    Distribution,
    Metrics,
    ReasoningOutcome,
    SloOutcome,
    SloTargetOutcome,
    TtftTrend,
    TurnRow,
)
from servewise.spec.models import SloSpec, SloTarget

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}


def distribution(values: np.ndarray | Iterable[float]) -> dict[str, float | int | None]:
    """count, p50/p90/p95/p99/p99.9, mean, min, max, std; every statistic None when there is no sample."""
    data = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    if data.size == 0:
        return {"count": 0} | dict.fromkeys([*PERCENTILES, "mean", "min", "max", "std"])
    quantiles = np.percentile(data, list(PERCENTILES.values()))
    stats: dict[str, float | int | None] = {"count": int(data.size)}
    stats.update({name: float(q) for name, q in zip(PERCENTILES, quantiles, strict=True)})
    stats.update(
        mean=float(data.mean()), min=float(data.min()), max=float(data.max()), std=float(data.std(ddof=0))
    )
    return stats


def ttft_ms(record: RequestRecord) -> float | None:
    return None if record.t_first is None else (record.t_first - record.t_send) * 1000


def ttfa_ms(record: RequestRecord) -> float | None:
    """Time to the first answer token: a reasoning model's TTFT counts its reasoning chunks too."""
    return None if record.t_answer is None else (record.t_answer - record.t_send) * 1000


def e2e_ms(record: RequestRecord) -> float | None:
    return None if record.t_end is None else (record.t_end - record.t_send) * 1000


def arrived_whole(record: RequestRecord) -> bool:
    """Every chunk of the answer came in one read: its first token is timed at its end, and the pace of its
    tokens was not seen at all (a buffering proxy; a server or client starved of CPU)."""
    times = record.chunk_times
    return len(times) > 1 and times[-1] == times[0]


def tpot_ms(record: RequestRecord) -> float | None:
    """None where the pace was not seen (too few tokens, or an answer that arrived whole), never a zero that
    a log-ratio or a median would take for a fast server."""
    if record.t_first is None or record.t_end is None or not record.output_tokens or record.output_tokens < 2:
        return None
    if record.t_end == record.t_first:
        return None
    return (record.t_end - record.t_first) * 1000 / (record.output_tokens - 1)


def itl_gaps_ms(record: RequestRecord) -> list[float]:
    """The gaps between chunks; none from an answer that arrived whole (two chunks in one read of a stream
    that was otherwise seen are a real zero gap, kept)."""
    times = record.chunk_times
    if len(times) < 2 or arrived_whole(record):
        return []
    tokens = record.chunk_tokens
    if tokens and len(tokens) == len(times):
        return [(b - a) * 1000 / max(n, 1) for (a, b), n in zip(pairwise(times), tokens[1:], strict=True)]
    return [(b - a) * 1000 for a, b in pairwise(times)]


def meets_request_slo(record: RequestRecord, targets: list[SloTarget]) -> bool:
    """Goodput's test: an OK request whose every per-request latency is within its limit."""
    if not record.ok:
        return False
    for target in targets:
        if target.metric == "ttft":
            value = ttft_ms(record)
        elif target.metric == "e2e":
            value = e2e_ms(record)
        else:
            value = tpot_ms(record)
        if value is not None and value > target.limit:
            return False
    return True


class LogHistogram:
    """Quantiles of a stream too long to keep (a million requests carry tens of millions of gaps).

    Log-spaced bins 0.1% wide from 1 µs to 1000 s: a quantile is off by at most 0.05% of its value;
    count, mean, std, min and max are exact. Values fold in through a small buffer, so adding is cheap.
    """

    LOW_MS, HIGH_MS, RATIO = 1e-3, 1e6, 1.001
    BUFFER = 1 << 20

    def __init__(self) -> None:
        self._log_low = np.log(self.LOW_MS)
        self._log_ratio = np.log(self.RATIO)
        self._bins = int(np.ceil((np.log(self.HIGH_MS) - self._log_low) / self._log_ratio)) + 1
        self._counts = np.zeros(self._bins, dtype=np.int64)
        self._pending = array("d")
        self.count = 0
        self._sum = self._sumsq = 0.0
        self._min, self._max = np.inf, -np.inf

    def extend(self, values: Iterable[float]) -> None:
        self._pending.extend(values)
        if len(self._pending) >= self.BUFFER:
            self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        values = np.frombuffer(self._pending, dtype=np.float64)
        self.count += values.size
        self._sum += float(values.sum())
        self._sumsq += float(np.square(values).sum())
        self._min, self._max = min(self._min, float(values.min())), max(self._max, float(values.max()))
        clipped = np.clip(values, self.LOW_MS, self.HIGH_MS)
        index = np.rint((np.log(clipped) - self._log_low) / self._log_ratio).astype(np.int64)
        self._counts += np.bincount(index, minlength=self._bins)
        self._pending = array("d")

    def distribution(self) -> dict[str, float | int | None]:
        self._fold()
        if self.count == 0:
            return distribution(np.empty(0))
        cumulative = np.cumsum(self._counts)
        stats: dict[str, float | int | None] = {"count": self.count}
        for name, q in PERCENTILES.items():
            rank = int(np.ceil(q / 100 * self.count))
            index = int(np.searchsorted(cumulative, max(rank, 1)))
            value = float(np.exp(self._log_low + index * self._log_ratio))
            stats[name] = min(max(value, self._min), self._max) if value > self.LOW_MS else self._min
        mean = self._sum / self.count
        stats.update(
            mean=mean,
            min=self._min,
            max=self._max,
            std=float(np.sqrt(max(self._sumsq / self.count - mean * mean, 0.0))),
        )
        return stats


@dataclass
class _Columns:
    ttft: array
    tpot: array
    itl: LogHistogram | array  # a histogram in the bounded-memory summary, every gap for the gate
    e2e: array
    lag: array

    @classmethod
    def empty(cls) -> _Columns:
        return cls(array("d"), array("d"), LogHistogram(), array("d"), array("d"))


def _add_latencies(record: RequestRecord, columns: _Columns) -> None:
    """One OK request's TTFT, TPOT, E2E and inter-token gaps (ms): the one place both summaries take them."""
    if (value := ttft_ms(record)) is not None:
        columns.ttft.append(value)
    if (value := e2e_ms(record)) is not None:
        columns.e2e.append(value)
    if (value := tpot_ms(record)) is not None:
        columns.tpot.append(value)
    columns.itl.extend(itl_gaps_ms(record))


class MetricsAccumulator:
    """Folds records one at a time, so a million-request run is summarised in bounded memory."""

    def __init__(self, slo: SloSpec | None = None) -> None:
        self.slo = slo or SloSpec()
        self._request_targets = self.slo.per_request()
        self._cols = _Columns.empty()
        self.ok = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self.error_examples: dict[str, str] = {}
        self.sources: Counter[str] = Counter()
        self.good = 0
        self.output_tokens = 0
        self.input_tokens = 0
        self.input_counted = 0
        self.stopped_early = 0
        self.arrived_whole = 0
        self.busy_s = 0.0
        self.first_send: float | None = None
        self.last_end: float | None = None
        self.steady_total = 0
        self.sched_min = float("inf")
        self.sched_max = float("-inf")
        self.cached_tokens = 0
        self.cached_of_input = 0  # input tokens of the requests that reported cached_tokens
        self.cache_reported = 0
        self._turns: dict[int, tuple[array, list[int]]] = {}
        self._ttfa = array("d")
        self.reasoning_tokens = 0

    def add(self, record: RequestRecord) -> None:
        if record.t_send:
            self._cols.lag.append((record.t_send - record.t_sched) * 1000)
        if record.phase is not Phase.STEADY:
            return
        self.steady_total += 1
        self.sched_min = min(self.sched_min, record.t_sched)
        self.sched_max = max(self.sched_max, record.t_sched)
        if self.first_send is None or record.t_send < self.first_send:
            self.first_send = record.t_send
        if record.t_end is not None and (self.last_end is None or record.t_end > self.last_end):
            self.last_end = record.t_end
        if not record.ok:
            self.failed += 1
            error = record.error.value if record.error else "unknown"
            self.errors[error] += 1
            self.error_examples.setdefault(error, record.error_detail)
            return
        self.ok += 1
        _add_latencies(record, self._cols)
        if record.t_end is not None:
            self.busy_s += record.t_end - record.t_send
        self.sources[record.output_tokens_source.value] += 1
        self.output_tokens += record.output_tokens or 0
        if record.input_tokens is not None:
            self.input_tokens += record.input_tokens
            self.input_counted += 1
        if (
            record.max_tokens
            and record.output_tokens is not None
            and record.output_tokens < record.max_tokens
            and record.output_tokens_source is TokenSource.USAGE
        ):
            self.stopped_early += 1
        if arrived_whole(record):
            self.arrived_whole += 1
        if meets_request_slo(record, self._request_targets):
            self.good += 1
        if record.cached_tokens is not None and record.input_tokens:
            self.cache_reported += 1
            self.cached_tokens += record.cached_tokens
            self.cached_of_input += record.input_tokens
        if record.reasoning_tokens:
            self.reasoning_tokens += record.reasoning_tokens
            if record.t_answer is not None:
                self._ttfa.append((record.t_answer - record.t_send) * 1000)
        if record.turn is not None:
            ttfts, inputs = self._turns.setdefault(record.turn, (array("d"), [0, 0]))
            if (value := ttft_ms(record)) is not None:
                ttfts.append(value)
            if record.input_tokens is not None:
                inputs[0] += record.input_tokens
                inputs[1] += 1

    def add_all(self, records: Iterable[RequestRecord]) -> MetricsAccumulator:
        for record in records:
            self.add(record)
        return self

    def window_s(self, start: float | None = None) -> float:
        begin = start if start is not None else self.first_send
        if begin is None or self.last_end is None:
            return 0.0
        return max(self.last_end - begin, 1e-9)

    def offered_rps(self) -> float | None:
        """The rate the schedule actually asked for (Poisson counts wander from the nominal rate)."""
        span = self.sched_max - self.sched_min
        return (self.steady_total - 1) / span if self.steady_total > 1 and span > 0 else None

    def schedule_lag_ms(self) -> dict[str, float | int | None]:
        return distribution(np.frombuffer(self._cols.lag, dtype=np.float64))

    def cached_tokens_ratio(self) -> float | None:
        """Prompt tokens the server said it served from its cache, over the prompt tokens of those requests."""
        return self.cached_tokens / self.cached_of_input if self.cache_reported else None

    def reasoning(self) -> ReasoningOutcome | None:
        """Only for a model that reasoned: every other run keeps TTFT alone."""
        if not self.reasoning_tokens:
            return None
        ttfa = Distribution.model_validate(distribution(np.frombuffer(self._ttfa, dtype=np.float64)))
        return ReasoningOutcome(requests=ttfa.count, ttfa_ms=ttfa,
                                mean_reasoning_tokens=self.reasoning_tokens / max(ttfa.count, 1))  # fmt: skip

    def by_turn(self) -> list[TurnRow]:
        rows = []
        for turn in sorted(self._turns):
            ttfts, (tokens, counted) = self._turns[turn]
            dist = distribution(np.frombuffer(ttfts, dtype=np.float64))
            rows.append(TurnRow(turn=turn, requests=int(dist["count"] or 0), ttft_ms_p50=dist["p50"],
                                ttft_ms_p95=dist["p95"], mean_input_tokens=tokens / counted if counted else None))  # fmt: skip
        return rows

    def result(self, window_start: float | None = None, cache: CacheOutcome | None = None) -> Metrics:
        """The run's metrics; rates over [window_start, last steady completion]."""
        cols = self._cols
        assert isinstance(cols.itl, LogHistogram), "the summary folds gaps into a histogram"
        window = self.window_s(window_start)
        per_s = (lambda n: n / window) if window > 0 else (lambda n: 0.0)
        source = self.sources.most_common(1)[0][0] if self.sources else TokenSource.USAGE.value
        if len(self.sources) > 1:
            # the weakest source present decides how far the counts can be trusted
            source = max(self.sources, key=[s.value for s in TokenSource].index)
        return Metrics(
            ttft_ms=Distribution.model_validate(distribution(np.frombuffer(cols.ttft, dtype=np.float64))),
            tpot_ms=Distribution.model_validate(distribution(np.frombuffer(cols.tpot, dtype=np.float64))),
            itl_ms=Distribution.model_validate(cols.itl.distribution()),
            e2e_ms=Distribution.model_validate(distribution(np.frombuffer(cols.e2e, dtype=np.float64))),
            requests_ok=self.ok,
            requests_failed=self.failed,
            requests_total=self.ok + self.failed,
            error_rate=self.failed / (self.ok + self.failed) if self.ok + self.failed else None,
            errors_by_class=dict(self.errors),
            error_examples=dict(self.error_examples),
            requests_per_s=per_s(self.ok),
            output_tokens_per_s=per_s(self.output_tokens),
            input_tokens_per_s=per_s(self.input_tokens),
            goodput_rps=per_s(self.good),
            offered_rps=self.offered_rps(),
            output_tokens_source=source,
            mean_output_tokens=self.output_tokens / self.ok if self.ok else None,
            mean_input_tokens=self.input_tokens / self.input_counted if self.input_counted else None,
            stopped_early=self.stopped_early,
            arrived_whole=self.arrived_whole,
            concurrency_mean=self.busy_s / window if window > 0 else 0.0,
            window_s=window,
            ttft_trend_ms=self.ttft_trend(),
            cache=cache,
            by_turn=self.by_turn() if cache is not None else None,
            reasoning=self.reasoning(),
        )

    def ttft_trend(self) -> TtftTrend | None:
        """Median TTFT of the first and last third of requests in schedule order: a growing queue shows here."""
        ttft = np.frombuffer(self._cols.ttft, dtype=np.float64)
        if ttft.size < 9:
            return None
        third = ttft.size // 3
        return TtftTrend(first=float(np.median(ttft[:third])), last=float(np.median(ttft[-third:])))


def evaluate_slo(slo: SloSpec, metrics: Metrics) -> SloOutcome:
    """Each target against the measured value; ``met`` is None when no SLO was given."""
    results = []
    for target in slo.targets:
        value: float | None
        if target.metric == "errors":
            value = 1.0 if metrics.error_rate is None else metrics.error_rate
        else:
            value = metrics.distribution(target.metric).stat(target.stat)
        met = value is not None and value <= target.limit
        results.append(SloTargetOutcome(key=target.key, limit=target.limit, value=value, met=met))
    return SloOutcome(met=all(r.met for r in results) if results else None, targets=results)


def request_latencies(records: Iterable[RequestRecord]) -> dict[str, np.ndarray]:
    """Per-request steady-state latency samples (ms) for statistics that compare whole distributions;
    ``itl_ms`` pools every gap (kept whole here, unlike the summary's histogram)."""
    columns = _Columns(array("d"), array("d"), array("d"), array("d"), array("d"))
    for record in records:
        if record.phase is Phase.STEADY and record.ok:
            _add_latencies(record, columns)
    return {f"{name}_ms": np.frombuffer(getattr(columns, name), dtype=np.float64).copy()
            for name in ("ttft", "tpot", "e2e", "itl")}
