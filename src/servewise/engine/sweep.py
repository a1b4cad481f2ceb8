"""`--load sweep`: find the highest Poisson rate that still meets the SLO, one stored step at a time."""

from __future__ import annotations

import asyncio
from time import perf_counter

import servewise
from servewise.analysis.client import client_advice
from servewise.analysis.sweep import next_rate, step_passed, sweep_result
from servewise.engine.progress import LiveStats
from servewise.engine.runner import RunContext, execute_run
from servewise.results import ClientCheck, Metrics, RunResult, SloOutcome, SweepResult, SweepStep
from servewise.results.run import RunStatus
from servewise.spec.models import LoadSpec, RunSpec

SATURATION_BACKLOG_S = 10.0


async def _watch_saturation(context: RunContext, stats: LiveStats, rate: float, step_s: float) -> str | None:
    """Stop a step early once the backlog alone is worth many seconds of arrivals: clearly saturated."""
    started = perf_counter()
    while True:
        await asyncio.sleep(0.5)
        elapsed = perf_counter() - started
        if elapsed > step_s * 0.25 and stats.in_flight > max(rate * SATURATION_BACKLOG_S, 50):
            context.workers.stop()
            return f"over-saturated: {stats.in_flight} requests backlogged at {rate:.2f} req/s"


async def run_sweep(
    context: RunContext, spec: RunSpec, stats: LiveStats, run_id: str | None = None
) -> SweepResult:
    store = context.store
    parent_id = store.create_run(
        run_id=run_id,
        kind="sweep",
        spec=spec.model_dump(mode="json"),
        labels=spec.labels,
        tool_version=servewise.__version__,
        target=context.target.to_dict(),
        environment=context.environment,
    )
    sweep = spec.sweep
    history: list[tuple[float, bool]] = []
    steps: list[SweepStep] = []
    best: RunResult | None = None
    last: RunResult | None = None
    note = None
    while (rate := next_rate(history, sweep)) is not None and not context.interrupted:
        load = LoadSpec(kind="poisson", rate=rate, max_concurrency=spec.load.max_concurrency)
        # each step draws its own requests: with the sweep's one seed, every step after the first would
        # find the previous steps' prompts in the engine's prefix cache and measure a warm cache
        step_spec = spec.model_copy(update={"workload": spec.workload.model_copy(
            update={"seed": spec.workload.seed + len(steps)})})
        stats.in_flight = 0
        watcher = asyncio.create_task(_watch_saturation(context, stats, rate, sweep.step_duration_s))
        try:
            step = await execute_run(
                context,
                step_spec,
                kind="sweep-step",
                parent_id=parent_id,
                load=load,
                duration_s=sweep.step_duration_s,
            )
        finally:
            watcher.cancel()
        early = None if not watcher.done() or watcher.cancelled() else watcher.result()
        if early:
            step = step.model_copy(update={"early_stop": early, "status": "slo_failed"})
        if step.status == "interrupted" and not early:
            break
        passed, why = step_passed(step)
        history.append((rate, passed))
        steps.append(
            SweepStep(
                rate=rate,
                run_id=step.run_id,
                slo_met=passed,
                why=why,
                client_limited=step.client.limited,
                metrics=step.metrics,
            )
        )
        last = step
        if step.partial is not None:  # a lost Ray worker does not come back for the next step
            note = f"stopped at {rate:.2f} req/s: {step.partial.lost_requests} requests lost with a Ray worker"
            break
        if step.client.limited:
            note = (
                f"stopped at {rate:.2f} req/s: the load generator fell behind ({step.client.reason}):"
                f" {client_advice(step.diagnosis.client_cause if step.diagnosis else None)}"
            )
            break
        if passed and (best is None or rate > (best.metrics.rate or 0.0)):
            best = step.model_copy(update={"metrics": step.metrics.model_copy(update={"rate": rate})})
    curve, knee = sweep_result(steps)
    base = best or last
    status: RunStatus = "interrupted" if context.interrupted else ("ok" if knee else "slo_failed")
    if last is not None and last.partial is not None:
        status = "partial"
    result = SweepResult(
        run_id=parent_id,
        status=status,
        target=context.target.to_dict(),
        load=f"sweep ({len(steps)} steps)",
        steady_s=base.steady_s if base else 0.0,
        metrics=base.metrics if base else Metrics(),
        slo=base.slo if base else SloOutcome(),
        client=base.client if base else ClientCheck(),
        sweep=curve,
        max_rate_meeting_slo=knee,
        sweep_note=note,
    )
    store.finish_run(parent_id, result)
    return result
