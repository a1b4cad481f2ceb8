"""Typed results: what a run measured, what each use case decided, and what was noted on a run later.

Every part that reads a result reads these models, never string paths into JSON. The store writes them
as JSON (``model_dump(mode="json", by_alias=True)``) with a schema version beside, and parses them back.
"""

from servewise.results.annotations import (
    Annotations,
    GateMark,
    PlanNote,
    RepeatNote,
    StageNote,
    StepDiagnosis,
)
from servewise.results.coldstart import ColdstartResult
from servewise.results.diagnosis import DiagnosisResult, FindingResult
from servewise.results.gate import CheckRow, FingerprintDiff, GateReport, RunPointer
from servewise.results.plan import PlanRecord, TierRecord
from servewise.results.run import (
    ClientCheck,
    Distribution,
    LagSummary,
    Metrics,
    RunResult,
    SloOutcome,
    SloTargetOutcome,
    SweepResult,
    SweepStep,
    TtftTrend,
    WorkerCounts,
)
from servewise.results.stage import ChecklistRecord, LayerRecord, ProbeRecord, StageRecord

__all__ = [
    "Annotations",
    "CheckRow",
    "ChecklistRecord",
    "ClientCheck",
    "ColdstartResult",
    "DiagnosisResult",
    "Distribution",
    "FindingResult",
    "FingerprintDiff",
    "GateMark",
    "GateReport",
    "LagSummary",
    "LayerRecord",
    "Metrics",
    "PlanNote",
    "PlanRecord",
    "ProbeRecord",
    "RepeatNote",
    "RunPointer",
    "RunResult",
    "SloOutcome",
    "SloTargetOutcome",
    "StageNote",
    "StageRecord",
    "StepDiagnosis",
    "SweepResult",
    "SweepStep",
    "TierRecord",
    "TtftTrend",
    "WorkerCounts",
]
