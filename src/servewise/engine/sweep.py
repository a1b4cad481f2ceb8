"""`--load sweep`: find the highest Poisson rate that still meets the SLO, one stored step at a time."""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any

import servewise
from servewise.analysis.sweep import next_rate, step_passed, sweep_result
from servewise.engine.progress import LiveStats
from servewise.engine.runner import RunContext, execute_run
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
) -> dict[str, Any]:
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
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    note = None
    while (rate := next_rate(history, sweep)) is not None and not context.interrupted:
        load = LoadSpec(kind="poisson", rate=rate, max_concurrency=spec.load.max_concurrency)
        stats.in_flight = 0
        watcher = asyncio.create_task(_watch_saturation(context, stats, rate, sweep.step_duration_s))
        try:
            summary = await execute_run(
                context,
                spec,
                kind="sweep-step",
                parent_id=parent_id,
                load=load,
                duration_s=sweep.step_duration_s,
            )
        finally:
            watcher.cancel()
        early = None if not watcher.done() or watcher.cancelled() else watcher.result()
        if early:
            summary["early_stop"] = early
            summary["status"] = "slo_failed"
        if summary["status"] == "interrupted" and not early:
            break
        passed, why = step_passed(summary)
        history.append((rate, passed))
        steps.append(
            {
                "rate": rate,
                "run_id": summary["run_id"],
                "slo_met": passed,
                "why": why,
                "client_limited": summary["client"]["limited"],
                "metrics": summary["metrics"],
            }
        )
        if summary["client"]["limited"]:
            note = (
                f"stopped at {rate:.2f} req/s: the load generator fell behind ({summary['client']['reason']})"
            )
            break
        if passed and (best is None or rate > best["metrics"]["rate"]):
            best = summary | {"metrics": summary["metrics"] | {"rate": rate}}
    result = sweep_result(steps)
    base = best or (steps and store.get_run(steps[-1]["run_id"]).summary) or {}
    summary = {
        "run_id": parent_id,
        "status": "interrupted"
        if context.interrupted
        else ("ok" if result["max_rate_meeting_slo"] else "slo_failed"),
        "target": context.target.to_dict(),
        "load": f"sweep ({len(steps)} steps)",
        "steady_s": base.get("steady_s", 0.0),
        "metrics": base.get("metrics", {}),
        "slo": base.get("slo", {"met": None, "targets": []}),
        "client": base.get("client", {}),
        **result,
        "sweep_note": note,
    }
    store.finish_run(parent_id, summary["status"], summary)
    return summary
