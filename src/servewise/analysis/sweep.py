"""Max-rate search as pure decisions: which rate to try next, and whether a step passed."""

from __future__ import annotations

from servewise.results import RunResult, SweepStep
from servewise.spec.models import SweepSpec

MAX_ERROR_RATE_WITHOUT_SLO = 0.01
QUEUE_GROWTH_RATIO = 2.0
QUEUE_GROWTH_MIN_MS = 50.0


def step_passed(step: RunResult) -> tuple[bool, str]:
    """A step passes when it met the SLO (if any) and the server kept up: no queue growing through it.

    Throughput against the offered rate is no test on short steps: requests still finishing after the
    last send stretch the window, so a server that keeps up would look short of the rate.
    """
    m = step.metrics
    if step.early_stop:
        return False, step.early_stop
    if m.requests_ok == 0:
        return False, "every request failed"
    if step.slo.met is False:
        return False, f"missed {', '.join(step.slo.missed())}"
    if not step.slo.targets and (m.error_rate or 0) > MAX_ERROR_RATE_WITHOUT_SLO:
        return False, f"error rate {m.error_rate or 0:.1%}"
    trend = m.ttft_trend_ms
    if trend and trend.last > QUEUE_GROWTH_RATIO * trend.first and trend.last - trend.first > QUEUE_GROWTH_MIN_MS:
        return False, f"queue growing: TTFT median {trend.first:.0f} ms early in the step, {trend.last:.0f} ms late"
    return True, "met"


def next_rate(steps: list[tuple[float, bool]], spec: SweepSpec) -> float | None:
    """Double until a step fails (bracket), then bisect until the bracket is within ``precision``."""
    if len(steps) >= spec.max_steps:
        return None
    if not steps:
        return spec.start_rate
    best_pass = max((rate for rate, ok in steps if ok), default=None)
    first_fail = min(
        (rate for rate, ok in steps if not ok and (best_pass is None or rate > best_pass)), default=None
    )
    if first_fail is None:
        assert best_pass is not None
        if best_pass >= spec.max_rate:
            return None
        return min(best_pass * 2, spec.max_rate)
    if best_pass is None:
        lowest = first_fail / 2
        return lowest if lowest >= spec.start_rate / 64 else None
    if (first_fail - best_pass) / best_pass <= spec.precision:
        return None
    return (best_pass + first_fail) / 2


def sweep_result(steps: list[SweepStep]) -> tuple[list[SweepStep], float | None]:
    """The curve sorted by rate, and the highest rate that passed (the knee of the curve)."""
    curve = sorted(steps, key=lambda s: s.rate)
    passing = [s.rate for s in curve if s.slo_met]
    return curve, max(passing) if passing else None
