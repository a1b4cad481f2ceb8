"""History use cases: read stored runs back, and repeat a stored spec to measure its run-to-run spread."""

from __future__ import annotations

from dataclasses import dataclass

from servewise.analysis.repeatability import noise_floor, repeat_spread
from servewise.engine.loop import run as run_loop
from servewise.errors import UsageError
from servewise.flows.bench import ProgressView, run_bench
from servewise.results import RepeatNote, RunResult
from servewise.spec import RunSpec
from servewise.store import RunRow, Store


@dataclass(frozen=True)
class RepeatOutcome:
    """The runs of one spec (the original first) and each metric's median, min, max and spread."""

    group: list[str]
    spread: dict[str, dict[str, float | None]]


def repeatable(store: Store, run_ref: str) -> RunRow:
    """A finished bench run whose spec can be sent again."""
    original = store.get_run(run_ref)
    if original.kind != "bench" or original.measured is None:
        raise UsageError(f"run {original.id} is a {original.kind} run; repeat takes a finished bench run")
    return original


def rerun(store: Store, original: RunRow, progress: ProgressView) -> RunResult:
    """One more run of a stored bench's spec, labelled ``repeat_of`` the original."""
    spec = RunSpec.model_validate(original.spec)
    spec = spec.model_copy(update={"labels": spec.labels | {"repeat_of": original.id}})
    return run_loop(run_bench(spec, store, progress=progress))


def note_group(store: Store, results: list[RunResult]) -> RepeatOutcome:
    """Keep the group and its spread on every run of it: later gates gate on all of them."""
    spread = repeat_spread(results)
    group = [r.run_id for r in results]
    note = RepeatNote(spread=noise_floor(spread), group=group)
    for run_id in group:
        store.annotate(run_id, note)
    return RepeatOutcome(group=group, spread=spread)


def repeat_group(store: Store, run: RunRow) -> list[RunRow]:
    """The run and the finished runs of its repeat group (``runs repeat`` or a gate's ``--repeats``)."""
    ids = run.annotations.repeat.group if run.annotations.repeat else [run.id]
    others = [store.get_run(run_id) for run_id in ids if run_id != run.id]
    return [run, *(other for other in others if other.measured is not None and other.status != "running")]


def repeat_run(
    store: Store, run_ref: str, times: int, progress: ProgressView, *, announce: bool = True
) -> RepeatOutcome:
    """Run a stored bench's spec ``times`` more; note the group on every run of it (the gate reads them all)."""
    original = repeatable(store, run_ref)
    results = [run.measured for run in repeat_group(store, original) if run.measured is not None]
    for i in range(times):
        if announce:
            progress.notice(f"repeat {i + 1}/{times} of {original.id}")
        results.append(rerun(store, original, progress))
    return note_group(store, results)
