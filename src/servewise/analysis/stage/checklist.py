"""The production checklist: each item pass, fail or unknown, with the evidence line that decided it.

Its own module because it is where probes, stored history and the answers file meet: every judgement
band is named here, so a reader can disagree with a number, not a mood. Placement and the next layers
read only these items, never the raw evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from servewise.analysis.stage.answers import answered
from servewise.analysis.stage.evidence import HistoryEvidence
from servewise.analysis.stage.ladder import Stage

# Bands, each a judgement the evidence line states.
REPEAT_CV_OK = 0.10  # throughput of repeat runs of one spec within 10% of each other
COLDSTART_CV_OK = 0.25  # coldstart.verdicts calls more than this "not repeatable"
COLDSTART_RATIO_BAD = 2.0  # slowest start at least twice the fastest
TRAFFIC_CV_STEADY = 0.35  # daily volume varying less than this = the pattern repeats
SIZE_DRIFT_OK = 0.25  # mean request size moving less than 25% = stable workload
SLO_ATTAINMENT_OK = 0.90
HEADROOM_PRESSURE = 0.5  # peak traffic above half the measured capacity at SLO = capacity is live
MIN_REPEATS = 3
MIN_SLO_RUNS = 3


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    key: str
    title: str
    area: str
    status: str  # pass | fail | unknown
    evidence: str
    needed_from: Stage  # the first stage at which this item matters


class ProbeLike(Protocol):
    """A readiness probe's answer: a ``ProbeResult`` just run, or a stored ``ProbeRecord``."""

    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def evidence(self) -> str: ...


def _probe_map(probes: Iterable[ProbeLike]) -> dict[str, tuple[str, str]]:
    """name → (status, evidence) from ProbeResult objects or ProbeRecords."""
    return {str(probe.name): (str(probe.status), str(probe.evidence)) for probe in probes}


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
    value = answered(answers, key)
    status = {"yes": "pass", "no": "fail"}.get(value, "unknown")
    return ChecklistItem(item_key or key, title, area, status, f"answers file: {key}: {value}", needed)


def build_checklist(
    probes: Iterable[ProbeLike], history: HistoryEvidence, answers: Mapping[str, str]
) -> list[ChecklistItem]:
    """Every item, in reading order: probes first, then repeatability, deployment, capacity, operations."""
    probed = _probe_map(probes)
    items: list[ChecklistItem] = []
    for name, title, area, needed in _PROBE_ITEMS:
        status, evidence = probed.get(name, ("unknown", "not probed (give a target URL)"))
        items.append(ChecklistItem(name, title, area, status, evidence, needed))

    # repeatability
    groups = [g for g in history.repeat_groups if g.throughput_cv is not None]
    if groups:
        worst = max(groups, key=lambda g: g.throughput_cv or 0.0)
        worst_cv = worst.throughput_cv or 0.0
        enough = worst.runs >= MIN_REPEATS
        status = "fail" if worst_cv > REPEAT_CV_OK else "pass" if enough else "unknown"
        evidence = f"{worst.runs} runs of '{worst.label}': throughput CV {worst_cv:.1%}"
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
    rolled = history.rollbacks > 0 or answered(answers, "rollback_exercised") == "yes"
    rb_status = "pass" if rolled else {"no": "fail"}.get(answered(answers, "rollback_exercised"), "unknown")
    rb_evidence = (
        f"{history.rollbacks} rollback(s) recorded"
        if history.rollbacks
        else f"answers file: rollback_exercised: {answered(answers, 'rollback_exercised')}"
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
