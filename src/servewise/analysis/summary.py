"""The run summary: metrics, SLO verdict and the load generator's account of itself."""

from __future__ import annotations

from servewise.analysis.metrics import MetricsAccumulator, evaluate_slo
from servewise.results import CacheOutcome, ClientCheck, LagSummary, Metrics, RunResult, SloOutcome
from servewise.results.run import RunStatus
from servewise.spec.models import RunSpec

LAG_LIMIT_MS = 10.0
MIN_LAG_SAMPLES = 20
CPU_LIMIT_PERCENT = 90.0


def client_verdict(
    lag_ms: dict[str, float | int | None], cpu_percent: list[float], *, open_loop: bool, loop_lag_max_ms: float
) -> ClientCheck:
    """Did the load generator keep its schedule? A run whose client fell behind is not a server result."""
    reasons = []
    count = lag_ms.get("count") or 0
    # a handful of sends cannot make a p99: judge the tail only where there is one
    stat = "p99" if count >= 100 else "p90"
    tail = lag_ms.get(stat)
    if open_loop and count >= MIN_LAG_SAMPLES and tail is not None and tail > LAG_LIMIT_MS:
        reasons.append(f"schedule lag {stat} {tail:.1f} ms > {LAG_LIMIT_MS:g} ms")
    busiest = max(cpu_percent, default=0.0)
    if busiest >= CPU_LIMIT_PERCENT:
        reasons.append(f"a client worker used {busiest:.0f}% of a core")
    return ClientCheck(
        schedule_lag_ms=LagSummary(p50=lag_ms.get("p50"), p99=lag_ms.get("p99"), max=lag_ms.get("max")),
        cpu_percent=busiest,
        cpu_percent_per_worker=cpu_percent,
        loop_lag_max_ms=loop_lag_max_ms,
        limited=bool(reasons),
        reason="; ".join(reasons) or None,
    )


def run_status(metrics: Metrics, slo: SloOutcome, interrupted: bool) -> RunStatus:
    if interrupted:
        return "interrupted"
    if metrics.requests_ok == 0:
        return "failed"
    if slo.met is False:
        return "slo_failed"
    return "ok"


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
        open_loop=spec.load.kind != "concurrency",
        loop_lag_max_ms=loop_lag_max_ms,
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
    )
