"""The stored stage assessment and readiness probes, as `servewise report` and history read them."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from servewise.results.base import Result


def _empty(value: object) -> bool:
    """Fields added after 0.1.0 are left out of the stored JSON while empty (``exclude_if``), so a record
    written before them exports exactly as it did."""
    return value is None or value is False or value == "" or value == []


class ChecklistRecord(Result):
    key: str
    title: str
    area: str
    status: str  # pass | fail | unknown
    evidence: str
    needed_from: str
    local_only: bool = Field(default=False, exclude_if=_empty)


class SignRecord(Result):
    """One of the article's signs: "moving into production if…" or "still closer to prototype if…"."""

    key: str
    text: str
    status: str  # yes | no | unknown
    evidence: str


class ForecastRecord(Result):
    """When the projected peak reaches the capacity measured at the SLO (``stage``'s ``forecast``)."""

    peak_rps: float
    capacity_rps: float
    capacity_source: str
    replicas: int
    headroom: float
    growth_per_week: float | None
    growth_interval: list[float] | None
    crossing_date: str | None  # ISO date; None when not within a year
    crossing_earliest: str | None
    crossing_latest: str | None
    crossing_days: float | None
    degrade_rps: float | None
    degrade_date: str | None
    plan_date: str
    plan_peak_rps: float | None
    replicas_needed: int | None
    note: str


class LayerRecord(Result):
    key: str
    title: str
    action: str
    why: list[str]
    score: float
    needed_from: str
    not_yet: str = Field(default="", exclude_if=_empty)


class DayRecord(Result):
    date: str  # ISO, UTC
    requests: float
    peak_rps: float
    errors: float = 0.0


class TrafficRecord(Result):
    """Production traffic as read from Prometheus: the summary the stage judged, and every day for charts."""

    source: str
    observed_days: int
    active_days: int
    requests_per_day: float | None
    peak_rps: float | None
    mean_rps: float | None
    daily_cycle: float | None
    weekend_ratio: float | None
    growth_per_week: float | None
    error_share: float | None
    down_hours: float
    size_drift: float | None
    trend_at: float | None = None  # unix time the trend's level is for
    trend_level_rps: float | None = None
    trend_slope_per_day: float | None = None  # of log(peak)
    days: list[DayRecord] = []


class StageRecord(Result):
    stage: str
    reasons: list[str]
    optimize_for: str
    do_not_overdo: str
    checklist: list[ChecklistRecord]
    next_layers: list[LayerRecord]
    not_yet: list[LayerRecord] = []
    next_step: str | None = None
    moving_to_production_if: list[SignRecord] = Field(default=[], exclude_if=_empty)
    closer_to_prototype_if: list[SignRecord] = Field(default=[], exclude_if=_empty)
    forecast: ForecastRecord | None = Field(default=None, exclude_if=_empty)
    traffic: TrafficRecord | None = Field(default=None, exclude_if=_empty)
    traffic_note: str | None = Field(default=None, exclude_if=_empty)


class ProbeRecord(Result):
    name: str
    status: str  # pass | fail | unknown
    evidence: str
    facts: dict[str, Any] = {}
