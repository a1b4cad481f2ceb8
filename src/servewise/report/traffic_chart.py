"""The production traffic as a text chart: daily peaks as bars, the trend dotted on, the capacity line and
the crossing day, in at most 80 columns and eight rows.

Its own module because it is the one drawing the terminal does by hand (Rich has no line chart); the
stage's terminal view puts it under the forecast, and the HTML report draws the same record with
matplotlib (``report.charts.traffic_forecast``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta

from rich.text import Text

from servewise.analysis.stage.traffic import DAY_S
from servewise.results.stage import DayRecord, ForecastRecord, TrafficRecord

CHART_ROWS = 8
CHART_DAYS = 60  # daily peaks shown, at most
CHART_WIDTH = 80  # the whole chart, y-axis labels included
MIN_AHEAD = 14  # columns kept for the projection when there is a trend
AHEAD_DAYS = 21  # how far the trend is projected when capacity is not in reach
OFF_CHART = 3.0  # a capacity more than this many times the highest peak seen is named, not drawn
OFF_CHART_TREND = 2.0  # the trend is drawn up to this many times the highest peak seen
EIGHTHS = " ▁▂▃▄▅▆▇█"
DOTS = "⡀⠄⠂⠁"  # the trend's dot, lowest to highest within a row


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _projected(traffic: TrafficRecord, day: date) -> float | None:
    if traffic.trend_at is None or traffic.trend_level_rps is None or traffic.trend_slope_per_day is None:
        return None
    t = (day - date(1970, 1, 1)).days * DAY_S
    return traffic.trend_level_rps * math.exp(traffic.trend_slope_per_day * (t - traffic.trend_at) / DAY_S)


def rps_label(value: float) -> str:
    return f"{number_label(value)} req/s"


def number_label(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _columns(
    traffic: TrafficRecord, days: Sequence[tuple[DayRecord, date]], crossing: date | None, width: int
) -> tuple[list[tuple[DayRecord, date]], list[date]]:
    """The days shown and the days projected, in ``width`` columns."""
    last = days[-1][1]
    trend = _projected(traffic, last) is not None
    shown = list(days[-min(CHART_DAYS, width - (MIN_AHEAD if trend else 0)) :])
    room = width - len(shown)
    ahead = 0
    if trend:
        ahead = min(room, AHEAD_DAYS)
        if crossing is not None and 0 < (crossing - last).days <= room:
            ahead = min(room, max(ahead, (crossing - last).days + 3))
    return shown, [last + timedelta(days=k) for k in range(1, ahead + 1)]


def traffic_chart(traffic: TrafficRecord, forecast: ForecastRecord | None) -> list[Text]:
    """Daily peaks as bars (one column a day, the last ``CHART_DAYS``), the trend dotted on a few weeks,
    capacity as a row of ─ with its value on the axis, the crossing day marked ▲; [] with no days.

    At most ``CHART_WIDTH`` columns wide, ``CHART_ROWS`` rows high plus the axis, dates and legend."""
    days = [(d, when) for d in traffic.days if (when := _day(d.date)) is not None]
    if not days:
        return []
    capacity = forecast.capacity_rps if forecast and forecast.capacity_rps > 0 else None
    crossing = _day(forecast.crossing_date) if forecast and forecast.crossing_date else None
    last = days[-1][1]
    label_width = 4
    while True:  # the y-axis labels' width decides the columns, the columns what is drawn and labelled
        shown, future = _columns(traffic, days, crossing, CHART_WIDTH - label_width - 2)
        projected = [_projected(traffic, d) or 0.0 for d in future]
        seen = max([d.peak_rps for d, _ in shown] + [0.0])
        # the trend may leave the chart (drawn up to twice the highest peak seen), the history stays readable
        top = max([seen, *(p for p in projected if seen <= 0 or p <= OFF_CHART_TREND * seen)])
        cap = capacity if capacity is not None and (seen <= 0 or capacity <= OFF_CHART * seen) else None
        # capacity one row under the top, so the top label is the scale's and the row above shows what crosses
        top = max(top, (cap or 0.0) * CHART_ROWS / (CHART_ROWS - 1)) or 1.0
        needed = max(len(number_label(top)), len(number_label(cap)) if cap else 1)
        if needed <= label_width:
            break
        label_width = needed
    degrade = forecast.degrade_rps if forecast and cap is not None else None
    width = len(shown) + len(future)

    def row_of(value: float) -> int:
        return min(CHART_ROWS - 1, max(0, math.ceil(value / top * CHART_ROWS) - 1))

    cap_row = row_of(cap) if cap else None
    degrade_row = row_of(degrade) if degrade and cap_row is not None and row_of(degrade) != cap_row else None
    ahead = (crossing - last).days if crossing else 0
    cross_col = len(shown) + ahead - 1 if crossing and 0 < ahead <= len(future) else None

    lines: list[Text] = []
    for row in range(CHART_ROWS - 1, -1, -1):
        label = (
            number_label(top)
            if row == CHART_ROWS - 1
            else number_label(cap)
            if cap and row == cap_row
            else ""
        )
        if row == 0 and not label:
            label = "0"
        line = Text(f"{label:>{label_width}} ", style="bold red" if label and row == cap_row else "dim")
        line.append("┤" if label else "│", style="dim")
        for col in range(width):
            if col < len(shown):
                peak = shown[col][0].peak_rps
                fill = max(0, min(8, round(peak / top * CHART_ROWS * 8) - row * 8))
                if fill:
                    line.append(EIGHTHS[fill], style="red" if cap is not None and peak > cap else "cyan")
                    continue
            else:
                value = projected[col - len(shown)]
                if 0 < value <= top and row_of(value) == row:
                    level = value / top * CHART_ROWS - row  # 0..1 within the row
                    line.append(DOTS[min(3, max(0, math.ceil(level * 4) - 1))], style="bold magenta")
                    continue
            if row == cap_row:
                line.append("─", style="red")
            elif row == degrade_row:
                line.append("┄", style="yellow")
            elif col == cross_col:
                line.append("┊", style="red")
            else:
                line.append(" ")
        lines.append(line)

    axis = Text(" " * label_width + " └", style="dim")
    for col in range(width):
        if col == cross_col:
            axis.append("▲", style="bold red")
        else:
            axis.append("┼" if future and col == len(shown) else "─", style="dim")
    lines.append(axis)
    end = future[-1] if future else None
    lines.append(Text(" " * (label_width + 2)) + _date_axis(shown[0][1], last, end, len(shown), width))

    legend = Text("  ")
    for mark, style, words in (
        ("█", "cyan", "daily peak"),
        ("⠂", "bold magenta", "trend" if future else ""),
        ("─", "red", "capacity" if cap is not None else ""),
        ("┄", "yellow", "p95 TTFT doubles" if degrade and degrade_row is not None else ""),
        ("▲", "bold red", f"crossing {crossing.isoformat()}" if crossing and cross_col is not None else ""),
    ):
        if words:
            legend.append(mark, style=style)
            legend.append(f" {words}  ")
    legend.rstrip()
    lines.append(legend)
    if capacity is not None and cap is None:
        lines.append(
            Text(
                f"  capacity {rps_label(capacity)} is far above the chart (top {number_label(top)})",
                style="dim",
            )
        )
    elif crossing is not None and crossing > last and cross_col is None:
        lines.append(
            Text(f"  reaches capacity {crossing.isoformat()}, past the chart's right edge", style="dim")
        )
    return lines


def _date_axis(first: date, last: date, end: date | None, history: int, width: int) -> Text:
    """First and last day seen under their columns, the projection's last day at the right edge."""
    cells = [" "] * width
    placed: list[tuple[int, int]] = []

    def put(text: str, start: int) -> None:
        start = max(0, min(start, width - len(text)))
        stop = start + len(text)
        if any(start <= b and a <= stop for a, b in placed):
            return
        cells[start:stop] = text
        placed.append((start, stop))

    put(first.isoformat(), 0)
    if end is not None:
        put(end.isoformat(), width - 10)
    if last != first:
        put(last.isoformat(), history - 10)
    return Text("".join(cells).rstrip(), style="dim")


# -- the assessment -------------------------------------------------------------------------------------
