"""Stage assessment: where the team stands (prototype → mature production), which production layer comes next.

The framework is the article's (docs: prototype-to-production): a team enters production when users depend
on the system, the serving pattern repeats, its limits are measurable and infrastructure decisions must be
stable. One idea per module:

- ``answers``: the answers file, what no probe can see;
- ``evidence``: stored runs and production traffic folded into numbers (the only reader of stored runs);
- ``ladder``: the four stages and what each optimizes for;
- ``checklist``: each item pass / fail / unknown with the evidence that decided it;
- ``placement``: the stage, why, and the next layers ranked (later stages' layers named "not yet").

Pure: probe results, history evidence built from stored runs, and answers in; a plain assessment out.
"""

from servewise.analysis.stage.answers import (
    ANSWER_QUESTIONS,
    Answer,
    AnswersError,
    answers_template,
    parse_answers,
)
from servewise.analysis.stage.checklist import ChecklistItem, ProbeLike
from servewise.analysis.stage.evidence import (
    ColdStartEvidence,
    HistoryEvidence,
    RepeatGroup,
    StoredRun,
    TrafficPattern,
    history_from_runs,
    traffic_pattern_from_series,
)
from servewise.analysis.stage.ladder import STAGE_GUIDE, Stage
from servewise.analysis.stage.placement import Layer, StageAssessment, assess_stage

__all__ = [
    "ANSWER_QUESTIONS",
    "STAGE_GUIDE",
    "Answer",
    "AnswersError",
    "ChecklistItem",
    "ColdStartEvidence",
    "HistoryEvidence",
    "Layer",
    "ProbeLike",
    "RepeatGroup",
    "Stage",
    "StageAssessment",
    "StoredRun",
    "TrafficPattern",
    "answers_template",
    "assess_stage",
    "history_from_runs",
    "parse_answers",
    "traffic_pattern_from_series",
]
