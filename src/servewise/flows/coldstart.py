"""coldstart as a use case: N starts of a server (or one attached start), stored as one run of kind
``coldstart`` with every start's phases, the spread over them and the verdicts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import servewise
from servewise.coldstart import verdicts
from servewise.coldstart.runner import (
    ColdstartConfig,
    ProgressFn,
    measure_start,
    preflight,
    signals_as_interrupt,
)
from servewise.engine.environment import environment_fingerprint
from servewise.results import ColdStart, ColdstartResult
from servewise.results.coldstart import ColdstartStatus
from servewise.store import Store


def run_coldstart(
    config: ColdstartConfig,
    store: Store,
    labels: dict[str, str] | None = None,
    on_progress: ProgressFn | None = None,
    on_result: Callable[[ColdStart], None] | None = None,
) -> ColdstartResult:
    """All runs, stored as one run of kind ``coldstart``; returns the result (also stored).

    Stops after the first start that fails (the next would fail the same way) and on Ctrl-C, storing
    what was measured with status "failed" / "interrupted"."""
    preflight(config)
    target = {
        "url": config.endpoint.base_url,
        "ready_url": config.endpoint.ready_url,
        "api": config.endpoint.api,
        "model": config.endpoint.model,
        "command": list(config.command),
        "attach_pid": config.attach_pid,
    }
    run_id = store.create_run(
        kind="coldstart",
        spec=config.spec(),
        labels=labels or {},
        tool_version=servewise.__version__,
        target=target,
        environment=environment_fingerprint(),
    )
    runs = 1 if config.attach_pid is not None else config.runs
    config = replace(config, log_dir=config.log_dir / run_id, runs=runs)
    starts: list[ColdStart] = []
    interrupted = False
    with signals_as_interrupt():
        for index in range(1, runs + 1):
            try:
                start, samples = measure_start(config, index, on_progress)
            except KeyboardInterrupt:  # between starts: nothing is running
                interrupted = True
                break
            interrupted = start.status == "interrupted"
            starts.append(start)
            if samples:  # stored as samples of the run, not inside its result
                store.append_samples(run_id, samples)
            if on_result is not None:
                on_result(start)
            if start.status != "ok":
                break
    status: ColdstartStatus = (
        "interrupted"
        if interrupted
        else ("ok" if starts and all(r.status == "ok" for r in starts) else "failed")
    )
    measured = verdicts.summarize(starts)
    stored = ColdstartResult(
        runs=measured.runs,
        runs_ok=measured.runs_ok,
        engine=measured.engine,
        model_bytes=measured.model_bytes,
        aggregate=measured.aggregate,
        verdicts=measured.verdicts,
        status=status,
        run_id=run_id,
        kind="coldstart",
        target=target | {"model": next((r.model for r in starts if r.model), config.endpoint.model)},
        runs_requested=runs,
        log_dir=str(config.log_dir),
    )
    store.finish_run(run_id, stored)
    return stored
