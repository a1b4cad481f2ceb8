"""The production checklist: each item pass, fail or unknown, with the evidence line that decided it.

Its own module because it is where probes, stored history and the answers file meet: every judgement
band is named here, so a reader can disagree with a number, not a mood. Placement and the next layers
read only these items, never the raw evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from servewise.analysis.stage.answers import answered
from servewise.analysis.stage.evidence import HistoryEvidence
from servewise.analysis.stage.forecast import PLAN_AHEAD_DAYS, Forecast
from servewise.analysis.stage.ladder import Stage
from servewise.analysis.stage.signals import Signs
from servewise.format import count

# Bands, each a judgement the evidence line states.
REPEAT_CV_OK = 0.10  # throughput of repeat runs of one spec within 10% of each other
COLDSTART_CV_OK = 0.25  # coldstart.verdicts calls more than this "not repeatable"
COLDSTART_RATIO_BAD = 2.0  # slowest start at least twice the fastest
SLO_ATTAINMENT_OK = 0.90
MIN_REPEATS = 3
MIN_SLO_RUNS = 3
STAT_SHARE = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}  # a pXX target met = XX% within the limit


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    key: str
    title: str
    area: str
    status: str  # pass | fail | unknown
    evidence: str
    needed_from: Stage  # the first stage at which this item matters
    local_only: bool = False  # a fact that only matters once the server is reachable beyond this host


class ProbeLike(Protocol):
    """A readiness probe's answer: a ``ProbeResult`` just run, or a stored ``ProbeRecord``."""

    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def evidence(self) -> str: ...
    @property
    def facts(self) -> dict[str, Any]: ...


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


def _production_slo(history: HistoryEvidence) -> ChecklistItem | None:
    """The SLO the capacity was measured at, checked on production's own latency histograms."""
    traffic, capacity = history.traffic, history.capacity
    if traffic is None or not traffic.latency:
        return None
    checks: list[tuple[bool, str]] = []
    for metric, stat, limit_ms in capacity.targets if capacity else ():
        histogram = traffic.histogram(metric)
        share = histogram.share_within(limit_ms / 1000) if histogram else None
        if share is None or stat not in STAT_SHARE:
            continue
        wanted = STAT_SHARE[stat]
        checks.append(
            (share >= wanted, f"{share:.1%} of requests within {metric} {limit_ms:g} ms (needs {wanted:.0%})")
        )
    if not checks:
        quantiles = [
            f"{h.metric} p95 {q * 1000:.0f} ms"
            for h in traffic.latency
            if (q := h.quantile(0.95)) is not None
        ]
        evidence = "no SLO stored with a sweep to check production against"
        evidence += f" (production: {', '.join(quantiles)})" if quantiles else ""
        return ChecklistItem("production_slo", "SLO met in production", "capacity", "unknown", evidence,
                             Stage.GROWTH_PRODUCTION)  # fmt: skip
    status = "pass" if all(ok for ok, _ in checks) else "fail"
    evidence = (
        "; ".join(text for _, text in checks) + f" over {traffic.observed_days} days ({traffic.source})"
    )
    return ChecklistItem("production_slo", "SLO met in production", "capacity", status, evidence,
                         Stage.GROWTH_PRODUCTION)  # fmt: skip


def _headroom(forecast: Forecast) -> ChecklistItem:
    """Fails when latency already climbs at today's peak, or the peak reaches capacity within a quarter."""
    climbing = forecast.degrade_rps is not None and forecast.peak_rps >= forecast.degrade_rps
    soon = forecast.crossing_days is not None and forecast.crossing_days <= PLAN_AHEAD_DAYS
    evidence = (
        f"peak {forecast.peak_rps:.3g} req/s is {forecast.peak_rps / forecast.capacity_rps:.0%} of the "
        f"{forecast.capacity_rps:.3g} req/s capacity ({forecast.capacity_source}); {forecast.note}"
    )
    if forecast.degrade_rps is not None:
        evidence += f"; p95 TTFT doubles from {forecast.degrade_rps:.3g} req/s"
    return ChecklistItem("headroom", "Headroom above peak traffic", "capacity",
                         "fail" if climbing or soon else "pass", evidence, Stage.GROWTH_PRODUCTION)  # fmt: skip


def _probe_items(probes: Iterable[ProbeLike]) -> list[ChecklistItem]:
    probed = {str(p.name): p for p in probes}
    items = []
    for name, title, area, needed in _PROBE_ITEMS:
        found = probed.get(name)
        if found is None:
            items.append(
                ChecklistItem(name, title, area, "unknown", "not probed (give a target URL)", needed)
            )
            continue
        local = bool(found.facts.get("loopback")) and str(found.status) == "fail"
        items.append(ChecklistItem(name, title, area, str(found.status), str(found.evidence), needed, local))
    return items


def build_checklist(
    probes: Iterable[ProbeLike],
    history: HistoryEvidence,
    answers: Mapping[str, str],
    signs: Signs,
    forecast: Forecast | None = None,
) -> list[ChecklistItem]:
    """Every item, in reading order: probes first, then repeatability, deployment, capacity, operations."""
    items = _probe_items(probes)

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
    if history.releases:
        items.append(ChecklistItem("deploy_routine", "Deployment is a routine", "deployment", "pass",
                                   f"{history.releases} releases run by servewise release", Stage.EARLY_PRODUCT))  # fmt: skip
    else:
        items.append(
            _answer_item(
                answers, "deploy_routine", "Deployment is a routine", "deployment", Stage.EARLY_PRODUCT
            )
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
        loading = f", {cold.load_share:.0%} of it loading weights" if cold.load_share is not None else ""
        cs = (
            "fail" if bad else "pass" if cold.runs >= MIN_REPEATS else "unknown",
            f"{cold.runs} starts: {cold.min_s:.1f}–{cold.max_s:.1f} s ({ratio:.1f}x), "
            f"CV {(cold.cv or 0):.0%}{loading}",
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
    simulated = f" ({count(history.simulated_runs, 'twin run')} not counted)" if history.simulated_runs else ""
    items.append(
        ChecklistItem(
            "bottleneck",
            "Bottleneck named with evidence",
            "capacity",
            "pass" if named else "unknown" if not history.bench_runs else "fail",
            f"latest diagnosis: {history.bottleneck} ({history.bottleneck_confidence} confidence)"
            if history.bottleneck
            else f"{count(history.bench_runs, 'bench run')}, none names a bottleneck{simulated}",
            Stage.GROWTH_PRODUCTION,
        )
    )
    items.append(
        ChecklistItem(
            "capacity",
            "Capacity at the SLO measured",
            "capacity",
            "pass" if history.capacity else "fail",
            f"max rate meeting the SLO: {history.capacity.rps:g} req/s ({history.capacity.slo}, run "
            f"{history.capacity.run_id})"
            if history.capacity
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

    if (production := _production_slo(history)) is not None:
        items.append(production)
    if forecast is not None:
        items.append(_headroom(forecast))
    pattern = signs["pattern_repeats"]
    items.append(
        ChecklistItem(
            "traffic_pattern",
            "Serving pattern repeats",
            "capacity",
            {"yes": "pass", "no": "fail"}.get(pattern.status, "unknown"),
            pattern.evidence,
            Stage.GROWTH_PRODUCTION,
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
