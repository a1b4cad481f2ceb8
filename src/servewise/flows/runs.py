"""History use cases: read stored runs back, and repeat a stored spec to measure its run-to-run spread."""

from __future__ import annotations

from dataclasses import dataclass

from servewise.analysis.repeatability import noise_floor, repeat_spread
from servewise.engine.loop import run as run_loop
from servewise.errors import UsageError
from servewise.flows.bench import ProgressView, run_bench
from servewise.results import RepeatNote, RunResult
from servewise.spec import RunSpec
from servewise.store import RunStore


@dataclass(frozen=True)
class RepeatOutcome:
    """The runs of one spec (the original first) and each metric's median, min, max and spread."""

    group: list[str]
    spread: dict[str, dict[str, float | None]]


def repeat_run(
    store: RunStore, run_ref: str, times: int, progress: ProgressView, *, announce: bool = True
) -> RepeatOutcome:
    """Run a stored bench's spec ``times`` more; note the spread on every run of the group (the gate's
    noise floor)."""
    original = store.get_run(run_ref)
    if original.kind != "bench" or original.measured is None:
        raise UsageError(f"run {original.id} is a {original.kind} run; repeat takes a finished bench run")
    spec = RunSpec.model_validate(original.spec)
    spec = spec.model_copy(update={"labels": spec.labels | {"repeat_of": original.id}})
    results: list[RunResult] = [original.measured]
    for i in range(times):
        if announce:
            progress.notice(f"repeat {i + 1}/{times} of {original.id}")
        results.append(run_loop(run_bench(spec, store, progress=progress)))
    spread = repeat_spread(results)
    group = [r.run_id for r in results]
    note = RepeatNote(spread=noise_floor(spread), group=group)
    for run_id in group:
        store.annotate(run_id, note)
    return RepeatOutcome(group=group, spread=spread)
