"""Production traffic, read as a team reads its dashboards: how many requests a day, on how many days, the
daily and weekly cycle, the trend of the daily peak, errors and outages users saw, and SLO attainment.

Its own module because it is the one judge of a request-rate series: the stage's placement asks "do
users depend on it, does the pattern repeat", the forecast asks "how fast does the peak grow"; both read
the numbers folded here, never the series. Pure: points in (``(unix time, value)`` at a regular step),
a typed ``TrafficEvidence`` out.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from scipy import stats

DAY_S = 86400.0
WEEK_DAYS = 7.0
FULL_DAY = 0.9  # a day with at least 90% of its points present is a full day
ACTIVE_REQUESTS = 1.0  # a day with fewer requests than this had no traffic
OUTAGE_DIP = 0.5  # a full day's peak under half its neighbours' median is an outage, not the trend
RECENT_DAYS = 7.0


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """One latency histogram summed over the traffic window: cumulative counts at each bucket's upper bound."""

    metric: str  # ttft | e2e | itl
    buckets: tuple[tuple[float, float], ...]  # (le in seconds, cumulative count), +inf last

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    def share_within(self, limit_s: float) -> float | None:
        """Share of requests at or under ``limit_s``, linear within the bucket that holds it."""
        if self.count <= 0:
            return None
        below_le, below_n = 0.0, 0.0
        for le, n in self.buckets:
            if limit_s <= le:
                if math.isinf(le):
                    return below_n / self.count
                width = le - below_le
                inside = (limit_s - below_le) / width if width > 0 else 1.0
                return (below_n + inside * (n - below_n)) / self.count
            below_le, below_n = le, n
        return 1.0

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1) in seconds, as Prometheus's ``histogram_quantile`` reads it."""
        if self.count <= 0:
            return None
        rank = q * self.count
        below_le, below_n = 0.0, 0.0
        for le, n in self.buckets:
            if n >= rank:
                if math.isinf(le):
                    return below_le
                inside = (rank - below_n) / (n - below_n) if n > below_n else 1.0
                return below_le + inside * (le - below_le)
            below_le, below_n = le, n
        return below_le


@dataclass(frozen=True, slots=True)
class Trend:
    """Log-linear trend of the daily peak, with a day-of-week effect once two weeks are seen.

    ``level`` is the fitted peak of the week's busiest weekday at ``at`` (the last day seen), so the
    forecast compares a capacity with the peak the busiest day will bring, not with a weekend's.
    """

    at: float  # unix time the level is for
    level_rps: float
    level_se: float  # standard error of log(level)
    slope_per_day: float  # of log(peak)
    slope_se: float
    dof: int
    days: int  # full days fitted (outages left out)

    @property
    def growth_per_week(self) -> float:
        return math.exp(self.slope_per_day * WEEK_DAYS) - 1.0

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Growth per week, low and high, at ``confidence``."""
        t = float(stats.t.ppf(0.5 + confidence / 2, max(self.dof, 1)))
        low = self.slope_per_day - t * self.slope_se
        high = self.slope_per_day + t * self.slope_se
        return math.exp(low * WEEK_DAYS) - 1.0, math.exp(high * WEEK_DAYS) - 1.0

    def peak_at(self, t: float) -> float:
        return self.level_rps * math.exp(self.slope_per_day * (t - self.at) / DAY_S)


@dataclass(frozen=True, slots=True)
class DayTraffic:
    start: float  # unix time of the UTC day's start
    requests: float
    peak_rps: float
    coverage: float  # share of the day's points present (1.0 = no gap)
    whole: bool  # the whole UTC day lies inside the window read
    errors: float = 0.0

    @property
    def weekday(self) -> int:
        return int(((self.start / DAY_S) + 3) % 7)  # 1970-01-01 was a Thursday; Monday = 0


@dataclass(frozen=True, slots=True)
class TrafficEvidence:
    """What the team's Prometheus says about production traffic over the window read."""

    source: str
    step_s: float
    end: float
    days: tuple[DayTraffic, ...]  # every UTC day touched by the window, oldest first
    observed_days: int  # full days in the window
    active_days: int  # full days with traffic
    requests_per_day: float | None  # mean over the last week's full active days
    peak_rps: float | None  # highest rate over the last week (the step's mean, e.g. 15 minutes)
    mean_rps: float | None  # mean rate over the last week
    daily_cycle: float | None  # share of a day's variation the time-of-day profile explains (0..1)
    weekend_ratio: float | None  # weekend days' requests over weekdays'
    trend: Trend | None
    error_share: float | None  # errors / (errors + successes), over the window
    error_days: int
    down_hours: float  # hours inside the window with no samples at all (the server was not scraped)
    size_drift: float | None  # mean prompt size, last week against the first
    latency: tuple[LatencyHistogram, ...] = ()

    def histogram(self, metric: str) -> LatencyHistogram | None:
        return next((h for h in self.latency if h.metric == metric and h.count > 0), None)

    def to_dict(self) -> dict[str, object]:
        """The stored shape (``TrafficRecord``): the numbers judged and every day, for the charts."""

        def num(value: float | None, digits: int = 4) -> float | None:
            return None if value is None else round(value, digits)

        trend = self.trend
        return {
            "source": self.source,
            "observed_days": self.observed_days,
            "active_days": self.active_days,
            "requests_per_day": num(self.requests_per_day, 1),
            "peak_rps": num(self.peak_rps),
            "mean_rps": num(self.mean_rps),
            "daily_cycle": num(self.daily_cycle),
            "weekend_ratio": num(self.weekend_ratio),
            "growth_per_week": num(trend.growth_per_week) if trend else None,
            "error_share": num(self.error_share, 6),
            "down_hours": round(self.down_hours, 2),
            "size_drift": num(self.size_drift),
            "trend_at": trend.at if trend else None,
            "trend_level_rps": num(trend.level_rps) if trend else None,
            "trend_slope_per_day": num(trend.slope_per_day, 6) if trend else None,
            "days": [
                {
                    "date": iso_date(d.start),
                    "requests": round(d.requests, 1),
                    "peak_rps": round(d.peak_rps, 4),
                    "errors": round(d.errors, 1),
                }
                for d in self.days
            ],
        }


def iso_date(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).date().isoformat()


def _day_of(t: float) -> int:
    return int((t - 1e-6) // DAY_S)


def _days(
    volume: Sequence[tuple[float, float]],
    errors: Sequence[tuple[float, float]],
    step_s: float,
    start: float,
    end: float,
) -> list[DayTraffic]:
    per_day: dict[int, list[float]] = {}
    for t, rate in volume:  # a point is the rate over the step before it: its day is the step's
        per_day.setdefault(_day_of(t), []).append(rate)
    error_day: dict[int, float] = {}
    for t, rate in errors:
        error_day[_day_of(t)] = error_day.get(_day_of(t), 0.0) + rate * step_s
    days = []
    for day in range(int(start // DAY_S), int(end // DAY_S) + 1):
        lo, hi = max(start, day * DAY_S), min(end, (day + 1) * DAY_S)
        if hi - lo < step_s:
            continue
        rates = per_day.get(day, [])
        days.append(
            DayTraffic(
                start=day * DAY_S,
                requests=sum(rates) * step_s,
                peak_rps=max(rates, default=0.0),
                coverage=min(1.0, len(rates) * step_s / (hi - lo)),
                whole=lo == day * DAY_S and hi == (day + 1) * DAY_S,
                errors=error_day.get(day, 0.0),
            )
        )
    return days


@dataclass(frozen=True, slots=True)
class DailyProfile:
    """The time-of-day shape averaged over full days, each day's rates over that day's mean."""

    cycle: float  # share of a day's variation the profile explains: near 1 same shape daily, near 0 noise
    peak_factor: float  # the profile's busiest step over the day's mean (the daily peak-to-mean)


def daily_profile(volume: Sequence[tuple[float, float]], step_s: float) -> DailyProfile | None:
    """Averaging the shape over weeks keeps one noisy step from setting the peak the trend projects."""
    by_day: dict[int, list[tuple[int, float]]] = {}
    slots = max(1, round(DAY_S / step_s))
    for t, rate in volume:
        by_day.setdefault(_day_of(t), []).append((int(((t - 1e-6) % DAY_S) // step_s), rate))
    rows = []
    for points in by_day.values():
        mean = sum(r for _, r in points) / len(points)
        if len(points) >= FULL_DAY * slots and mean > 0:
            rows.append({slot: r / mean for slot, r in points})
    if len(rows) < 3:
        return None
    columns: dict[int, list[float]] = {}
    for row in rows:
        for slot, value in row.items():
            columns.setdefault(slot, []).append(value)
    profile = {slot: float(np.mean(values)) for slot, values in columns.items()}
    values = np.array([v for row in rows for v in row.values()])
    residual = np.array([v - profile[s] for row in rows for s, v in row.items()])
    total = float(np.var(values))
    cycle = max(0.0, 1.0 - float(np.var(residual)) / total) if total > 0 else 0.0
    return DailyProfile(cycle, max(profile.values()) / float(np.mean(list(profile.values()))))


def _weekend(day: DayTraffic) -> bool:
    return day.weekday >= 5


def _mean_rps(day: DayTraffic) -> float:
    return day.requests / (day.coverage * DAY_S) if day.coverage > 0 else 0.0


def _outages(days: Sequence[DayTraffic]) -> set[int]:
    """Days whose mean rate falls far under the median of the same kind of day (weekday or weekend)
    within two weeks each side: an outage or a broken scrape, not the trend."""
    out = set()
    for i, day in enumerate(days):
        around = [_mean_rps(d) for d in days[max(0, i - 14) : i + 15]
                  if d is not day and _weekend(d) == _weekend(day) and d.requests > 0]  # fmt: skip
        if around and _mean_rps(day) < OUTAGE_DIP * float(np.median(around)):
            out.add(i)
    return out


def fit_trend(days: Sequence[DayTraffic], peak_factor: float = 1.0) -> Trend | None:
    """OLS of log(day's mean rate) on day, with a weekend level apart once two weekend days and two weekdays
    are seen (a weekend near either end of a short window would otherwise read as a trend); the peak is the
    busier level times the daily profile's ``peak_factor``. Needs 7 full days."""
    outages = _outages(days)
    keep = [d for i, d in enumerate(days) if i not in outages and d.requests > 0 and d.coverage >= FULL_DAY]
    if len(keep) < 7:
        return None
    at = keep[-1].start + DAY_S / 2  # a day's mean rate is its level at mid-day
    x = np.array([(d.start + DAY_S / 2 - at) / DAY_S for d in keep])
    y = np.log([_mean_rps(d) for d in keep])
    kinds = [_weekend(d) for d in keep]
    groups = [False, True] if min(kinds.count(False), kinds.count(True)) >= 2 else [None]
    columns = [x] + [np.array([1.0 if g is None or _weekend(d) == g else 0.0 for d in keep]) for g in groups]
    design = np.column_stack(columns)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(keep) - design.shape[1]
    if dof < 2:
        return None
    residual = y - design @ coef
    sigma2 = float(residual @ residual) / dof
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    level = int(np.argmax(coef[1:])) + 1  # the busier of weekdays and weekends
    return Trend(
        at=at,
        level_rps=float(math.exp(coef[level])) * peak_factor,
        level_se=float(math.sqrt(max(cov[level, level], 0.0))),
        slope_per_day=float(coef[0]),
        slope_se=float(math.sqrt(max(cov[0, 0], 0.0))),
        dof=dof,
        days=len(keep),
    )


def _gap_hours(volume: Sequence[tuple[float, float]], step_s: float, end: float) -> float:
    """Hours with no point between the first point and ``end``: the server was down or not scraped."""
    times = [t for t, _ in volume]
    if not times:
        return 0.0
    gaps = sum(b - a - step_s for a, b in zip(times, [*times[1:], end], strict=True) if b - a > 1.5 * step_s)
    return gaps / 3600.0


def _window(points: Sequence[tuple[float, float]], lo: float, hi: float) -> list[float]:
    times = [t for t, _ in points]
    return [v for _, v in points[bisect.bisect_left(times, lo) : bisect.bisect_right(times, hi)]]


def traffic_evidence(
    volume: Sequence[tuple[float, float]],
    *,
    step_s: float,
    start: float,
    end: float,
    errors: Sequence[tuple[float, float]] = (),
    size: Sequence[tuple[float, float]] = (),
    latency: Sequence[LatencyHistogram] = (),
    source: str = "",
) -> TrafficEvidence:
    """Fold request-rate points (req/s at ``step_s``, sorted) between ``start`` and ``end`` into evidence.

    The window begins no earlier than the first point's step: days before Prometheus's data starts (its
    retention, 15 days by default, or the server's first scrape) were not seen, so they are not idle days."""
    if volume:
        start = max(start, volume[0][0] - step_s)
    days = _days(volume, errors, step_s, start, end)
    profile = daily_profile(volume, step_s)
    full = [d for d in days if d.whole]
    active = [d for d in full if d.requests >= ACTIVE_REQUESTS]
    recent_lo = end - RECENT_DAYS * DAY_S
    recent = _window(volume, recent_lo, end)
    recent_active = [d for d in active if d.start >= recent_lo - DAY_S]
    weekday = [d.requests for d in active if d.weekday < 5]
    weekend = [d.requests for d in active if d.weekday >= 5]
    ok = sum(d.requests for d in days)
    failed = sum(d.errors for d in days)
    sizes = [v for _, v in size]
    first_week, last_week = _window(size, start, start + 7 * DAY_S), _window(size, recent_lo, end)
    drift = None
    if sizes and first_week and last_week and end - start >= 10 * DAY_S:
        first, last = float(np.mean(first_week)), float(np.mean(last_week))
        drift = (last - first) / first if first > 0 else None
    return TrafficEvidence(
        source=source,
        step_s=step_s,
        end=end,
        days=tuple(days),
        observed_days=len(full),
        active_days=len(active),
        requests_per_day=float(np.mean([d.requests for d in recent_active])) if recent_active else None,
        peak_rps=max(recent) if recent else None,
        mean_rps=float(np.mean(recent)) if recent else None,
        daily_cycle=profile.cycle if profile else None,
        weekend_ratio=float(np.mean(weekend) / np.mean(weekday))
        if weekday and weekend and np.mean(weekday)
        else None,
        trend=fit_trend(full, profile.peak_factor if profile else 1.0),
        error_share=failed / (ok + failed) if ok + failed > 0 else None,
        error_days=sum(1 for d in full if d.errors >= ACTIVE_REQUESTS),
        down_hours=_gap_hours(volume, step_s, end),
        size_drift=drift,
        latency=tuple(latency),
    )
