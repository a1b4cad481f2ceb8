"""Stage assessment: where the team stands (prototype → mature production), which production layer comes next.

The framework is the article's (docs: prototype-to-production): a team enters production when users depend
on the system, the serving pattern repeats, its limits are measurable and infrastructure decisions must be
stable. One idea per module:

- ``answers``: the answers file, what no probe or series can see (an SLA, on-call);
- ``traffic``: production request rates, errors and latency histograms folded into numbers and a trend;
- ``evidence``: stored runs folded into numbers (the only reader of stored runs);
- ``forecast``: the trend of the peak against the capacity measured at the SLO, with dates;
- ``signs``: the article's "moving into production if…" and "closer to prototype if…", ticked;
- ``ladder``: the four stages and what each optimizes for;
- ``checklist``: each item pass / fail / unknown with the evidence that decided it;
- ``placement``: the stage, why, and the next layers ranked (later stages' layers named "not yet").

Pure: probe results, traffic points, history evidence built from stored runs and answers in; a plain
assessment out.
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
    CapacityEvidence,
    ColdStartEvidence,
    HistoryEvidence,
    RepeatGroup,
    StoredRun,
    history_from_runs,
)
from servewise.analysis.stage.forecast import Capacity, Forecast, forecast
from servewise.analysis.stage.ladder import STAGE_GUIDE, Stage
from servewise.analysis.stage.placement import Layer, StageAssessment, assess_stage
from servewise.analysis.stage.signals import Sign, Signs
from servewise.analysis.stage.traffic import (
    LatencyHistogram,
    TrafficEvidence,
    Trend,
    fit_trend,
    traffic_evidence,
)

__all__ = [
    "ANSWER_QUESTIONS",
    "STAGE_GUIDE",
    "Answer",
    "AnswersError",
    "Capacity",
    "CapacityEvidence",
    "ChecklistItem",
    "ColdStartEvidence",
    "Forecast",
    "HistoryEvidence",
    "LatencyHistogram",
    "Layer",
    "ProbeLike",
    "RepeatGroup",
    "Sign",
    "Signs",
    "Stage",
    "StageAssessment",
    "StoredRun",
    "TrafficEvidence",
    "Trend",
    "answers_template",
    "assess_stage",
    "fit_trend",
    "forecast",
    "history_from_runs",
    "parse_answers",
    "traffic_evidence",
]
