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
from servewise.results.coldstart import (
    CacheFolder,
    CacheState,
    ColdStart,
    ColdstartAggregate,
    ColdstartResult,
    ColdstartVerdict,
    FirstRequest,
    LoadIoRecord,
    ResourceStats,
    StartEvent,
    StartPhase,
    StartResources,
    StartStats,
    WarmRequests,
)
from servewise.results.diagnosis import DiagnosisResult, FindingResult
from servewise.results.gate import CheckRow, FingerprintDiff, GateReport, RunPointer
from servewise.results.plan import PlanRecord, TierRecord
from servewise.results.release import ReleaseOutcome, ReleaseResult, ReleaseStep
from servewise.results.run import (
    CacheOutcome,
    ClientCheck,
    Distribution,
    LagSummary,
    Metrics,
    ReasoningOutcome,
    RunResult,
    SloOutcome,
    SloTargetOutcome,
    SweepResult,
    SweepStep,
    TtftTrend,
    TurnRow,
    WorkerCounts,
)
from servewise.results.stage import ChecklistRecord, LayerRecord, ProbeRecord, StageRecord
from servewise.results.trace import TraceLengths, TraceRateBucket, TraceSessions, TraceSummary

__all__ = [
    "Annotations",
    "CacheFolder",
    "CacheOutcome",
    "CacheState",
    "CheckRow",
    "ChecklistRecord",
    "ClientCheck",
    "ColdStart",
    "ColdstartAggregate",
    "ColdstartResult",
    "ColdstartVerdict",
    "DiagnosisResult",
    "Distribution",
    "FindingResult",
    "FingerprintDiff",
    "FirstRequest",
    "GateMark",
    "GateReport",
    "LagSummary",
    "LayerRecord",
    "LoadIoRecord",
    "Metrics",
    "PlanNote",
    "PlanRecord",
    "ProbeRecord",
    "ReasoningOutcome",
    "ReleaseOutcome",
    "ReleaseResult",
    "ReleaseStep",
    "RepeatNote",
    "ResourceStats",
    "RunPointer",
    "RunResult",
    "SloOutcome",
    "SloTargetOutcome",
    "StageNote",
    "StageRecord",
    "StartEvent",
    "StartPhase",
    "StartResources",
    "StartStats",
    "StepDiagnosis",
    "SweepResult",
    "SweepStep",
    "TierRecord",
    "TraceLengths",
    "TraceRateBucket",
    "TraceSessions",
    "TraceSummary",
    "TtftTrend",
    "TurnRow",
    "WarmRequests",
    "WorkerCounts",
]
