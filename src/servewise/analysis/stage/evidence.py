"""Evidence over time: what the run store and production traffic say about a service, folded to numbers.

Its own module because it is the only part of the stage that reads stored runs (typed: the measured
result, its annotations, a cold start's starts) and Prometheus series; everything after it judges these
plain numbers and never sees a run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from servewise.analysis.run_fingerprint import workload_key
from servewise.results import Annotations, ColdstartResult, DiagnosisResult, RunResult, SweepResult
from servewise.results.gate import GateVerdict
from servewise.results.release import ReleaseResult

DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class RepeatGroup:
    """Repeat runs of one spec (same target, workload and load): do they agree?"""

    spec_key: str
    label: str
    runs: int
    throughput_cv: float | None
    ttft_p95_cv: float | None


@dataclass(frozen=True, slots=True)
class ColdStartEvidence:
    runs: int
    min_s: float | None
    median_s: float | None
    max_s: float | None
    cv: float | None

    @property
    def ratio(self) -> float | None:
        return self.max_s / self.min_s if self.min_s and self.max_s else None


@dataclass(frozen=True, slots=True)
class TrafficPattern:
    """Production traffic read from Prometheus over ``periods`` buckets (days by default)."""

    periods: int
    period_s: float
    volume_cv: float | None  # CV of the per-period request volume
    growth: float | None  # last full period's volume / first's
    peak_rps: float | None
    size_drift: float | None  # relative change of the mean request size, last period vs first
    source: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEvidence:
    """What the store says about this service over time; built by ``history_from_runs``."""

    bench_runs: int = 0
    span_days: float = 0.0
    repeat_groups: tuple[RepeatGroup, ...] = ()
    slo_runs: int = 0
    slo_met: int = 0
    gate_runs: int = 0
    gate_failed: int = 0
    rollbacks: int = 0
    bottleneck: str | None = None
    bottleneck_confidence: str | None = None
    capacity_rps: float | None = None  # latest max_rate_meeting_slo
    coldstart: ColdStartEvidence | None = None
    traffic: TrafficPattern | None = None


class StoredRun(Protocol):
    """What the stage reads of a stored top-level run (the store's ``RunRow``)."""

    @property
    def kind(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def spec(self) -> Mapping[str, Any]: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def result(self) -> RunResult | ColdstartResult | ReleaseResult | None: ...
    @property
    def measured(self) -> RunResult | None: ...
    @property
    def annotations(self) -> Annotations: ...


def _cv(values: Iterable[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return None
    mean = statistics.fmean(finite)
    return statistics.stdev(finite) / mean if mean > 0 else None


def _coldstart_evidence(coldstarts: Sequence[ColdstartResult]) -> ColdStartEvidence | None:
    values = [v for coldstart in coldstarts for v in coldstart.startup_times()]
    if not values:
        return None
    return ColdStartEvidence(len(values), min(values), statistics.median(values), max(values), _cv(values))


def _repeat_groups(bench: Sequence[tuple[StoredRun, RunResult]]) -> tuple[RepeatGroup, ...]:
    """Finished runs of one workload (``workload_key``), oldest first; a group needs two runs."""
    groups: dict[str, list[RunResult]] = {}
    for run, result in bench:
        if result.status in ("ok", "slo_failed"):
            groups.setdefault(workload_key(run.spec), []).append(result)
    return tuple(
        RepeatGroup(
            spec_key=key,
            label=members[-1].load or key,
            runs=len(members),
            throughput_cv=_cv(m.metrics.output_tokens_per_s for m in members),
            ttft_p95_cv=_cv(m.metrics.ttft_ms.p95 for m in members),
        )
        for key, members in groups.items()
        if len(members) >= 2
    )


def _latest_diagnosis(bench: Sequence[tuple[StoredRun, RunResult]]) -> DiagnosisResult | None:
    """The newest diagnosis: doctor's of a sweep's saturating step (an annotation), else the run's own."""
    for run, result in reversed(bench):
        found = run.annotations.diagnosis or result.diagnosis
        if found is not None:
            return found
    return None


def history_from_runs(runs: Iterable[StoredRun], traffic: TrafficPattern | None = None) -> HistoryEvidence:
    """Fold stored top-level runs (any order) into the evidence the stage reads: bench, sweep, coldstart."""
    ordered = sorted(runs, key=lambda r: r.created_at)
    bench = [
        (run, measured)
        for run in ordered
        if run.kind in ("bench", "sweep") and (measured := run.measured) is not None
    ]
    # `servewise gate` notes its verdict on the candidate run
    gates = [gate for run in ordered if (gate := run.annotations.gate) is not None]
    coldstarts = [
        coldstart
        for run in ordered
        if run.kind == "coldstart" and isinstance(coldstart := run.result, ColdstartResult)
    ]
    slo_verdicts = [result.slo.met for _, result in bench if result.slo.met is not None]
    diagnosis = _latest_diagnosis(bench)
    capacity = next(
        (
            result.max_rate_meeting_slo
            for _, result in reversed(bench)
            if isinstance(result, SweepResult) and result.max_rate_meeting_slo
        ),
        None,
    )
    # a rollback is recorded by a run labelled rollback=true (the re-deployed baseline, measured again)
    # or a run of kind "rollback"
    rollbacks = sum(1 for run in ordered if run.kind == "rollback" or run.labels.get("rollback") == "true")
    span = (bench[-1][0].created_at - bench[0][0].created_at) / DAY_S if len(bench) > 1 else 0.0
    return HistoryEvidence(
        bench_runs=len(bench),
        span_days=span,
        repeat_groups=_repeat_groups(bench),
        slo_runs=len(slo_verdicts),
        slo_met=sum(1 for met in slo_verdicts if met),
        gate_runs=len(gates),
        gate_failed=sum(1 for gate in gates if gate.verdict is GateVerdict.FAIL),
        rollbacks=rollbacks,
        bottleneck=diagnosis.primary if diagnosis else None,
        bottleneck_confidence=diagnosis.confidence if diagnosis else None,
        capacity_rps=capacity,
        coldstart=_coldstart_evidence(coldstarts),
        traffic=traffic,
    )


def traffic_pattern_from_series(
    volume: Sequence[tuple[float, float]],
    size: Sequence[tuple[float, float]] = (),
    *,
    period_s: float = DAY_S,
    source: str = "",
) -> TrafficPattern | None:
    """Per-period volume from a request-rate series (req/s at regular steps) and mean size per period."""
    if len(volume) < 2:
        return None
    start = volume[0][0]

    def per_period(points: Sequence[tuple[float, float]]) -> dict[int, list[float]]:
        buckets: dict[int, list[float]] = {}
        for t, value in points:
            if math.isfinite(value):
                buckets.setdefault(int((t - start) // period_s), []).append(value)
        return buckets

    volume_buckets = per_period(volume)
    if len(volume_buckets) > 2:  # the last period is usually partial: judge full ones only
        volume_buckets.pop(max(volume_buckets))
    totals = [statistics.fmean(v) for _, v in sorted(volume_buckets.items())]
    size_means = [statistics.fmean(v) for _, v in sorted(per_period(size).items())] if size else []
    return TrafficPattern(
        periods=len(totals),
        period_s=period_s,
        volume_cv=_cv(totals),
        growth=totals[-1] / totals[0] if len(totals) >= 2 and totals[0] > 0 else None,
        peak_rps=max(v for _, v in volume if math.isfinite(v)),
        size_drift=(size_means[-1] - size_means[0]) / size_means[0]
        if len(size_means) >= 2 and size_means[0]
        else None,
        source=source,
    )
