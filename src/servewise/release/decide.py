"""What a release does next and how it ended, from the steps so far: plain functions of stored steps, so
every path (a gate that fails, a ready that never comes, a rollback that fails, Ctrl-C) is decided one way
and can be tested without deploying anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from servewise.results.gate import GateVerdict
from servewise.results.release import ROLLBACK_STEPS, ReleaseOutcome, ReleaseStep, StepName

_FORWARD = {StepName.DEPLOY: StepName.READY, StepName.PROBES: StepName.BENCH}
_BACK = {StepName.ROLLBACK: StepName.ROLLBACK_READY, StepName.ROLLBACK_READY: StepName.CHECK}


@dataclass(frozen=True, slots=True)
class Plan:
    """What is known before the first step: what to roll back to and what to gate against."""

    version: str
    previous: str | None  # the release to roll back to; None: nothing to roll back to
    gated: bool  # a good release exists to gate the new one against
    check_gated: bool  # the previous release has a bench of its own to gate its check against
    probes: bool
    on_inconclusive: Literal["keep", "rollback"] = "keep"


@dataclass(frozen=True, slots=True)
class Conclusion:
    outcome: ReleaseOutcome
    running: str | None  # None: unknown
    reason: str


def _find(steps: Sequence[ReleaseStep], name: StepName) -> ReleaseStep | None:
    return next((s for s in reversed(steps) if s.name is name), None)


def rejects(plan: Plan, step: ReleaseStep) -> bool:
    """Does this forward step send the release back? A failed probe only informs (the bench and the gate
    decide); stopping the probes (a timeout, Ctrl-C) stops the release like any other step."""
    if step.status != "ok":
        return not (step.name is StepName.PROBES and step.status == "failed")
    if step.name is not StepName.GATE:
        return False
    if step.verdict is GateVerdict.INCONCLUSIVE:
        return plan.on_inconclusive == "rollback"
    return step.verdict is not GateVerdict.PASS


def next_step(plan: Plan, steps: Sequence[ReleaseStep]) -> StepName | None:
    """The step to run after ``steps``; None when the release is over."""
    if not steps:
        return StepName.DEPLOY
    last = steps[-1]
    if last.name in ROLLBACK_STEPS:
        if last.status != "ok":
            return None
        if last.name is StepName.CHECK:
            return StepName.CHECK_GATE if plan.check_gated else None
        return _BACK.get(last.name)
    if rejects(plan, last):
        return StepName.ROLLBACK if plan.previous else None
    if last.name is StepName.READY:
        return StepName.PROBES if plan.probes else StepName.BENCH
    if last.name is StepName.BENCH:
        return StepName.GATE if plan.gated else None
    return _FORWARD.get(last.name)


def _why(plan: Plan, steps: Sequence[ReleaseStep]) -> str:
    """The forward step that sent the release back, in a few words."""
    failed = next(s for s in steps if s.name not in ROLLBACK_STEPS and rejects(plan, s))
    if failed.name is StepName.GATE and failed.status == "ok":
        return f"gate {failed.verdict}: {failed.detail}"
    return f"{failed.name} {failed.status}: {failed.detail}"


def _kept(plan: Plan, steps: Sequence[ReleaseStep]) -> Conclusion:
    gate = _find(steps, StepName.GATE)
    if gate is None:
        return Conclusion(ReleaseOutcome.GOOD, plan.version, "first release: recorded as the baseline")
    if gate.verdict is GateVerdict.PASS:
        return Conclusion(ReleaseOutcome.GOOD, plan.version, f"gate pass: {gate.detail}")
    return Conclusion(ReleaseOutcome.KEPT, plan.version, f"inconclusive ({gate.detail})")


def conclude(plan: Plan, steps: Sequence[ReleaseStep]) -> Conclusion:
    """How the release ended once ``next_step`` says it is over, and which release that left running."""
    if not steps:
        return Conclusion(ReleaseOutcome.NOT_DEPLOYED, plan.previous,
                          "stopped (Ctrl-C) before the deploy began: nothing was changed")  # fmt: skip
    back = [s for s in steps if s.name in ROLLBACK_STEPS]
    forward = [s for s in steps if s.name not in ROLLBACK_STEPS]
    if not any(rejects(plan, s) for s in forward):
        return _kept(plan, steps)
    why = _why(plan, steps)
    if not back:
        ready = _find(steps, StepName.READY)
        running = plan.version if ready is not None and ready.status == "ok" else None
        return Conclusion(ReleaseOutcome.UNKNOWN, running, f"{why}; no previous release to roll back to")
    last = back[-1]
    if last.name in (StepName.ROLLBACK, StepName.ROLLBACK_READY) and last.status != "ok":
        return Conclusion(ReleaseOutcome.UNKNOWN, None, f"{why}; then {last.name} {last.status}: {last.detail}")
    previous = plan.previous
    if last.status != "ok":
        return Conclusion(ReleaseOutcome.UNKNOWN, previous,
                          f"{why}; {previous} answers again but its {last.name} {last.status}: {last.detail}")  # fmt: skip
    if last.name is StepName.CHECK_GATE and last.verdict is GateVerdict.FAIL:
        return Conclusion(ReleaseOutcome.UNKNOWN, previous,
                          f"{why}; {previous} is back but fails its own gate: {last.detail}")  # fmt: skip
    how = (f"its check is within its own gate ({last.verdict})" if last.name is StepName.CHECK_GATE
           else "its check bench ran clean (it has no bench of its own to gate against)")  # fmt: skip
    return Conclusion(ReleaseOutcome.ROLLED_BACK, previous, f"{why}; rolled back to {previous}: {how}")

