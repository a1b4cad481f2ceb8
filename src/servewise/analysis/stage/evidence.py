"""Evidence over time: what the run store says about a service (benches, sweeps, gates, releases, cold
starts, diagnoses), folded to numbers beside the production traffic read from Prometheus.

Its own module because it is the only part of the stage that reads stored runs (typed: the measured
result, its annotations, a cold start's starts, a release's outcome); everything after it judges these
plain numbers and never sees a run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from servewise.analysis.run_fingerprint import workload_key
from servewise.analysis.stage.traffic import DAY_S, TrafficEvidence
from servewise.results import Annotations, ColdstartResult, DiagnosisResult, RunResult, SweepResult
from servewise.results.gate import GateVerdict
from servewise.results.release import ReleaseResult

REPEAT_WINDOW_S = 6 * 3600.0  # runs of one spec and release this close together are repeats
RELEASE_LABELS = ("version", "release", "commit", "image")  # run labels that name a release
NOT_A_BOTTLENECK = ("none", "load_generator")  # diagnoses that name nothing about the server


@dataclass(frozen=True, slots=True)
class RepeatGroup:
    """Repeat runs of one spec on one release (``runs repeat``, ``gate --repeats``, or back-to-back runs)."""

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
    load_share: float | None = None  # median share of the start spent loading weights
    load_rate: float | None = None  # median bytes/s read while loading weights
    model_bytes: int | None = None

    @property
    def ratio(self) -> float | None:
        return self.max_s / self.min_s if self.min_s and self.max_s else None


@dataclass(frozen=True, slots=True)
class CapacityEvidence:
    """The newest stored sweep's knee for this target: the rate one replica serves within the SLO."""

    run_id: str
    rps: float
    slo: str  # the SLO the knee meets, as read ("ttft_p95 <= 500 ms")
    targets: tuple[tuple[str, str, float], ...]  # (metric, stat, limit in ms) per latency target
    degrade_share: float | None  # share of the knee where p95 TTFT is twice its lightest step's


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
    releases: int = 0
    rollbacks: int = 0
    bottleneck: str | None = None  # a named resource (never "none" or the load generator)
    bottleneck_confidence: str | None = None
    capacity: CapacityEvidence | None = None
    coldstart: ColdStartEvidence | None = None
    traffic: TrafficEvidence | None = None
    simulated_runs: int = 0  # runs against the twin: shown, never evidence about the team's server

    @property
    def capacity_rps(self) -> float | None:
        return self.capacity.rps if self.capacity else None


class StoredRun(Protocol):
    """What the stage reads of a stored top-level run (the store's ``RunRow``)."""

    @property
    def id(self) -> str: ...
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


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _coldstart_evidence(coldstarts: Sequence[ColdstartResult]) -> ColdStartEvidence | None:
    starts = [r for c in coldstarts for r in c.runs if r.status == "ok" and r.startup_s]
    values = [r.startup_s for r in starts if r.startup_s is not None]
    if not values:
        return None
    shares = [r.load_io.load_s / r.startup_s for r in starts if r.load_io.load_s and r.startup_s]
    rates = [
        r.load_io.read_bytes / r.load_io.load_s for r in starts if r.load_io.read_bytes and r.load_io.load_s
    ]
    sizes = [c.model_bytes for c in coldstarts if c.model_bytes]
    return ColdStartEvidence(
        len(values), min(values), statistics.median(values), max(values), _cv(values),
        _median(shares), _median(rates), sizes[-1] if sizes else None,
    )  # fmt: skip


def _release_identity(run: StoredRun, result: RunResult) -> str:
    """What names the release a run measured: its labels, else the version the server reported."""
    labels = {k: run.labels[k] for k in RELEASE_LABELS if k in run.labels}
    server = result.target.get("server") or {}
    return repr((sorted(labels.items()), server.get("version"), server.get("props", {}).get("build_info")))


def _repeat_groups(bench: Sequence[tuple[StoredRun, RunResult]]) -> tuple[RepeatGroup, ...]:
    """Runs that repeat one spec on one release: an explicit repeat group, else runs of one workload and
    release within ``REPEAT_WINDOW_S`` of the previous (so a later release's speed-up is not "poor
    repeatability"). A group needs two finished runs."""
    groups: dict[str, list[RunResult]] = {}
    last_seen: dict[str, tuple[float, str]] = {}
    for run, result in bench:
        if result.status not in ("ok", "slo_failed"):
            continue
        repeat = run.annotations.repeat
        if repeat is not None:
            key = "repeat:" + ",".join(sorted(repeat.group))
        else:
            spec = workload_key(run.spec) + _release_identity(run, result)
            seen = last_seen.get(spec)
            session = (
                seen[1]
                if seen and run.created_at - seen[0] <= REPEAT_WINDOW_S
                else f"{spec}@{run.created_at}"
            )
            last_seen[spec] = (run.created_at, session)
            key = session
        groups.setdefault(key, []).append(result)
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


def _named_diagnosis(bench: Sequence[tuple[StoredRun, RunResult]]) -> DiagnosisResult | None:
    """The newest diagnosis that names a server resource: doctor's of a sweep's saturating step (an
    annotation), else the run's own. "none" and a client-limited run name nothing about the server."""
    for run, result in reversed(bench):
        found = run.annotations.diagnosis or result.diagnosis
        if found is not None and found.primary not in NOT_A_BOTTLENECK:
            return found
    return None


def _degrade_share(sweep: SweepResult) -> float | None:
    """Share of the knee at which p95 TTFT reaches twice the lightest step's (None: it never did)."""
    steps = sorted((s for s in sweep.sweep if s.metrics.ttft_ms.p95), key=lambda s: s.rate)
    if len(steps) < 2 or not sweep.max_rate_meeting_slo:
        return None
    base = steps[0].metrics.ttft_ms.p95 or 0.0
    for step in steps[1:]:
        if (step.metrics.ttft_ms.p95 or 0.0) >= 2 * base:
            return min(1.0, step.rate / sweep.max_rate_meeting_slo)
    return None


def _capacity(bench: Sequence[tuple[StoredRun, RunResult]]) -> CapacityEvidence | None:
    for run, result in reversed(bench):
        if isinstance(result, SweepResult) and result.max_rate_meeting_slo:
            targets = tuple(
                (str(t.get("metric")), str(t.get("stat", "p95")), float(t["limit"]))
                for t in (run.spec.get("slo") or {}).get("targets", [])
                if t.get("metric") in ("ttft", "e2e", "tpot", "itl") and "limit" in t
            )
            slo = ", ".join(f"{m}_{stat} <= {limit:g} ms" for m, stat, limit in targets) or "its SLO"
            return CapacityEvidence(result.run_id or run.id, result.max_rate_meeting_slo, slo, targets,
                                    _degrade_share(result))  # fmt: skip
    return None


def _simulated(result: RunResult) -> bool:
    return bool(result.target.get("simulated")) or "twin" in (result.target.get("server") or {})


def history_from_runs(runs: Iterable[StoredRun], traffic: TrafficEvidence | None = None) -> HistoryEvidence:
    """Fold stored top-level runs (any order) into the evidence the stage reads. Runs against the twin are
    counted apart and never stand for the team's server."""
    ordered = sorted(runs, key=lambda r: r.created_at)
    measured = [
        (run, result)
        for run in ordered
        if run.kind in ("bench", "sweep") and (result := run.measured) is not None
    ]
    bench = [(run, result) for run, result in measured if not _simulated(result)]
    real_ids = {run.id for run, _ in bench}
    # `servewise gate` notes its verdict on the candidate run; a release gates its own bench
    gates = [
        gate.verdict for run in ordered if run.id in real_ids and (gate := run.annotations.gate) is not None
    ]
    releases = [r for run in ordered if run.kind == "release" and isinstance(r := run.result, ReleaseResult)]
    gates += [r.gate_verdict for r in releases if r.gate_verdict is not None]
    coldstarts = [
        coldstart
        for run in ordered
        if run.kind == "coldstart" and isinstance(coldstart := run.result, ColdstartResult)
    ]
    slo_verdicts = [result.slo.met for _, result in bench if result.slo.met is not None]
    diagnosis = _named_diagnosis(bench)
    # a rollback: a release that rolled back, or a run labelled rollback=true (the re-deployed baseline)
    rollbacks = sum(1 for r in releases if r.rolled_back) + sum(
        1 for run in ordered if run.kind == "rollback" or run.labels.get("rollback") == "true"
    )
    span = (bench[-1][0].created_at - bench[0][0].created_at) / DAY_S if len(bench) > 1 else 0.0
    return HistoryEvidence(
        bench_runs=len(bench),
        span_days=span,
        repeat_groups=_repeat_groups(bench),
        slo_runs=len(slo_verdicts),
        slo_met=sum(1 for met in slo_verdicts if met),
        gate_runs=len(gates),
        gate_failed=sum(1 for verdict in gates if verdict is GateVerdict.FAIL),
        releases=len(releases),
        rollbacks=rollbacks,
        bottleneck=diagnosis.primary if diagnosis else None,
        bottleneck_confidence=diagnosis.confidence if diagnosis else None,
        capacity=_capacity(bench),
        coldstart=_coldstart_evidence(coldstarts),
        traffic=traffic,
        simulated_runs=len(measured) - len(bench),
    )
