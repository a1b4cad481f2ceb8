"""Placement: which stage the evidence puts a team at, why, and which production layers come next.

Its own module because it is the judgement itself: placement is driven by the article's signs (who
depends on it, does the pattern repeat, are limits measurable, must decisions be stable) and by growth
pressure, not by how many checklist items pass; the next layers are the failing items that matter at
this stage, ranked, each with an action computed from its evidence, and a later stage's layers are named
"not yet" with the reason building them now would be overbuilding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from servewise.analysis.stage.answers import answered
from servewise.analysis.stage.checklist import MIN_SLO_RUNS, ChecklistItem, ProbeLike, build_checklist
from servewise.analysis.stage.evidence import HistoryEvidence
from servewise.analysis.stage.forecast import Capacity, Forecast, forecast
from servewise.analysis.stage.ladder import STAGE_GUIDE, Stage
from servewise.analysis.stage.signals import Sign, Signs, read_signs
from servewise.analysis.stage.traffic import TrafficEvidence
from servewise.results.stage import StageRecord

GROWTH_PRESSURE = 0.05  # the daily peak growing 5% a week or more, with its interval above zero
PRESSURE_DAYS = 182.0  # the peak reaching capacity within half a year


@dataclass(frozen=True, slots=True)
class Layer:
    """A production layer to add: why (the failing evidence), what to do, how strongly the evidence asks."""

    key: str
    title: str
    action: str
    why: tuple[str, ...]
    score: float
    needed_from: Stage
    not_yet: str = ""  # for a later stage's layer: why building it now would be overbuilding


@dataclass(frozen=True, slots=True)
class StageAssessment:
    stage: Stage
    reasons: tuple[str, ...]
    optimize_for: str
    do_not_overdo: str
    checklist: tuple[ChecklistItem, ...]
    next_layers: tuple[Layer, ...]
    not_yet: tuple[Layer, ...] = field(default=())
    signs: Signs = field(default_factory=lambda: Signs((), ()))
    forecast: Forecast | None = None
    traffic: TrafficEvidence | None = None
    traffic_note: str | None = None  # what Prometheus said when it gave no traffic

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
            "moving_to_production_if": [asdict(s) for s in self.signs.production],
            "closer_to_prototype_if": [asdict(s) for s in self.signs.prototype],
            "checklist": [{**asdict(c), "needed_from": c.needed_from.label} for c in self.checklist],
            "next_layers": [layer(x) for x in self.next_layers],
            "not_yet": [layer(x) for x in self.not_yet],
            "next_step": self.next_step,
            "forecast": self.forecast.to_dict() if self.forecast else None,
            "traffic": self.traffic.to_dict() if self.traffic else None,
            "traffic_note": self.traffic_note,
        }

    def record(self) -> StageRecord:
        """The typed record the store keeps (a ``StageNote``) and the report reads."""
        return StageRecord.model_validate(self.to_dict())


def _said(sign: Sign) -> str:
    return f"{sign.text}: {sign.status} ({sign.evidence})"


def _pressure(history: HistoryEvidence, forecast: Forecast | None, answers: Mapping[str, str]) -> list[str]:
    """Growth that makes capacity a recurring question, from the trend and the measured capacity (the
    answers file only where no trend was read)."""
    found = []
    trend = history.traffic.trend if history.traffic else None
    if trend is None and answered(answers, "traffic_growing") == "yes":
        found.append("traffic is growing (answers file: traffic_growing: yes; no traffic trend read)")
    if trend is not None:
        low, _ = trend.interval()
        if trend.growth_per_week >= GROWTH_PRESSURE and low > 0:
            found.append(
                f"the daily peak grows {trend.growth_per_week:+.1%} a week (95% interval from {low:+.1%})"
            )
    if forecast is not None:
        if forecast.crossing_days is not None and forecast.crossing_days <= PRESSURE_DAYS:
            found.append(f"{forecast.note} (by {forecast.crossing_date})")
        elif forecast.degrade_rps is not None and forecast.peak_rps >= forecast.degrade_rps:
            found.append(f"today's peak {forecast.peak_rps:.3g} req/s is past where p95 TTFT doubles")
    return found


def _place(
    signs: Signs,
    history: HistoryEvidence,
    answers: Mapping[str, str],
    checklist: Mapping[str, ChecklistItem],
    forecast: Forecast | None,
) -> tuple[Stage, list[str]]:
    depend = signs["users_depend"]
    if depend.status != "yes":
        reasons = [f"not seen in production: {_said(depend)}"]
        reasons += [_said(s) for s in signs.prototype if s.status == "yes" and s.key != "learning"]
        return Stage.PROTOTYPE, reasons

    reasons = [_said(depend)]
    tracked_production = checklist.get("production_slo")
    tracked = (tracked_production is not None and tracked_production.status != "unknown") or (
        history.slo_runs >= MIN_SLO_RUNS and history.span_days >= 7
    )
    commitments = answered(answers, "sla") == "yes" and answered(answers, "on_call") == "yes"
    production = [s for s in signs.production if s.key != "users_depend"]
    if commitments and tracked and all(s.status == "yes" for s in production):
        reasons += [_said(s) for s in production]
        reasons.append("an SLA and on-call are in place (answers file: sla: yes, on_call: yes)")
        reasons.append("SLO attainment is tracked over time")
        return Stage.MATURE_PRODUCTION, reasons

    missing = [s.text for s in production if s.status != "yes"]
    if not commitments:
        missing.append(
            f"an SLA and on-call (sla: {answered(answers, 'sla')}, on_call: {answered(answers, 'on_call')})"
        )
    if not tracked:
        missing.append("SLO attainment tracked over time")
    pressure = _pressure(history, forecast, answers)
    if pressure:
        reasons += pressure
        reasons.append(f"not mature yet: missing {'; '.join(missing)}")
        return Stage.GROWTH_PRODUCTION, reasons
    reasons.append("no growth pressure read (no significant growth of the daily peak, capacity not in sight)")
    reasons.append(f"not mature yet: missing {'; '.join(missing)}")
    return Stage.EARLY_PRODUCT, reasons


def _guide(stage: Stage, history: HistoryEvidence, forecast: Forecast | None) -> tuple[str, str]:
    """The article's line for the stage, with what this team's evidence says about it."""
    optimize, avoid = STAGE_GUIDE[stage]
    if stage is Stage.PROTOTYPE and history.traffic is None:
        optimize += ": run the real workload (servewise bench with a dataset) and note what changes"
    if stage is Stage.EARLY_PRODUCT and forecast is not None and forecast.crossing_date is None:
        avoid += f": peak {forecast.peak_rps:.3g} req/s is {1 - forecast.headroom:.0%} of the knee, not outgrown within a year"
    if stage is Stage.GROWTH_PRODUCTION and history.bottleneck:
        optimize += f": the measured bottleneck is {history.bottleneck}"
    if stage is Stage.GROWTH_PRODUCTION and forecast is not None and forecast.crossing_date:
        avoid += f": the {forecast.capacity_rps:.3g} req/s knee is reached by {forecast.crossing_date}"
    return optimize, avoid


def _coldstart_action(history: HistoryEvidence, default: str) -> str:
    cold = history.coldstart
    if cold is None or cold.median_s is None:
        return default
    if cold.load_share is not None and cold.load_share >= 0.5 and cold.load_rate:
        return (
            f"cold start {cold.median_s:.0f} s median, {cold.load_share:.0%} of it loading weights at "
            f"{cold.load_rate / 1e6:.0f} MB/s: put the weights on local NVMe or bake them into the image, "
            "then re-measure (servewise coldstart --runs 5)"
        )
    return f"cold start {cold.min_s:.0f}-{cold.max_s:.0f} s: {default}"


def _capacity_action(history: HistoryEvidence, forecast: Forecast | None, default: str) -> str:
    if forecast is None:
        return default
    if forecast.degrade_rps is not None and forecast.capacity_rps:
        share = forecast.degrade_rps / forecast.capacity_rps
        when = f"before {forecast.degrade_date}" if forecast.degrade_date else "now"
        head = f"p95 TTFT doubles from {share:.0%} of the knee: add a replica {when}"
    elif forecast.crossing_date:
        head = f"the projected peak reaches the {forecast.capacity_rps:.3g} req/s knee by {forecast.crossing_date}"
        head += f": add a replica before then (interval {forecast.crossing_earliest} to {forecast.crossing_latest or 'beyond a year'})"
    else:
        return f"{forecast.note}: re-sweep after each release and keep the knee current"
    if forecast.replicas_needed:
        head += f"; the peak projected for {forecast.plan_date} needs {forecast.replicas_needed} replicas"
    return head + " (servewise plan --rate to price a bigger tier instead)"


def _failure_action(default: str, failing: Sequence[ChecklistItem]) -> str:
    named = [c.title.lower() for c in failing if not c.local_only]
    return f"fix: {'; '.join(named)}" if named else default


# Production layers from the article, each fixing some checklist items. Order here breaks score ties.
_LAYERS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    (
        "deploy",
        "Clearer deployment routine and rollback",
        ("deploy_routine", "rollback", "version", "readiness", "repeat_runs"),
        "script the deployment and its rollback in a release file and run it (servewise release run); "
        "rehearse one rollback to the previous build",
    ),
    (
        "observability",
        "Basic observability and metrics",
        ("metrics", "health", "usage", "slo_history", "production_slo"),
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
        "gate each candidate build against the last good run (servewise gate --repeats 3) before it takes traffic",
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


def _not_yet_reason(
    needed: Stage, signs: Signs, answers: Mapping[str, str], forecast: Forecast | None
) -> str:
    """Why building a later stage's layer now would be overbuilding, in this team's evidence."""
    if needed is Stage.EARLY_PRODUCT:
        why = f"nobody is seen depending on it yet ({signs['users_depend'].evidence})"
    elif needed is Stage.GROWTH_PRODUCTION:
        if forecast is not None:
            when = (
                f"reached by {forecast.crossing_date}"
                if forecast.crossing_date
                else "not outgrown within a year"
            )
            why = f"today's peak is {1 - forecast.headroom:.0%} of the measured knee, {when}"
        else:
            why = "no growth pressure read (no traffic trend, no capacity squeeze)"
    else:
        why = f"nothing is promised yet (sla: {answered(answers, 'sla')}, on_call: {answered(answers, 'on_call')})"
    return f"matters from {needed.label}: {why}"


def _layers(
    stage: Stage, checklist: Sequence[ChecklistItem], history: HistoryEvidence, signs: Signs,
    answers: Mapping[str, str], forecast: Forecast | None,
) -> tuple[list[Layer], list[Layer]]:  # fmt: skip
    by_key = {c.key: c for c in checklist}
    actions: dict[str, Callable[[str, list[ChecklistItem]], str]] = {
        "coldstart": lambda default, _: _coldstart_action(history, default),
        "capacity": lambda default, _: _capacity_action(history, forecast, default),
        "failure": _failure_action,
    }
    now: list[Layer] = []
    later: list[Layer] = []
    for order, (key, title, items, action) in enumerate(_LAYERS):
        failing = [by_key[k] for k in items if k in by_key and by_key[k].status == "fail"]
        unknown = [by_key[k] for k in items if k in by_key and by_key[k].status == "unknown"]
        if not failing and not unknown:
            continue
        needed = min(c.needed_from for c in failing + unknown)
        # failing evidence weighs more than missing evidence; items of this stage more than of the next;
        # a fact that only matters off this host (no key on loopback) weighs nothing yet
        weight = {True: 3.0, False: 0.5}
        score = (
            sum(weight[c.needed_from <= stage] * 2 for c in failing if not c.local_only)
            + sum(weight[c.needed_from <= stage] * 0.5 for c in unknown)
            - order * 0.01
        )
        if key == "coldstart" and failing:
            score += 2.0  # the article's order: know startup behaviour before scaling on it
        why = tuple(f"{c.title}: {c.status}: {c.evidence}" for c in failing + unknown)
        act = actions[key](action, failing) if key in actions else action
        if needed <= stage or (needed == stage + 1 and any(not c.local_only for c in failing)):
            now.append(Layer(key, title, act, why, round(score, 2), needed))
        else:
            later.append(
                Layer(
                    key,
                    title,
                    act,
                    why,
                    round(score, 2),
                    needed,
                    _not_yet_reason(needed, signs, answers, forecast),
                )
            )
    now.sort(key=lambda x: -x.score)
    later.sort(key=lambda x: x.needed_from)
    return now, later


def assess_stage(
    probes: Iterable[ProbeLike] = (),
    history: HistoryEvidence | None = None,
    answers: Mapping[str, str] | None = None,
    *,
    capacity: Capacity | None = None,
    replicas: int = 1,
    now: float | None = None,
    traffic_note: str | None = None,
) -> StageAssessment:
    """The stage, why, the article's signs ticked, the checklist, the forecast and the next layers ranked.

    ``capacity`` overrides the stored sweep's knee (``--capacity``); ``replicas`` serve the traffic read.
    ``now`` dates the forecast (default: the end of the traffic read).
    """
    history = history or HistoryEvidence()
    answers = answers or {}
    traffic = history.traffic
    if capacity is None and history.capacity is not None:
        capacity = Capacity(history.capacity.rps, replicas, f"sweep {history.capacity.run_id} knee, {history.capacity.slo}",
                            history.capacity.degrade_share)  # fmt: skip
    when = now if now is not None else (traffic.end if traffic else 0.0)
    outlook = forecast(traffic, capacity, when) if traffic is not None and capacity is not None else None
    probes = list(probes)
    signs = read_signs(history, answers, {str(p.name): (str(p.status), str(p.evidence)) for p in probes})
    checklist = build_checklist(probes, history, answers, signs, outlook)
    by_key = {c.key: c for c in checklist}
    stage, reasons = _place(signs, history, answers, by_key, outlook)
    optimize, avoid = _guide(stage, history, outlook)
    current, later = _layers(stage, checklist, history, signs, answers, outlook)
    return StageAssessment(
        stage, tuple(reasons), optimize, avoid, tuple(checklist), tuple(current), tuple(later), signs, outlook,
        traffic, traffic_note,
    )  # fmt: skip
