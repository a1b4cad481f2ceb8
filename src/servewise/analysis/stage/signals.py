"""The article's two lists, ticked by evidence: "you are still closer to prototype if…" and "you are moving
into production if…", each item yes, no or unknown with the evidence that decided it.

Its own module because these signs are what placement is driven by (who depends on it, does the pattern
repeat, are limits measurable, must decisions be stable) and what a team reads first. Evidence decides
where there is some; the answers file speaks only where nothing was observed, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from servewise.analysis.stage.answers import answered
from servewise.analysis.stage.evidence import HistoryEvidence
from servewise.analysis.stage.traffic import TrafficEvidence
from servewise.format import count

DEPEND_DAYS = 0.7  # traffic on at least 70% of the days read = users depend on it
MIN_DAYS = 7  # fewer full days of traffic judge nothing
PATTERN_DAYS = 14  # a repeating pattern needs two weeks
DAILY_CYCLE = 0.5  # the time-of-day profile explains at least half of a day's variation
SIZE_DRIFT_OK = 0.25  # mean prompt size moving less than 25% = a stable mix
MIN_GATES = 3
CONFIDENT = ("high", "medium")
DEPLOY_PROBES = ("readiness", "version")  # what a deploy routine waits on and checks


@dataclass(frozen=True, slots=True)
class Sign:
    key: str
    text: str  # the article's words
    status: str  # yes | no | unknown
    evidence: str


@dataclass(frozen=True, slots=True)
class Signs:
    production: tuple[Sign, ...]  # "you are moving into production if"
    prototype: tuple[Sign, ...]  # "you are still closer to prototype if"

    def __getitem__(self, key: str) -> Sign:
        return next(s for s in (*self.production, *self.prototype) if s.key == key)

    def met(self, key: str) -> bool:
        return self[key].status == "yes"


def _from_answer(answers: Mapping[str, str], question: str, key: str, text: str, why: str) -> Sign:
    value = answered(answers, question)
    status = value if value in ("yes", "no") else "unknown"
    return Sign(key, text, status, f"{why}; answers file: {question}: {value}")


def _traffic_days(traffic: TrafficEvidence) -> str:
    per_day = f", {traffic.requests_per_day:,.0f} requests a day" if traffic.requests_per_day else ""
    return f"traffic on {traffic.active_days} of {traffic.observed_days} days{per_day} ({traffic.source})"


def _users_depend(traffic: TrafficEvidence | None, answers: Mapping[str, str]) -> Sign:
    text = "users or internal operations now depend on the system"
    if traffic is None or traffic.observed_days < MIN_DAYS:
        seen = "no production traffic read" if traffic is None else f"{traffic.observed_days} full days read"
        return _from_answer(answers, "users_depend", "users_depend", text, seen)
    share = traffic.active_days / traffic.observed_days
    felt = []
    if traffic.error_share:
        felt.append(f"users saw {traffic.error_share:.2%} errors on {traffic.error_days} days")
    if traffic.down_hours >= 1:
        felt.append(f"{traffic.down_hours:.0f} h down inside the window")
    evidence = _traffic_days(traffic) + (f"; {', '.join(felt)}" if felt else "")
    return Sign("users_depend", text, "yes" if share >= DEPEND_DAYS else "no", evidence)


def _pattern(traffic: TrafficEvidence | None, answers: Mapping[str, str]) -> Sign:
    text = "the serving pattern is becoming repeatable"
    if traffic is None or traffic.active_days < PATTERN_DAYS or traffic.daily_cycle is None:
        seen = "no production traffic read" if traffic is None else f"{traffic.active_days} days with traffic"
        return _from_answer(
            answers, "workload_stable", "pattern_repeats", text, f"{seen} (needs {PATTERN_DAYS})"
        )
    drift = traffic.size_drift
    mix_ok = drift is None or abs(drift) <= SIZE_DRIFT_OK
    evidence = f"the time-of-day cycle explains {traffic.daily_cycle:.0%} of each day's variation"
    if traffic.weekend_ratio is not None:
        evidence += f", weekends at {traffic.weekend_ratio:.0%} of weekdays"
    evidence += (
        f", prompt size {drift:+.0%} first week to last" if drift is not None else ", prompt size not read"
    )
    return Sign(
        "pattern_repeats", text, "yes" if traffic.daily_cycle >= DAILY_CYCLE and mix_ok else "no", evidence
    )


def _measurable(history: HistoryEvidence) -> Sign:
    text = "latency, throughput or memory constraints are measurable"
    named = history.bottleneck is not None and history.bottleneck_confidence in CONFIDENT
    parts = []
    if history.bottleneck:
        parts.append(f"diagnosis: {history.bottleneck} ({history.bottleneck_confidence} confidence)")
    if history.capacity:
        parts.append(f"SLO knee {history.capacity.rps:g} req/s ({history.capacity.slo})")
    if not parts:
        parts.append(f"{count(history.bench_runs, 'bench run')}, no bottleneck named and no SLO knee measured")
    if history.simulated_runs:
        parts.append(f"{count(history.simulated_runs, 'run')} against the twin not counted")
    return Sign("limits_measurable", text, "yes" if named and history.capacity else "no", "; ".join(parts))


def _stable(history: HistoryEvidence, probes: Mapping[str, tuple[str, str]]) -> Sign:
    """Gates and an exercised rollback; and, when probed, an endpoint a deploy can rely on (it tells
    loading from ready and says which version runs)."""
    text = "infrastructure decisions now need to be stable, not just fast"
    gated = history.gate_runs >= MIN_GATES
    evidence = (
        f"{count(history.gate_runs, 'gate')} ({history.gate_failed} caught a regression), "
        f"{count(history.releases, 'release')}, {count(history.rollbacks, 'rollback')} exercised"
    )
    broken = [
        f"{name} probe fails: {found[1]}"
        for name in DEPLOY_PROBES
        if (found := probes.get(name)) and found[0] == "fail"
    ]
    if broken:
        evidence += "; " + "; ".join(broken)
    return Sign(
        "decisions_stable", text, "yes" if gated and history.rollbacks and not broken else "no", evidence
    )


def read_signs(
    history: HistoryEvidence, answers: Mapping[str, str], probes: Mapping[str, tuple[str, str]] | None = None
) -> Signs:
    """``probes``: name → (status, evidence) of the probes run, when a URL was given."""
    traffic = history.traffic
    depend = _users_depend(traffic, answers)
    pattern = _pattern(traffic, answers)
    measurable = _measurable(history)
    stable = _stable(history, probes or {})
    if traffic is not None and traffic.size_drift is not None and traffic.active_days >= MIN_DAYS:
        changing = Sign(
            "workload_changing", "the workload is still changing a lot",
            "yes" if abs(traffic.size_drift) > SIZE_DRIFT_OK else "no",
            f"mean prompt size {traffic.size_drift:+.0%} from the first week to the last",
        )  # fmt: skip
    else:
        stable_answer = answered(answers, "workload_stable")
        changing = Sign(
            "workload_changing", "the workload is still changing a lot",
            {"yes": "no", "no": "yes"}.get(stable_answer, "unknown"),
            f"no request sizes read; answers file: workload_stable: {stable_answer}",
        )  # fmt: skip
    learning = Sign(
        "learning", "the main goal is learning and validation",
        {"yes": "no", "no": "yes"}.get(depend.status, "unknown"), depend.evidence,
    )  # fmt: skip
    no_bottleneck = Sign(
        "bottleneck_unknown", "nobody can clearly name the true bottleneck yet",
        "no" if history.bottleneck and history.bottleneck_confidence in CONFIDENT else "yes", measurable.evidence,
    )  # fmt: skip
    speed = Sign(
        "speed_over_discipline", "speed matters more than production discipline",
        "no" if history.gate_runs or history.releases else "yes",
        f"{count(history.gate_runs, 'gate')} and {count(history.releases, 'release')} stored",
    )  # fmt: skip
    return Signs((depend, pattern, measurable, stable), (changing, learning, no_bottleneck, speed))
