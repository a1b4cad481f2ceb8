"""A stored release: every step it took (deploy, ready, probes, bench, gate, and the rollback's own), and
how it ended, including which release was left running.

``flows.release`` stores it as a run of kind ``release`` after each step, so a crash or Ctrl-C keeps the
steps done so far.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from servewise.results.base import Result
from servewise.results.gate import GateReport, GateVerdict
from servewise.results.stage import ProbeRecord


class StepName(StrEnum):
    DEPLOY = "deploy"
    READY = "ready"
    PROBES = "probes"
    BENCH = "bench"
    GATE = "gate"
    ROLLBACK = "rollback"
    ROLLBACK_READY = "rollback_ready"
    CHECK = "check"
    CHECK_GATE = "check_gate"


#: the steps that bring the previous release back and confirm it
ROLLBACK_STEPS = frozenset({StepName.ROLLBACK, StepName.ROLLBACK_READY, StepName.CHECK, StepName.CHECK_GATE})

StepStatus = Literal["ok", "failed", "timeout", "interrupted"]


class ReleaseOutcome(StrEnum):
    """How a release ended; ``running`` while it is under way (what a crash leaves stored)."""

    RUNNING = "running"
    GOOD = "good"  # gated pass, or the first release recorded as the baseline
    KEPT = "kept"  # the gate was inconclusive and the file says keep
    ROLLED_BACK = "rolled_back"  # the previous release is back and within its own gate
    NOT_DEPLOYED = "not_deployed"  # stopped before the deploy began: the release before it still runs
    UNKNOWN = "unknown"  # no release is known good and running: see ``running`` and ``reason``


class ReleaseStep(Result):
    """One step as it ran: times (epoch seconds), the command and its output tail, or what it measured."""

    name: StepName
    status: StepStatus
    started_at: float
    finished_at: float
    detail: str = ""  # one line: what happened
    command: str | None = None  # with {version}/{previous} filled in, environment references unexpanded
    exit_code: int | None = None
    output_tail: str = ""
    log_path: str | None = None
    run_id: str | None = None  # the bench run of a bench or check step
    verdict: GateVerdict | None = None  # a gate or check_gate step's verdict
    gate: GateReport | None = None  # and its report, every check
    time_to_ready_s: float | None = None  # a ready step: from the deploy (or rollback) command's start
    first_token_ms: float | None = None
    probes: list[ProbeRecord] = []

    @property
    def duration_s(self) -> float:
        return self.finished_at - self.started_at


class ReleaseResult(Result):
    run_id: str
    kind: str = "release"
    version: str
    previous: str | None  # the release it replaces (and rolls back to); None for the first one
    target: dict[str, Any]  # url and ready_url, as every stored result names its target
    status: ReleaseOutcome = ReleaseOutcome.RUNNING
    reason: str = ""
    running: str | None = None  # the release running at the end; None when unknown
    baseline_release: str | None = None  # the last good release's run, gated against
    baseline_run: str | None = None  # its bench run
    bench_run: str | None = None
    check_run: str | None = None
    gate_verdict: GateVerdict | None = None
    check_verdict: GateVerdict | None = None
    rolled_back: bool = False  # the rollback command was run (``status`` says whether it worked)
    interrupted: bool = False
    time_to_ready_s: float | None = None
    started_at: float
    finished_at: float | None = None
    steps: list[ReleaseStep] = []

    @property
    def good(self) -> bool:
        """A release later ones gate against and roll back to."""
        return self.status in (ReleaseOutcome.GOOD, ReleaseOutcome.KEPT)
