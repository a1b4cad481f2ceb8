"""The run summary: metrics, SLO verdict and the load generator's account of itself."""

from __future__ import annotations

from servewise.analysis.client import client_verdict
from servewise.analysis.metrics import MetricsAccumulator, evaluate_slo
from servewise.results import CacheOutcome, Metrics, RunResult, SloOutcome, UnitOutcome
from servewise.results.run import RunStatus
from servewise.spec.models import RunSpec, TargetSpec


def run_status(metrics: Metrics, slo: SloOutcome, interrupted: bool) -> RunStatus:
    if interrupted:
        return "interrupted"
    if metrics.requests_ok == 0:
        return "failed"
    if slo.met is False:
        return "slo_failed"
    return "ok"


def unit_outcome(target: TargetSpec, metrics: Metrics) -> UnitOutcome | None:
    """Documents/s for a reranker, images/s and the time per image for an image server; None for token APIs."""
    outcome = target.outcome()
    if outcome is None:
        return None
    unit, each = outcome
    e2e = metrics.e2e_ms.p50
    return UnitOutcome(unit=unit, per_request=each, per_s=metrics.requests_per_s * each,
                       ms_each_p50=None if e2e is None else e2e / each)  # fmt: skip


def build_summary(
    *,
    run_id: str,
    spec: RunSpec,
    target: dict[str, object],
    accumulator: MetricsAccumulator,
    window_start: float | None,
    worker_cpu_percent: list[float],
    loop_lag_max_ms: float,
    interrupted: bool,
    load_description: str,
    cache: CacheOutcome | None = None,
) -> RunResult:
    metrics = accumulator.result(window_start, cache)
    slo = evaluate_slo(spec.slo, metrics)
    client = client_verdict(
        accumulator.schedule_lag_ms(),
        worker_cpu_percent,
        open_loop=spec.load.paced,
        loop_lag_max_ms=loop_lag_max_ms,
        e2e_p50_ms=metrics.e2e_ms.p50,
    )
    return RunResult(
        run_id=run_id,
        status=run_status(metrics, slo, interrupted),
        target=target,
        load=load_description,
        steady_s=metrics.window_s,
        metrics=metrics,
        slo=slo,
        client=client,
        outcome=unit_outcome(spec.target, metrics),
    )
