"""When is this tier outgrown: the traffic's peak and its trend against the capacity measured at the SLO.

Its own module because it is the seed's capacity question answered with dates: the capacity is what a
stored sweep measured (its knee meeting the SLO, per replica) or what the team states; the peak and its
growth are the production trend (``traffic.Trend``). The crossing date carries the interval the trend's
own scatter gives, and "not within a year" is said as such rather than as a far date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from servewise.analysis.stage.traffic import DAY_S, TrafficEvidence, Trend, iso_date

HORIZON_DAYS = 365.0  # a crossing further out than this is "not within a year"
PLAN_AHEAD_DAYS = 91.0  # replicas are sized for the peak a quarter ahead


@dataclass(frozen=True, slots=True)
class Capacity:
    """Requests per second one replica serves within the SLO, and where that number comes from."""

    per_replica_rps: float
    replicas: int
    source: str  # "sweep 3f2a… knee (ttft_p95 ≤ 500 ms)", "--capacity"
    degrade_share: float | None = None  # share of the knee where p95 TTFT has doubled (from the sweep)

    @property
    def rps(self) -> float:
        return self.per_replica_rps * self.replicas


@dataclass(frozen=True, slots=True)
class Forecast:
    peak_rps: float
    capacity_rps: float
    capacity_source: str
    replicas: int
    growth_per_week: float | None  # fraction; None without a trend
    growth_interval: tuple[float, float] | None
    crossing_date: str | None  # ISO date the projected peak reaches capacity; None when not within a year
    crossing_earliest: str | None
    crossing_latest: str | None  # None: possibly never within a year
    crossing_days: float | None
    degrade_rps: float | None  # where latency starts to climb (p95 TTFT doubled in the sweep)
    degrade_date: str | None
    plan_date: str  # a quarter ahead
    plan_peak_rps: float | None  # the peak projected for plan_date
    replicas_needed: int | None  # replicas that keep plan_peak_rps under capacity (the knee)
    note: str

    @property
    def headroom(self) -> float:
        """Share of capacity left above today's peak (negative: over capacity)."""
        return 1.0 - self.peak_rps / self.capacity_rps

    def to_dict(self) -> dict[str, object]:
        return {
            "peak_rps": round(self.peak_rps, 4),
            "capacity_rps": round(self.capacity_rps, 4),
            "capacity_source": self.capacity_source,
            "replicas": self.replicas,
            "headroom": round(self.headroom, 4),
            "growth_per_week": None if self.growth_per_week is None else round(self.growth_per_week, 4),
            "growth_interval": None
            if self.growth_interval is None
            else [round(g, 4) for g in self.growth_interval],
            "crossing_date": self.crossing_date,
            "crossing_earliest": self.crossing_earliest,
            "crossing_latest": self.crossing_latest,
            "crossing_days": None if self.crossing_days is None else round(self.crossing_days, 1),
            "degrade_rps": None if self.degrade_rps is None else round(self.degrade_rps, 4),
            "degrade_date": self.degrade_date,
            "plan_date": self.plan_date,
            "plan_peak_rps": None if self.plan_peak_rps is None else round(self.plan_peak_rps, 4),
            "replicas_needed": self.replicas_needed,
            "note": self.note,
        }


def _days_to(trend: Trend, target_rps: float, now: float, slope: float, level_shift: float) -> float | None:
    """Days from ``now`` until the trend (slope, level moved by ``level_shift`` in log) reaches target."""
    gap = math.log(target_rps) - (math.log(trend.level_rps) + level_shift) - slope * (now - trend.at) / DAY_S
    if gap <= 0:
        return 0.0
    if slope <= 0:
        return None
    days = gap / slope
    return days if days <= HORIZON_DAYS else None


def forecast(
    traffic: TrafficEvidence, capacity: Capacity, now: float, confidence: float = 0.95
) -> Forecast | None:
    """Headroom today and the crossing date; None when there is no traffic peak to compare."""
    if not traffic.peak_rps:
        return None
    trend = traffic.trend
    cap = capacity.rps
    degrade = capacity.degrade_share * cap if capacity.degrade_share and capacity.degrade_share < 1 else None
    plan_t = now + PLAN_AHEAD_DAYS * DAY_S
    if trend is None:
        over = traffic.peak_rps >= cap
        return Forecast(
            traffic.peak_rps, cap, capacity.source, capacity.replicas, None, None,
            iso_date(now) if over else None, None, None, 0.0 if over else None,
            degrade, None, iso_date(plan_t), None, None,
            f"no trend: {traffic.observed_days} full days of traffic (a trend needs 7)",
        )  # fmt: skip
    t = float(stats.t.ppf(0.5 + confidence / 2, max(trend.dof, 1)))
    days = _days_to(trend, cap, now, trend.slope_per_day, 0.0)
    earliest = _days_to(trend, cap, now, trend.slope_per_day + t * trend.slope_se, t * trend.level_se)
    latest = _days_to(trend, cap, now, trend.slope_per_day - t * trend.slope_se, -t * trend.level_se)
    to_degrade = _days_to(trend, degrade, now, trend.slope_per_day, 0.0) if degrade else None
    plan_peak = trend.peak_at(plan_t)
    held = capacity.per_replica_rps * (capacity.degrade_share or 1.0)
    needed = max(1, math.ceil(plan_peak / held)) if held > 0 else None
    growth = trend.growth_per_week
    if days == 0.0:
        note = f"the peak ({traffic.peak_rps:.3g} req/s) is already at or over capacity ({cap:.3g} req/s)"
    elif days is None:
        note = f"at {growth:+.1%} a week the projected peak stays under {cap:.3g} req/s for a year"
    else:
        note = f"at {growth:+.1%} a week the projected peak reaches {cap:.3g} req/s in {days:.0f} days"

    def date(d: float | None) -> str | None:
        return None if d is None else iso_date(now + d * DAY_S)

    return Forecast(
        peak_rps=traffic.peak_rps,
        capacity_rps=cap,
        capacity_source=capacity.source,
        replicas=capacity.replicas,
        growth_per_week=growth,
        growth_interval=trend.interval(confidence),
        crossing_date=date(days),
        crossing_earliest=date(earliest),
        crossing_latest=date(latest),
        crossing_days=days,
        degrade_rps=degrade,
        degrade_date=date(to_degrade),
        plan_date=iso_date(plan_t),
        plan_peak_rps=plan_peak,
        replicas_needed=needed,
        note=note,
    )
