"""How close the outgrown forecast's crossing date lands to the truth, over many synthetic histories.

    .venv/bin/python benchmarks/forecast_accuracy.py [--histories 200] [--days 42] [--read-days 42]

Each history is tests/fixtures/prom_history.py's ``TrafficShape`` (daily cycle peaking at 15:00 UTC,
weekends at 60%, a 6-hour outage, exponential growth, a lognormal factor per day), drawn as Poisson
request counts per 15 minutes — what Prometheus returns for ``rate(...[15m])`` — and read by the same
``traffic_evidence`` and ``forecast`` that ``servewise stage`` runs, over the last ``--read-days``. History
i has seed i and ends at its own time of the week (drawn from i), so where the weekends, the outage and
the day boundaries fall varies as it does between teams: the histories are independent. The capacity is
a multiple of the true peak at the end of the history; the truth is the day the noise-free weekday peak
reaches it. Nothing here is fitted: the seeds are 1..N, every cell of the grid is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.prom_history import TrafficShape  # noqa: E402
from servewise.analysis.stage import Capacity, forecast, traffic_evidence  # noqa: E402
from servewise.analysis.stage.traffic import DAY_S, iso_date  # noqa: E402

STEP = 900.0
GRID = ((0.05, 1.5), (0.10, 2.0), (0.20, 3.0))
NOISE = (0.0, 0.03, 0.05, 0.10)
MONDAY = 1795392000.0  # 2026-11-23 00:00 UTC; history i ends somewhere in the week after it


def end_of(seed: int) -> float:
    """History ``seed``'s end: a time of the week drawn from the seed, on a 5-minute step."""
    offset = np.random.default_rng([seed, 7]).uniform(0.0, 7 * DAY_S)
    return MONDAY + float(np.floor(offset / 300.0) * 300.0)


def one(shape: TrafficShape, headroom: float, read_days: float) -> tuple[float, bool]:
    """(relative error of the crossing in days, whether the 95% interval holds the true date). A forecast
    that sees no crossing within its horizon is a miss of infinite error, its interval held only where it
    still reaches the true date."""
    end = shape.history_end
    start = end - shape.days * DAY_S
    ts = np.arange(start + STEP, end + 1, STEP)
    expected = np.mean([shape.rates(ts - k * 300.0) for k in range(3)], axis=0) * STEP
    counts = np.random.default_rng(shape.seed + 1000).poisson(expected)
    up = ~shape.in_outage(ts)
    volume = [(float(t), float(c) / STEP) for t, c, ok in zip(ts, counts, up, strict=True) if ok]
    traffic = traffic_evidence(volume, step_s=STEP, start=end - read_days * DAY_S, end=end, source="synthetic")
    capacity = headroom * shape.true_daily_peak(end)
    outlook = forecast(traffic, Capacity(capacity, 1, "synthetic"), end)
    truth = shape.true_crossing_s(capacity, end)
    if outlook is None or truth is None:
        raise SystemExit(f"no forecast or no true crossing for {shape}")
    truth_days = truth / DAY_S
    truth_date = iso_date(end + truth)
    held = (outlook.crossing_earliest or "") <= truth_date <= (outlook.crossing_latest or "9999")
    if outlook.crossing_days is None:
        return np.inf, held and outlook.crossing_earliest is not None
    return (outlook.crossing_days - truth_days) / truth_days, held


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--histories", type=int, default=200)
    parser.add_argument("--days", type=float, default=42.0, help="history length")
    parser.add_argument("--read-days", type=float, default=None, help="window read (default: --days)")
    args = parser.parse_args()
    read_days = args.read_days or args.days
    began = time.perf_counter()
    print(f"{args.histories} histories of {args.days:g} days, the last {read_days:g} read")
    print("| growth/week | headroom | truth (days) | day noise | median abs error | p95 abs error "
          "| within 10% | mean error | no crossing seen | 95% interval holds truth |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for growth, headroom in GRID:
        truth_days = 7 * np.log(headroom) / np.log(1 + growth)
        for noise in NOISE:
            shapes = [TrafficShape(days=args.days, growth_per_week=growth, day_noise=noise, outage=(12.0, 6.0),
                                   seed=seed, end=end_of(seed)) for seed in range(1, args.histories + 1)]  # fmt: skip
            found = [one(shape, headroom, read_days) for shape in shapes]
            errors = np.array([e for e, _ in found])
            held = np.mean([h for _, h in found])
            seen = errors[np.isfinite(errors)]
            print(f"| {growth:.0%} | {headroom:g}x | {truth_days:.0f} | {noise:.0%} | {np.median(np.abs(errors)):.1%} | "
                  f"{np.percentile(np.abs(errors), 95):.1%} | {np.mean(np.abs(errors) <= 0.10):.1%} | "
                  f"{seen.mean():+.1%} | {len(errors) - len(seen)} | {held:.1%} |")  # fmt: skip
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
