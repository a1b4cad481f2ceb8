"""Placement: which stage the evidence puts a team at, why, and which production layers come next.

Its own module because it is the judgement itself: placement is driven by demand and commitments (who
depends on it, is it growing, what is promised), not by how many checklist items pass; the next layers
are the failing items that matter at this stage, ranked, and a later stage's layers are named "not yet"
so the team does not overbuild.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from servewise.analysis.stage.answers import answered
from servewise.analysis.stage.checklist import (
    MIN_REPEATS,
    MIN_SLO_RUNS,
    ChecklistItem,
    ProbeLike,
    build_checklist,
)
from servewise.analysis.stage.evidence import HistoryEvidence
from servewise.analysis.stage.ladder import STAGE_GUIDE, Stage
from servewise.results.stage import StageRecord

TRAFFIC_GROWTH = 1.25  # last period at least 25% above the first = growing


@dataclass(frozen=True, slots=True)
class Layer:
    """A production layer to add: why (the failing evidence), what to do, how strongly the evidence asks."""

    key: str
    title: str
    action: str
    why: tuple[str, ...]
    score: float
    needed_from: Stage


@dataclass(frozen=True, slots=True)
class StageAssessment:
    stage: Stage
    reasons: tuple[str, ...]
    optimize_for: str
    do_not_overdo: str
    checklist: tuple[ChecklistItem, ...]
    next_layers: tuple[Layer, ...]
    not_yet: tuple[Layer, ...] = field(default=())

    @property
    def next_step(self) -> str | None:
        return self.next_layers[0].action if self.next_layers else None

    def to_dict(self) -> dict[str, Any]:
        """The printed and stored JSON shape (``servewise stage --json``, the report)."""

        def layer(x: Layer) -> dict[str, Any]:
            return {**asdict(x), "why": list(x.why), "needed_from": x.needed_from.label}

        return {
            "stage": self.stage.label,
            "reasons": list(self.reasons),
            "optimize_for": self.optimize_for,
            "do_not_overdo": self.do_not_overdo,
            "checklist": [{**asdict(c), "needed_from": c.needed_from.label} for c in self.checklist],
            "next_layers": [layer(x) for x in self.next_layers],
            "not_yet": [layer(x) for x in self.not_yet],
            "next_step": self.next_step,
        }

    def record(self) -> StageRecord:
        """The typed record the store keeps (a ``StageNote``) and the report reads."""
        return StageRecord.model_validate(self.to_dict())


def _place(
    history: HistoryEvidence, answers: Mapping[str, str], checklist: Mapping[str, ChecklistItem]
) -> tuple[Stage, list[str]]:
    reasons: list[str] = []
    traffic = history.traffic
    depend_answer = answered(answers, "users_depend")
    live_traffic = traffic is not None and traffic.periods >= 3 and (traffic.peak_rps or 0) > 0
    depend = (
        depend_answer == "yes"
        or answered(answers, "sla") == "yes"
        or (live_traffic and depend_answer != "no")
    )
    if not depend:
        reasons.append(
            f"nobody is recorded as depending on it (users_depend: {depend_answer}, sla: "
            f"{answered(answers, 'sla')}, no production traffic read)"
        )
        if answered(answers, "workload_stable") == "no":
            reasons.append("the workload is still changing a lot (workload_stable: no)")
        if not (history.bottleneck and history.bottleneck_confidence not in (None, "low")):
            reasons.append("nobody can name the true bottleneck yet (no confident diagnosis stored)")
        return Stage.PROTOTYPE, reasons

    if depend_answer == "yes":
        reasons.append("users depend on it (users_depend: yes)")
    elif answered(answers, "sla") == "yes":
        reasons.append("an SLA is in place (sla: yes), so someone depends on it")
    else:
        assert traffic is not None  # nothing else makes `depend` true
        reasons.append(f"production traffic every period for {traffic.periods} periods ({traffic.source})")

    repeat_item = checklist["traffic_pattern"]
    pressure: list[str] = []
    if answered(answers, "traffic_growing") == "yes":
        pressure.append("traffic is growing (traffic_growing: yes)")
    if traffic and traffic.growth is not None and traffic.growth >= TRAFFIC_GROWTH:
        pressure.append(f"volume grew {traffic.growth:.1f}x from the first period to the last")
    if "headroom" in checklist and checklist["headroom"].status == "fail":
        pressure.append(checklist["headroom"].evidence)

    commitments = answered(answers, "sla") == "yes" and answered(answers, "on_call") == "yes"
    rolled = checklist["rollback"].status == "pass"
    tracked = (
        history.slo_runs >= MIN_SLO_RUNS and history.span_days >= 7
    ) or history.gate_runs >= MIN_REPEATS
    if commitments and rolled and repeat_item.status == "pass" and tracked:
        reasons.append("an SLA and on-call are in place (sla: yes, on_call: yes)")
        reasons.append(f"rollback exercised ({checklist['rollback'].evidence})")
        reasons.append(f"the serving pattern repeats ({repeat_item.evidence})")
        reasons.append(
            f"quality is tracked over time ({history.slo_runs} SLO verdicts over "
            f"{history.span_days:.0f} "
            f"days, {history.gate_runs} gate runs)"
        )
        return Stage.MATURE_PRODUCTION, reasons

    missing = [
        what
        for what, ok in (
            ("SLA and on-call", commitments),
            ("an exercised rollback", rolled),
            ("a repeating serving pattern", repeat_item.status == "pass"),
            ("quality tracked over time", tracked),
        )
        if not ok
    ]
    if pressure:
        reasons.extend(pressure)
        reasons.append(f"not mature yet: missing {', '.join(missing)}")
        return Stage.GROWTH_PRODUCTION, reasons
    reasons.append(
        "no growth pressure seen (traffic_growing not yes, no volume growth or headroom squeeze read)"
    )
    reasons.append(f"not mature yet: missing {', '.join(missing)}")
    return Stage.EARLY_PRODUCT, reasons


# Production layers from the article, each fixing some checklist items. Order here breaks score ties.
_LAYERS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    (
        "deploy",
        "Clearer deployment routine and rollback",
        ("deploy_routine", "rollback", "version", "readiness", "repeat_runs"),
        "script the deployment, expose the version, and rehearse one rollback to the previous build",
    ),
    (
        "observability",
        "Basic observability and metrics",
        ("metrics", "health", "usage", "slo_history"),
        "expose /metrics and health, scrape them into Prometheus (servewise ships a Grafana dashboard), "
        "and keep an SLO verdict per run",
    ),
    (
        "failure",
        "Clean failure behaviour",
        ("bad_json", "unknown_model", "oversized_prompt", "auth", "overload"),
        "validate input before the engine, cap the queue and answer 429/503 when full, require a key",
    ),
    (
        "coldstart",
        "Cold-start and model-loading awareness",
        ("coldstart",),
        "pin the compile and weight caches on a persistent volume and re-measure (servewise coldstart --runs 5) "
        "before adding autoscaling",
    ),
    (
        "capacity",
        "Deliberate GPU tier decision and capacity path",
        ("bottleneck", "capacity", "headroom", "traffic_pattern"),
        "sweep to the SLO knee, name the bottleneck, and plan the tier and replicas from it (servewise plan)",
    ),
    (
        "gate",
        "Regression gate before every deployment",
        ("gate",),
        "gate each candidate build against the last good run (servewise gate) before it takes traffic",
    ),
    (
        "operations",
        "Operational commitments",
        ("sla", "on_call"),
        "write down the SLO you already measure as the SLA, and put someone on call for it",
    ),
    (
        "cost",
        "Cost discipline",
        ("cost_tracked",),
        "track $ per 1M output tokens at the SLO-compliant rate for each tier (servewise plan)",
    ),
)


def _layers(stage: Stage, checklist: Sequence[ChecklistItem]) -> tuple[list[Layer], list[Layer]]:
    by_key = {c.key: c for c in checklist}
    now: list[Layer] = []
    later: list[Layer] = []
    for order, (key, title, items, action) in enumerate(_LAYERS):
        failing = [by_key[k] for k in items if k in by_key and by_key[k].status == "fail"]
        unknown = [by_key[k] for k in items if k in by_key and by_key[k].status == "unknown"]
        if not failing and not unknown:
            continue
        needed = min(c.needed_from for c in failing + unknown)
        # failing evidence weighs more than missing evidence; items of this stage more than of the next
        weight = {True: 3.0, False: 1.0}
        score = (
            sum(weight[c.needed_from <= stage] * 2 for c in failing)
            + sum(weight[c.needed_from <= stage] * 0.5 for c in unknown)
            - order * 0.01
        )
        why = tuple(f"{c.title}: {c.status}: {c.evidence}" for c in failing + unknown)
        layer = Layer(key, title, action, why, round(score, 2), needed)
        # a later stage's layer is overbuilding now; an unmeasured layer of this stage means "measure it"
        (now if needed <= stage or (needed == stage + 1 and failing) else later).append(layer)
    coldstart = by_key.get("coldstart")
    if coldstart is not None and coldstart.status == "fail":
        # the article's order: know startup behaviour before scaling on it
        for layer in now:
            if layer.key == "coldstart":
                now.remove(layer)
                now.append(
                    Layer(
                        layer.key,
                        layer.title,
                        f"cold start varies ({coldstart.evidence}): {layer.action}",
                        layer.why,
                        layer.score + 2.0,
                        layer.needed_from,
                    )
                )
                break
    now.sort(key=lambda x: -x.score)
    later.sort(key=lambda x: x.needed_from)
    return now, later


def assess_stage(
    probes: Iterable[ProbeLike] = (),
    history: HistoryEvidence | None = None,
    answers: Mapping[str, str] | None = None,
) -> StageAssessment:
    """The stage, why, what to optimize for and not overdo, the checklist, and the next layers ranked."""
    history = history or HistoryEvidence()
    answers = answers or {}
    checklist = build_checklist(probes, history, answers)
    by_key = {c.key: c for c in checklist}
    stage, reasons = _place(history, answers, by_key)
    optimize, avoid = STAGE_GUIDE[stage]
    now, later = _layers(stage, checklist)
    return StageAssessment(stage, tuple(reasons), optimize, avoid, tuple(checklist), tuple(now), tuple(later))
