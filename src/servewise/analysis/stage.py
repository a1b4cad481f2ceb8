"""Stage assessment: where the team stands (prototype → mature production), which production layer comes next.

The framework is the article's (docs: prototype-to-production): a team enters production when users depend
on the system, the serving pattern repeats, its limits are measurable and infrastructure decisions must be
stable. Placement is driven by demand and commitments (who depends on it, is it growing, what is promised);
the checklist shows what the evidence says is in place; the next layers are the failing checklist items
that matter at this stage, ranked, while layers that belong to a later stage are named as "not yet" so the
team does not overbuild.

Pure: probe results, history evidence built from stored runs, and answers in; a plain assessment out.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, Literal, Protocol

import yaml

Answer = Literal["yes", "no", "unknown"]


class Stage(IntEnum):
    PROTOTYPE = 0
    EARLY_PRODUCT = 1
    GROWTH_PRODUCTION = 2
    MATURE_PRODUCTION = 3

    @property
    def label(self) -> str:
        return ("prototype", "early product", "growth production", "mature production")[self]


# The article's table: what to optimize for at each stage, and what not to overdo.
STAGE_GUIDE: Mapping[Stage, tuple[str, str]] = {
    Stage.PROTOTYPE: ("speed, learning, real workload discovery", "heavy platform architecture"),
    Stage.EARLY_PRODUCT: (
        "basic repeatability and deployment hygiene",
        "optimizing for scale you have not seen yet",
    ),
    Stage.GROWTH_PRODUCTION: (
        "measured scaling and bottleneck removal",
        "keeping the same lightweight path after it is clearly insufficient",
    ),
    Stage.MATURE_PRODUCTION: (
        "reliability, capacity planning, cost discipline",
        "pretending prototype-grade flexibility is still enough",
    ),
}

# What no probe can see. Keys of the answers file; values yes | no | unknown.
ANSWER_QUESTIONS: Mapping[str, str] = {
    "users_depend": "Do users or internal operations depend on the system?",
    "sla": "Is there an SLA or an internal latency/availability commitment?",
    "on_call": "Is someone on call for it?",
    "rollback_exercised": "Has a rollback to the previous deployment actually been done (or rehearsed)?",
    "deploy_routine": "Is deployment a repeatable routine (script, CI), not manual steps?",
    "workload_stable": "Has the workload (model, prompt and output lengths) stopped changing a lot?",
    "traffic_growing": "Is traffic growing, so that capacity is a recurring question?",
    "cost_tracked": "Is cost per serving outcome (e.g. $ per 1M tokens) tracked?",
}

# Bands, each a judgement the evidence line states, so a reader can disagree with a number, not a mood.
REPEAT_CV_OK = 0.10  # throughput of repeat runs of one spec within 10% of each other
COLDSTART_CV_OK = 0.25  # coldstart.verdicts calls more than this "not repeatable"
COLDSTART_RATIO_BAD = 2.0  # slowest start at least twice the fastest
TRAFFIC_CV_STEADY = 0.35  # daily volume varying less than this = the pattern repeats
TRAFFIC_GROWTH = 1.25  # last period at least 25% above the first = growing
SIZE_DRIFT_OK = 0.25  # mean request size moving less than 25% = stable workload
SLO_ATTAINMENT_OK = 0.90
HEADROOM_PRESSURE = 0.5  # peak traffic above half the measured capacity at SLO = capacity is live
MIN_REPEATS = 3
MIN_SLO_RUNS = 3


class AnswersError(ValueError):
    """The answers file is not a mapping of known questions to yes/no/unknown."""


def parse_answers(text: str) -> dict[str, Answer]:
    """YAML text → answers; a question missing from the file is 'unknown'. Typos are errors, not silence."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise AnswersError(f"answers file is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AnswersError("answers file must be a mapping, e.g. `users_depend: yes`")
    answers: dict[str, Answer] = dict.fromkeys(ANSWER_QUESTIONS, "unknown")
    for key, value in data.items():
        if key not in ANSWER_QUESTIONS:
            known = ", ".join(ANSWER_QUESTIONS)
            raise AnswersError(f"unknown question {key!r} in answers file (known: {known})")
        # YAML 1.1 reads yes/no as booleans and a bare `unknown` or empty value as a string / None.
        normal = (
            {True: "yes", False: "no", None: "unknown"}.get(value, value)
            if not isinstance(value, str)
            else value
        )
        normal = str(normal).strip().lower()
        if normal not in ("yes", "no", "unknown"):
            raise AnswersError(f"{key}: {value!r} is not yes, no or unknown")
        answers[key] = normal  # type: ignore[assignment]
    return answers


def answers_template() -> str:
    """An answers file to fill in, one commented question per line."""
    return "".join(f"# {question}\n{key}: unknown\n" for key, question in ANSWER_QUESTIONS.items())


# -- evidence from history ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepeatGroup:
    """Repeat runs of one spec (same target, workload and load): do they agree?"""

    spec_key: str
    label: str
    runs: int
    throughput_cv: float | None
    ttft_p95_cv: float | None


@dataclass(frozen=True, slots=True)
class ColdStartEvidence:
    runs: int
    min_s: float | None
    median_s: float | None
    max_s: float | None
    cv: float | None

    @property
    def ratio(self) -> float | None:
        return self.max_s / self.min_s if self.min_s and self.max_s else None


@dataclass(frozen=True, slots=True)
class TrafficPattern:
    """Production traffic read from Prometheus over ``periods`` buckets (days by default)."""

    periods: int
    period_s: float
    volume_cv: float | None  # CV of the per-period request volume
    growth: float | None  # last full period's volume / first's
    peak_rps: float | None
    size_drift: float | None  # relative change of the mean request size, last period vs first
    source: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEvidence:
    """What the store says about this service over time; built by ``history_from_runs``."""

    bench_runs: int = 0
    span_days: float = 0.0
    repeat_groups: tuple[RepeatGroup, ...] = ()
    slo_runs: int = 0
    slo_met: int = 0
    gate_runs: int = 0
    gate_failed: int = 0
    rollbacks: int = 0
    bottleneck: str | None = None
    bottleneck_confidence: str | None = None
    capacity_rps: float | None = None  # latest max_rate_meeting_slo
    coldstart: ColdStartEvidence | None = None
    traffic: TrafficPattern | None = None


class RunLike(Protocol):
    kind: str
    labels: dict[str, str]
    created_at: float
    status: str
    spec: dict[str, Any]
    summary: dict[str, Any] | None


def spec_key(spec: Mapping[str, Any]) -> str:
    """Two runs are repeats when they sent the same workload at the same load to the same target."""
    target = spec.get("target") or {}
    same = {
        "target": {k: target.get(k) for k in ("url", "api", "model")},
        "workload": spec.get("workload"),
        "load": spec.get("load"),
    }
    return hashlib.sha256(json.dumps(same, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _cv(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean > 0 else None


def startup_times(summary: Mapping[str, Any]) -> list[float]:
    """Seconds to first response of each successful start in a coldstart run's summary."""
    runs = summary.get("runs")
    if isinstance(runs, list):
        return [
            float(r["startup_s"])
            for r in runs
            if isinstance(r, Mapping)
            and r.get("status") == "ok"
            and isinstance(r.get("startup_s"), (int, float))
        ]
    found = summary.get("startup_s")
    return [float(v) for v in found if isinstance(v, (int, float))] if isinstance(found, list) else []


def _coldstart_evidence(summaries: Sequence[Mapping[str, Any]]) -> ColdStartEvidence | None:
    values = [v for summary in summaries for v in startup_times(summary)]
    if not values:
        return None
    return ColdStartEvidence(len(values), min(values), statistics.median(values), max(values), _cv(values))


def history_from_runs(runs: Iterable[RunLike], traffic: TrafficPattern | None = None) -> HistoryEvidence:
    """Fold stored top-level runs (any order) into the evidence the stage reads: bench, sweep, coldstart."""
    runs = sorted(runs, key=lambda r: r.created_at)
    bench = [r for r in runs if r.kind in ("bench", "sweep") and r.summary]
    # `servewise gate` writes its verdict into the candidate run's summary["gate"]
    gates = [r.summary["gate"] for r in runs if r.summary and isinstance(r.summary.get("gate"), Mapping)]
    coldstarts = [r.summary for r in runs if r.kind == "coldstart" and r.summary]

    groups: dict[str, list[RunLike]] = {}
    for run in bench:
        if run.summary.get("status") in ("ok", "slo_failed"):
            groups.setdefault(spec_key(run.spec), []).append(run)
    repeat_groups = tuple(
        RepeatGroup(
            spec_key=key,
            label=str(members[-1].summary.get("load") or key),
            runs=len(members),
            throughput_cv=_cv([m.summary.get("metrics", {}).get("output_tokens_per_s") for m in members]),
            ttft_p95_cv=_cv(
                [(m.summary.get("metrics", {}).get("ttft_ms") or {}).get("p95") for m in members]
            ),
        )
        for key, members in groups.items()
        if len(members) >= 2
    )

    slo_verdicts = [
        r.summary["slo"]["met"] for r in bench if (r.summary.get("slo") or {}).get("met") is not None
    ]
    latest_diagnosis = next(
        (r.summary["diagnosis"] for r in reversed(bench) if r.summary.get("diagnosis")), {}
    )
    capacity = next(
        (r.summary["max_rate_meeting_slo"] for r in reversed(bench) if r.summary.get("max_rate_meeting_slo")),
        None,
    )
    verdicts = [str(g.get("verdict", "")).lower() for g in gates]
    # a rollback is recorded by a run labelled rollback=true (the re-deployed baseline, measured again),
    # a run of kind "rollback", or a gate entry marked rolled_back
    rollbacks = sum(1 for g in gates if g.get("rolled_back") is True) + sum(
        1 for r in runs if r.kind == "rollback" or (r.labels or {}).get("rollback") == "true"
    )
    span = (bench[-1].created_at - bench[0].created_at) / 86400 if len(bench) > 1 else 0.0
    return HistoryEvidence(
        bench_runs=len(bench),
        span_days=span,
        repeat_groups=repeat_groups,
        slo_runs=len(slo_verdicts),
        slo_met=sum(1 for met in slo_verdicts if met),
        gate_runs=len(gates),
        gate_failed=sum(1 for v in verdicts if v == "fail"),
        rollbacks=rollbacks,
        bottleneck=latest_diagnosis.get("primary"),
        bottleneck_confidence=latest_diagnosis.get("confidence"),
        capacity_rps=capacity,
        coldstart=_coldstart_evidence(coldstarts),
        traffic=traffic,
    )


def traffic_pattern_from_series(
    volume: Sequence[tuple[float, float]],
    size: Sequence[tuple[float, float]] = (),
    *,
    period_s: float = 86400.0,
    source: str = "",
) -> TrafficPattern | None:
    """Per-period volume from a request-rate series (req/s at regular steps) and mean size per period."""
    if len(volume) < 2:
        return None
    start = volume[0][0]

    def per_period(points: Sequence[tuple[float, float]]) -> dict[int, list[float]]:
        buckets: dict[int, list[float]] = {}
        for t, value in points:
            if math.isfinite(value):
                buckets.setdefault(int((t - start) // period_s), []).append(value)
        return buckets

    volume_buckets = per_period(volume)
    if len(volume_buckets) > 2:  # the last period is usually partial: judge full ones only
        volume_buckets.pop(max(volume_buckets))
    totals = [statistics.fmean(v) for _, v in sorted(volume_buckets.items())]
    size_means = [statistics.fmean(v) for _, v in sorted(per_period(size).items())] if size else []
    return TrafficPattern(
        periods=len(totals),
        period_s=period_s,
        volume_cv=_cv(totals),
        growth=totals[-1] / totals[0] if len(totals) >= 2 and totals[0] > 0 else None,
        peak_rps=max(v for _, v in volume if math.isfinite(v)),
        size_drift=(size_means[-1] - size_means[0]) / size_means[0]
        if len(size_means) >= 2 and size_means[0]
        else None,
        source=source,
    )


# -- the assessment -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    key: str
    title: str
    area: str
    status: str  # pass | fail | unknown
    evidence: str
    needed_from: Stage  # the first stage at which this item matters


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


def _probe_map(probes: Iterable[Any]) -> dict[str, tuple[str, str]]:
    """name → (status, evidence) from ProbeResult objects or their dicts."""
    found = {}
    for probe in probes:
        get = probe.get if isinstance(probe, Mapping) else lambda key, p=probe: getattr(p, key)
        found[str(get("name"))] = (str(get("status")), str(get("evidence")))
    return found


def _answer(answers: Mapping[str, str], key: str) -> str:
    return answers.get(key, "unknown")


_PROBE_ITEMS: tuple[tuple[str, str, str, Stage], ...] = (
    # probe name, checklist title, area, needed from
    ("health", "Health endpoint answers", "observability", Stage.EARLY_PRODUCT),
    ("readiness", "Loading is told apart from ready", "deployment", Stage.EARLY_PRODUCT),
    ("metrics", "/metrics exposes engine signals", "observability", Stage.EARLY_PRODUCT),
    ("version", "Version info exposed", "deployment", Stage.EARLY_PRODUCT),
    ("streaming", "Streaming works", "serving", Stage.EARLY_PRODUCT),
    ("usage", "Token usage reported", "observability", Stage.EARLY_PRODUCT),
    ("bad_json", "Malformed JSON gets a 4xx", "failure behaviour", Stage.EARLY_PRODUCT),
    ("unknown_model", "Unknown model gets a 4xx", "failure behaviour", Stage.EARLY_PRODUCT),
    ("oversized_prompt", "Oversized prompt rejected cleanly", "failure behaviour", Stage.EARLY_PRODUCT),
    ("auth", "Auth required", "failure behaviour", Stage.EARLY_PRODUCT),
    ("overload", "Overload shed fast (429/503), not timeouts", "failure behaviour", Stage.GROWTH_PRODUCTION),
)


def _answer_item(
    answers: Mapping[str, str], key: str, title: str, area: str, needed: Stage, item_key: str | None = None
) -> ChecklistItem:
    value = _answer(answers, key)
    status = {"yes": "pass", "no": "fail"}.get(value, "unknown")
    return ChecklistItem(item_key or key, title, area, status, f"answers file: {key}: {value}", needed)


def _checklist(
    probes: Mapping[str, tuple[str, str]], history: HistoryEvidence, answers: Mapping[str, str]
) -> list[ChecklistItem]:
    items: list[ChecklistItem] = []
    for name, title, area, needed in _PROBE_ITEMS:
        status, evidence = probes.get(name, ("unknown", "not probed (give a target URL)"))
        items.append(ChecklistItem(name, title, area, status, evidence, needed))

    # repeatability
    groups = [g for g in history.repeat_groups if g.throughput_cv is not None]
    if groups:
        worst = max(groups, key=lambda g: g.throughput_cv or 0.0)
        enough = worst.runs >= MIN_REPEATS
        status = "fail" if worst.throughput_cv > REPEAT_CV_OK else "pass" if enough else "unknown"
        evidence = f"{worst.runs} runs of '{worst.label}': throughput CV {worst.throughput_cv:.1%}"
        evidence += "" if enough or status == "fail" else f" (needs {MIN_REPEATS} runs to judge)"
    else:
        status, evidence = "unknown", "no spec was run twice (servewise runs repeat)"
    items.append(
        ChecklistItem(
            "repeat_runs",
            "Repeat runs agree",
            "repeatability",
            status,
            evidence,
            Stage.EARLY_PRODUCT,
        )
    )
    items.append(
        _answer_item(answers, "deploy_routine", "Deployment is a routine", "deployment", Stage.EARLY_PRODUCT)
    )
    rolled = history.rollbacks > 0 or _answer(answers, "rollback_exercised") == "yes"
    rb_status = "pass" if rolled else {"no": "fail"}.get(_answer(answers, "rollback_exercised"), "unknown")
    rb_evidence = (
        f"{history.rollbacks} rollback(s) recorded"
        if history.rollbacks
        else f"answers file: rollback_exercised: {_answer(answers, 'rollback_exercised')}"
    )
    items.append(
        ChecklistItem(
            "rollback",
            "Rollback exercised",
            "deployment",
            rb_status,
            rb_evidence,
            Stage.EARLY_PRODUCT,
        )
    )

    cold = history.coldstart
    if cold is None or cold.runs < 2:
        cs = ("unknown", "no cold-start runs stored (servewise coldstart --runs 5)")
    else:
        ratio = cold.ratio or 1.0
        bad = (cold.cv or 0.0) > COLDSTART_CV_OK or ratio >= COLDSTART_RATIO_BAD
        cs = (
            "fail" if bad else "pass" if cold.runs >= MIN_REPEATS else "unknown",
            f"{cold.runs} starts: {cold.min_s:.1f}–{cold.max_s:.1f} s ({ratio:.1f}x), "
            f"CV {(cold.cv or 0):.0%}",
        )
    items.append(
        ChecklistItem(
            "coldstart",
            "Cold start is predictable",
            "repeatability",
            *cs,
            Stage.GROWTH_PRODUCTION,
        )
    )

    # capacity logic
    named = history.bottleneck and history.bottleneck_confidence not in (None, "low")
    items.append(
        ChecklistItem(
            "bottleneck",
            "Bottleneck named with evidence",
            "capacity",
            "pass" if named else "unknown" if not history.bench_runs else "fail",
            f"latest diagnosis: {history.bottleneck} ({history.bottleneck_confidence} confidence)"
            if history.bottleneck
            else f"{history.bench_runs} bench runs, none diagnosed",
            Stage.GROWTH_PRODUCTION,
        )
    )
    items.append(
        ChecklistItem(
            "capacity",
            "Capacity at the SLO measured",
            "capacity",
            "pass" if history.capacity_rps else "fail",
            f"max rate meeting the SLO: {history.capacity_rps:g} req/s"
            if history.capacity_rps
            else "no sweep to the SLO knee stored (servewise bench --load sweep --slo ...)",
            Stage.GROWTH_PRODUCTION,
        )
    )
    if history.slo_runs >= MIN_SLO_RUNS:
        share = history.slo_met / history.slo_runs
        slo = (
            "pass" if share >= SLO_ATTAINMENT_OK else "fail",
            f"SLO met in {history.slo_met} of {history.slo_runs} runs over {history.span_days:.0f} days",
        )
    else:
        slo = ("unknown", f"{history.slo_runs} runs with an SLO verdict (needs {MIN_SLO_RUNS})")
    items.append(
        ChecklistItem(
            "slo_history",
            "SLO attainment tracked over time",
            "capacity",
            *slo,
            Stage.GROWTH_PRODUCTION,
        )
    )
    items.append(
        ChecklistItem(
            "gate",
            "Deployments gated against a baseline",
            "deployment",
            "pass" if history.gate_runs else "fail",
            f"{history.gate_runs} gate runs, {history.gate_failed} caught a regression"
            if history.gate_runs
            else "no gate runs stored (servewise gate)",
            Stage.GROWTH_PRODUCTION,
        )
    )

    traffic = history.traffic
    if traffic and traffic.peak_rps is not None and history.capacity_rps:
        use = traffic.peak_rps / history.capacity_rps
        items.append(
            ChecklistItem(
                "headroom",
                "Headroom above peak traffic",
                "capacity",
                "pass" if use < 0.7 else "fail",
                f"peak {traffic.peak_rps:.2f} req/s is {use:.0%} of the "
                f"{history.capacity_rps:g} req/s capacity at SLO",
                Stage.GROWTH_PRODUCTION,
            )
        )
    if traffic and traffic.volume_cv is not None:
        steady = traffic.volume_cv <= TRAFFIC_CV_STEADY and abs(traffic.size_drift or 0.0) <= SIZE_DRIFT_OK
        drift = f", request size drift {traffic.size_drift:+.0%}" if traffic.size_drift is not None else ""
        items.append(
            ChecklistItem(
                "traffic_pattern",
                "Serving pattern repeats",
                "capacity",
                "pass" if steady else "fail",
                f"volume CV {traffic.volume_cv:.0%} over {traffic.periods} periods{drift} ({traffic.source})",
                Stage.GROWTH_PRODUCTION,
            )
        )
    else:
        items.append(
            _answer_item(
                answers,
                "workload_stable",
                "Serving pattern repeats",
                "capacity",
                Stage.GROWTH_PRODUCTION,
                "traffic_pattern",
            )
        )

    # operations
    items.append(
        _answer_item(
            answers, "sla", "SLA or latency commitment defined", "operations", Stage.MATURE_PRODUCTION
        )
    )
    items.append(
        _answer_item(answers, "on_call", "Someone is on call", "operations", Stage.MATURE_PRODUCTION)
    )
    items.append(
        _answer_item(answers, "cost_tracked", "Cost per outcome tracked", "cost", Stage.MATURE_PRODUCTION)
    )
    return items


def _place(
    history: HistoryEvidence, answers: Mapping[str, str], checklist: Mapping[str, ChecklistItem]
) -> tuple[Stage, list[str]]:
    reasons: list[str] = []
    traffic = history.traffic
    depend_answer = _answer(answers, "users_depend")
    live_traffic = traffic is not None and traffic.periods >= 3 and (traffic.peak_rps or 0) > 0
    depend = (
        depend_answer == "yes" or _answer(answers, "sla") == "yes" or (live_traffic and depend_answer != "no")
    )
    if not depend:
        reasons.append(
            f"nobody is recorded as depending on it (users_depend: {depend_answer}, sla: "
            f"{_answer(answers, 'sla')}, no production traffic read)"
        )
        if _answer(answers, "workload_stable") == "no":
            reasons.append("the workload is still changing a lot (workload_stable: no)")
        if not (history.bottleneck and history.bottleneck_confidence not in (None, "low")):
            reasons.append("nobody can name the true bottleneck yet (no confident diagnosis stored)")
        return Stage.PROTOTYPE, reasons

    if depend_answer == "yes":
        reasons.append("users depend on it (users_depend: yes)")
    elif _answer(answers, "sla") == "yes":
        reasons.append("an SLA is in place (sla: yes), so someone depends on it")
    else:
        reasons.append(f"production traffic every period for {traffic.periods} periods ({traffic.source})")

    repeat_item = checklist["traffic_pattern"]
    pressure: list[str] = []
    if _answer(answers, "traffic_growing") == "yes":
        pressure.append("traffic is growing (traffic_growing: yes)")
    if traffic and traffic.growth is not None and traffic.growth >= TRAFFIC_GROWTH:
        pressure.append(f"volume grew {traffic.growth:.1f}x from the first period to the last")
    if "headroom" in checklist and checklist["headroom"].status == "fail":
        pressure.append(checklist["headroom"].evidence)

    commitments = _answer(answers, "sla") == "yes" and _answer(answers, "on_call") == "yes"
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
    now, later = [], []
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
    probes: Iterable[Any] = (),
    history: HistoryEvidence | None = None,
    answers: Mapping[str, str] | None = None,
) -> StageAssessment:
    """The stage, why, what to optimize for and not overdo, the checklist, and the next layers ranked."""
    history = history or HistoryEvidence()
    answers = answers or {}
    checklist = _checklist(_probe_map(probes), history, answers)
    by_key = {c.key: c for c in checklist}
    stage, reasons = _place(history, answers, by_key)
    optimize, avoid = STAGE_GUIDE[stage]
    now, later = _layers(stage, checklist)
    return StageAssessment(stage, tuple(reasons), optimize, avoid, tuple(checklist), tuple(now), tuple(later))
