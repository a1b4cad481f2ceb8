"""How the engine's decode step scales with its batch: what tells a queue held back by the engine's own
limit from a queue in front of saturated hardware, from the engine's /metrics alone (no GPU reading).

A decode step reads the weights once for the whole batch, so while the hardware has headroom a larger batch
adds tokens per second almost for free: the step time stays flat. Once compute or memory bandwidth is
saturated, the step time grows in proportion to the batch and throughput stops growing. The elasticity
d log(step) / d log(running), fitted over the run's scrape intervals, measures it: near 0, headroom; near 1,
saturated. It needs the batch to have varied during the run (an open rate near the limit, a ramp, a sweep);
a batch pinned at one size says nothing, and the finding says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from servewise.analysis.diagnosis.signals import Signals, known

MIN_TOKENS = 8  # tokens an interval must carry for its mean step time to count
MIN_POINTS = 4
MIN_SPREAD = 1.5  # p90 / p10 of the running batch over the intervals
STEP_SATURATED = 0.75
STEP_HEADROOM = 0.40


@dataclass(frozen=True)
class StepScaling:
    """The batch range the run covered and how the engine's step time followed it."""

    points: int
    running_lo: float
    running_hi: float
    step_lo_ms: float
    step_hi_ms: float
    elasticity: float  # nan where the batch did not vary enough to fit it

    @property
    def saturated(self) -> bool:
        return known(self.elasticity) and self.elasticity >= STEP_SATURATED

    @property
    def headroom(self) -> bool:
        return known(self.elasticity) and self.elasticity <= STEP_HEADROOM

    @property
    def throughput_gain(self) -> float:
        """Tokens per second at the largest batch seen over the smallest: (batch ratio)^(1 - elasticity)."""
        return (self.running_hi / self.running_lo) ** (1 - self.elasticity)

    def text(self) -> str:
        if not known(self.elasticity):
            return (
                f"engine step time {self.step_lo_ms:.1f} ms, seen at one batch size only"
                f" (running {self.running_lo:.0f}-{self.running_hi:.0f})"
            )
        return (
            f"engine step time {self.step_lo_ms:.1f} -> {self.step_hi_ms:.1f} ms as running went"
            f" {self.running_lo:.1f} -> {self.running_hi:.1f} (elasticity {self.elasticity:.2f},"
            f" throughput x{self.throughput_gain:.2f})"
        )

    def numbers(self) -> dict[str, float]:
        return {
            "step_elasticity": self.elasticity,
            "step_running_lo": self.running_lo,
            "step_running_hi": self.running_hi,
            "step_ms_lo": self.step_lo_ms,
            "step_ms_hi": self.step_hi_ms,
        }


def step_scaling(runs: Sequence[Signals]) -> StepScaling | None:
    """The engine's mean step time per scrape interval against its running batch, over one run or several
    against the same server (a sweep's steps); None where no run has both."""
    batch: list[float] = []
    step: list[float] = []
    tokens: list[float] = []
    for sig in runs:
        for size, seconds, count in _intervals(sig):
            batch.append(size)
            step.append(seconds)
            tokens.append(count)
    if len(batch) < MIN_POINTS:
        return None
    lo, hi = (float(q) for q in np.quantile(batch, [0.1, 0.9]))
    if hi / lo < MIN_SPREAD:
        ms = 1000 * float(np.median(step))
        return StepScaling(len(batch), lo, hi, ms, ms, math.nan)
    # an interval's mean step time is as steady as the tokens it averages: weigh by them (1 / sigma)
    fit = np.polyfit(np.log(batch), np.log(step), 1, w=np.sqrt(tokens))
    slope, intercept = (float(c) for c in fit)
    lo_ms, hi_ms = (1000 * math.exp(intercept + slope * math.log(size)) for size in (lo, hi))
    return StepScaling(len(batch), lo, hi, lo_ms, hi_ms, slope)


def _intervals(sig: Signals) -> Iterator[tuple[float, float, float]]:
    """(mean batch, mean step seconds, tokens) for each scrape interval that carried enough tokens. The
    batch is the engine's own per-step count where it keeps one (llama.cpp), else the running gauge at the
    interval's two ends (vLLM and SGLang set it every step)."""
    sums, counts = _by_time(sig, "step_seconds_sum"), _by_time(sig, "step_seconds_count")
    running = _by_time(sig, "requests_running")
    calls, per_call = _by_time(sig, "steps_total"), _by_time(sig, "batch_per_step_mean")
    ticks = sorted(t for t in counts if t in sums)
    for t0, t1 in itertools.pairwise(ticks):
        tokens, seconds = counts[t1] - counts[t0], sums[t1] - sums[t0]
        if tokens < MIN_TOKENS or seconds <= 0:
            continue
        steps = calls.get(t1, math.nan) - calls.get(t0, math.nan)
        if known(steps) and steps > 0 and t0 in per_call and t1 in per_call:
            size = (per_call[t1] * calls[t1] - per_call[t0] * calls[t0]) / steps
        elif t0 in running and t1 in running:
            size = (running[t0] + running[t1]) / 2
        else:
            continue
        if size >= 1:
            yield size, seconds / tokens, tokens


def _by_time(sig: Signals, name: str) -> dict[float, float]:
    """A canonical signal by tick (one value each: the exposition map already merged its label sets)."""
    series = sig.series("metrics", name)
    return dict(zip(series.times, series.values, strict=True))
