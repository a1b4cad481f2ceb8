"""The stage on the terminal: the probes table, the placement with its reasons, the article's signs ticked,
the production traffic with a text chart of its daily peaks, the forecast, the checklist and the next
production layers. Every server-derived or evidence string goes in as Text, never as markup.

The traffic and forecast lines are written here once (``traffic_summary``, ``forecast_lines``) and read by
the HTML report too, so both say the same thing in the same words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from servewise.format import percent
from servewise.probes import ProbeResult
from servewise.report.traffic_chart import CHART_WIDTH, rps_label, traffic_chart
from servewise.results.stage import (
    ForecastRecord,
    LayerRecord,
    SignRecord,
    StageRecord,
    TrafficRecord,
)

STATUS_STYLE = {"pass": "bold green", "fail": "bold red", "unknown": "yellow"}
TICKS = {"yes": "✓", "no": "✗", "unknown": "?"}


def probes_table(probes: Sequence[ProbeResult]) -> Table:
    table = Table(title="Readiness probes", title_justify="left")
    for column in ("probe", "status", "evidence"):
        table.add_column(column, overflow="fold")
    for p in probes:
        table.add_row(Text(p.name), Text(p.status.value, STATUS_STYLE[p.status.value]), Text(p.evidence))
    return table


# -- numbers in words, shared with the HTML report ------------------------------------------------------


def _growth(value: float) -> str:
    return f"{value:+.1%}"


def traffic_summary(traffic: TrafficRecord) -> list[tuple[str, str]]:
    """The traffic read, as (label, value) pairs; a number that was not read is left out."""
    rows: list[tuple[str, str]] = []
    if traffic.requests_per_day is not None:
        rows.append(("requests/day", f"{traffic.requests_per_day:,.0f}"))
    rows.append(("active days", f"{traffic.active_days} of {traffic.observed_days}"))
    if traffic.peak_rps is not None:
        peak = rps_label(traffic.peak_rps)
        if traffic.mean_rps:
            peak += f" ({traffic.peak_rps / traffic.mean_rps:.1f}× mean)"
        rows.append(("peak", peak))
    if traffic.daily_cycle is not None:
        rows.append(("daily cycle", percent(traffic.daily_cycle)))
    if traffic.weekend_ratio is not None:
        rows.append(("weekends", f"{percent(traffic.weekend_ratio)} of weekdays"))
    if traffic.growth_per_week is not None:
        rows.append(("peak growth", f"{_growth(traffic.growth_per_week)}/week"))
    if traffic.error_share is not None:
        rows.append(("errors", percent(traffic.error_share, 2)))
    rows.append(("down", f"{traffic.down_hours:.0f} h"))
    if traffic.size_drift is not None:
        rows.append(("prompt size", f"{traffic.size_drift:+.0%} first week to last"))
    return rows


def forecast_lines(forecast: ForecastRecord) -> list[tuple[str, str]]:
    """The forecast, as (label, value) pairs."""
    replicas = f"{forecast.replicas} replica{'s' if forecast.replicas != 1 else ''}"
    rows = [
        (
            "peak vs capacity",
            f"{rps_label(forecast.peak_rps)} vs {rps_label(forecast.capacity_rps)} ({replicas})",
        ),
        ("capacity from", forecast.capacity_source),
        ("headroom", percent(forecast.headroom)),
    ]
    if forecast.growth_per_week is not None:
        growth = f"{_growth(forecast.growth_per_week)}/week"
        if forecast.growth_interval:
            low, high = forecast.growth_interval
            growth += f" (95% {_growth(low)} to {_growth(high)})"
        rows.append(("growth", growth))
    if forecast.crossing_date is None:
        rows.append(("reaches capacity", "not within a year"))
    else:
        when = forecast.crossing_date
        if forecast.crossing_days == 0:
            when += " (already there)"
        else:
            earliest, latest = forecast.crossing_earliest, forecast.crossing_latest or "beyond a year"
            if (earliest or forecast.crossing_latest) and not earliest == latest == forecast.crossing_date:
                when += f" ({earliest or '?'} to {latest})"
            if forecast.crossing_days is not None:
                when += f", in {math.floor(forecast.crossing_days + 0.5)} days"  # half up, as the note says
        rows.append(("reaches capacity", when))
    if forecast.degrade_rps is not None:
        where = f"p95 TTFT doubles from {rps_label(forecast.degrade_rps)}"
        if forecast.degrade_date:
            where += f", reached by {forecast.degrade_date}"
        rows.append(("latency climbs", where))
    if forecast.plan_peak_rps is not None:
        plan = f"peak {rps_label(forecast.plan_peak_rps)}"
        if forecast.replicas_needed is not None:
            plan += (
                f", {forecast.replicas_needed} replica{'s' if forecast.replicas_needed != 1 else ''} needed"
            )
        rows.append((f"by {forecast.plan_date}", plan))
    return rows


def _hanging(prefix: Text | str, body: Text, indent: int = 2) -> Table:
    """``prefix`` then ``body``, the body's wrapped lines lined up under its first (a hanging indent)."""
    head = prefix if isinstance(prefix, Text) else Text(prefix)
    grid = Table.grid(padding=0)
    grid.add_column(width=indent + head.cell_len, no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(Text(" " * indent) + head, body)
    return grid


def _sign_lines(title: str, signs: Sequence[SignRecord], production: bool) -> list[Any]:
    """One list of the article's signs: ✓ yes, ✗ no, ? unknown; green where it points to production."""
    if not signs:
        return []
    lines: list[Any] = [Text(title, style="bold")]
    for sign in signs:
        toward = (sign.status == "yes") == production
        style = "yellow" if sign.status not in ("yes", "no") else "green" if toward else "red"
        tick = Text(f"{TICKS.get(sign.status, '?')} ", style=f"bold {style}")
        lines.append(_hanging(tick, Text.assemble(sign.text, "\n", (sign.evidence, "dim"))))
    return lines


def _pairs(rows: Sequence[tuple[str, str]], width: int = CHART_WIDTH - 2) -> list[Text]:
    """(label, value) pairs, "label value · label value", on as few lines of ``width`` as they fit."""
    lines: list[Text] = []
    line = Text("  ")
    for label, value in rows:
        pair = Text.assemble((f"{label} ", "dim"), value)
        if line.cell_len > 2 and line.cell_len + 3 + pair.cell_len > width:
            lines.append(line)
            line = Text("  ")
        if line.cell_len > 2:
            line.append(" · ", style="dim")
        line.append_text(pair)
    lines.append(line)
    return lines


def _layer_lines(layers: Sequence[LayerRecord]) -> list[Any]:
    lines: list[Any] = []
    for rank, layer in enumerate(layers, 1):
        lines.append(_hanging(f"{rank}. ", Text.assemble((layer.title, "bold"), f": {layer.action}")))
        lines += [_hanging("- ", Text(why, style="dim"), indent=5) for why in layer.why]
    return lines


def _checklist(record: StageRecord) -> Table:
    table = Table(title="Readiness checklist", title_justify="left", expand=True)
    table.add_column("area", max_width=13)
    table.add_column("item", ratio=2)
    table.add_column("status", no_wrap=True)
    table.add_column("evidence", overflow="fold", ratio=3)
    table.add_column("matters from", max_width=10)
    for item in record.checklist:
        status = Text(item.status, STATUS_STYLE.get(item.status, ""))
        if item.local_only:
            status.append(" (local)", style="dim")
        table.add_row(Text(item.area), Text(item.title), status, Text(item.evidence), Text(item.needed_from))
    return table


def render_assessment(record: StageRecord) -> Group:
    """The stored assessment (``StageAssessment.record()``) for the terminal; readable at 80 columns."""
    parts: list[Any] = [Text.assemble(("Stage: ", "bold"), (record.stage, "bold cyan"))]
    parts += [_hanging("• ", Text(reason)) for reason in record.reasons]
    parts.append(_hanging(Text("Optimize for: ", "bold"), Text(record.optimize_for), indent=0))
    parts.append(_hanging(Text("Do not overdo: ", "bold"), Text(record.do_not_overdo), indent=0))
    signs = _sign_lines("Moving into production if…", record.moving_to_production_if, True)
    signs += _sign_lines("Still closer to prototype if…", record.closer_to_prototype_if, False)
    if signs:
        parts += [Text(), *signs]
    traffic, outlook = record.traffic, record.forecast
    if traffic is not None:
        parts += [Text(), Text.assemble(("Production traffic", "bold"), (f" ({traffic.source})", "dim"))]
        parts += _pairs(traffic_summary(traffic))
    if record.traffic_note:
        parts.append(_hanging("", Text(record.traffic_note, style="yellow")))
    if outlook is not None:
        parts += [Text(), Text("Forecast", style="bold")]
        for label, value in forecast_lines(outlook):
            parts.append(_hanging(Text(f"{label}: ", "dim"), Text(value)))
        parts.append(_hanging("", Text(outlook.note, style="dim")))
    chart = traffic_chart(traffic, outlook) if traffic is not None else []
    if chart:
        parts += [Text(), Text("Daily peak (req/s), its trend and capacity", style="bold"), *chart]
    parts.append(Text())
    parts.append(_checklist(record))
    if record.next_layers:
        parts.append(Text("Next production layers, ranked by the evidence", style="bold"))
        parts += _layer_lines(record.next_layers)
    if record.not_yet:
        parts.append(Text("Not yet (would be overbuilding)", style="bold"))
        for layer in record.not_yet:
            body = Text.assemble((layer.title, "bold"), f" (from {layer.needed_from})")
            if layer.not_yet:
                body.append(f": {layer.not_yet}", style="dim")
            parts.append(_hanging("- ", body))
    return Group(*parts)
