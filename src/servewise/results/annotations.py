"""What later commands note on a stored run: kept beside its measured result, never written into it.

Each note has a kind (its table key); a run has at most one note of each kind, the newest.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from servewise.results.base import Result
from servewise.results.diagnosis import DiagnosisResult
from servewise.results.gate import GateVerdict
from servewise.results.plan import PlanRecord
from servewise.results.stage import ProbeRecord, StageRecord


class GateMark(Result):
    """`servewise gate` decided this run against a baseline (feeds ``latest-pass`` and rollbacks)."""

    verdict: GateVerdict
    #: None: no baseline existed yet and this run was recorded as the first one (``gate --first-run-is-baseline``)
    baseline: str | None
    at: float


class RepeatNote(Result):
    """`servewise runs repeat`: relative run-to-run spread per metric, the gate's noise floor."""

    spread: dict[str, float]
    group: list[str]


class StageNote(Result):
    """`servewise stage --attach` / doctor: where the team stood, and the probes behind it."""

    stage: StageRecord
    probes: list[ProbeRecord] = []


class PlanNote(Result):
    """doctor's projection from this run, or why there is none."""

    plan: PlanRecord | None = None
    note: str | None = None


class StepDiagnosis(DiagnosisResult):
    """doctor's diagnosis of a sweep's saturating step, kept on the sweep."""

    run_id: str


NOTE_KINDS: dict[str, type[Result]] = {
    "gate": GateMark,
    "repeat": RepeatNote,
    "stage": StageNote,
    "plan": PlanNote,
    "diagnosis": StepDiagnosis,
}


class Annotations(Result):
    """Every note on one run, in the order they were made."""

    gate: GateMark | None = None
    repeat: RepeatNote | None = None
    stage: StageNote | None = None
    plan: PlanNote | None = None
    diagnosis: StepDiagnosis | None = None
    order: list[str] = Field(default=[], exclude=True)

    def legacy_json(self) -> dict[str, Any]:
        """The keys release 0.1.0 wrote into the summary itself, so exports read exactly as they did."""
        out: dict[str, Any] = {}
        for kind in self.order:
            note = getattr(self, kind)
            if isinstance(note, GateMark):
                out["gate"] = note.to_json()
            elif isinstance(note, RepeatNote):
                out |= {"repeat_spread": note.spread, "repeat_group": note.group}
            elif isinstance(note, StageNote):
                out["stage"] = note.stage.to_json()
                if note.probes:
                    out["probes"] = [p.to_json() for p in note.probes]
            elif isinstance(note, PlanNote):
                if note.plan is not None:
                    out["plan"] = note.plan.to_json()
                if note.note is not None:
                    out["plan_note"] = note.note
            elif isinstance(note, StepDiagnosis):
                out["diagnosis"] = note.to_json()
        return out
