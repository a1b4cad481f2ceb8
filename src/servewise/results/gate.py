"""The gate's report: every check, the fingerprint differences, and where to roll back to."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from servewise.results.base import Result


class GateVerdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class RunPointer(Result):
    """A run the gate resolved, and the reference it was asked for by."""

    run_id: str
    asked: str
    labels: dict[str, str]
    created_at: float


class CheckRow(Result):
    """One row of the gate. Changes and intervals are percent (errors: percentage points)."""

    name: str
    baseline: float | None
    candidate: float | None
    change_pct: float | None
    ci: tuple[float | None, float | None] | None
    verdict: GateVerdict
    gated: bool
    method: str
    unit: str
    allowed_pct: float | None
    noise_floor_pct: float | None
    p_value: float | None
    n_baseline: int
    n_candidate: int
    reason: str


class FingerprintDiff(Result):
    field: str
    baseline: str | None
    candidate: str | None


class RollbackTarget(Result):
    run_id: str
    labels: dict[str, str]


class SetAsideRun(Result):
    """A run the gate left out: it shared the host with other work while each side kept a quiet run."""

    run_id: str
    reason: str


class GateReport(Result):
    verdict: GateVerdict
    reason: str
    #: None when no baseline existed and the candidate was recorded as the first (``--first-run-is-baseline``)
    baseline: RunPointer | None
    candidate: RunPointer
    #: every run behind each side (the named run first, then its repeat group and the gate's own repeats)
    baseline_runs: list[str] = []
    candidate_runs: list[str] = []
    set_aside: list[SetAsideRun] = Field(default=[], exclude_if=lambda v: not v)
    metrics: list[CheckRow]
    fingerprint_diff: list[FingerprintDiff]
    rollback_to: RollbackTarget | None
