"""Charts for the HTML report, drawn with matplotlib (Agg, offline) and returned as inline SVG text.

Each function takes typed results (sweep steps, SLO outcomes, plan tiers), samples or plain numbers and
returns an ``<svg>`` string, or None when there is nothing to draw, so the report can say what is missing
instead of showing an empty frame. Text that came from a server (metric labels, model names) goes through
matplotlib's SVG writer, which escapes it; math parsing is off so a ``$`` in such text is shown, not
interpreted.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from servewise.records import Sample
from servewise.results import SloTargetOutcome, SweepStep, TierRecord, TurnRow
from servewise.results.stage import ForecastRecord, TrafficRecord

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

PALETTE = ("#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2")
SLO_COLOR = "#dc2626"
KNEE_COLOR = "#111827"
BOTTLENECK_FACE = "#fee2e2"

_RC: dict[RcKeyType, Any] = {
    "text.parse_math": False,
    "svg.fonttype": "none",
    "svg.hashsalt": "servewise",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


@contextmanager
def _figure(width: float, height: float, rows: int = 1, cols: int = 1) -> Iterator[tuple[Figure, Any]]:
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
        try:
            yield fig, axes
        finally:
            plt.close(fig)


def _svg(fig: Figure) -> str:
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def latency_vs_load(
    sweep: Sequence[SweepStep], slo_targets: Sequence[SloTargetOutcome], knee_rate: float | None
) -> str | None:
    """TTFT and TPOT percentiles against offered rate; SLO limits as horizontal lines, the knee vertical."""
    steps = sorted(sweep, key=lambda s: s.rate)
    if len(steps) < 2:
        return None
    rates = [s.rate for s in steps]
    with _figure(8.5, 3.4, 1, 2) as (fig, axes):
        for ax, metric, title in zip(axes[0], ("ttft", "tpot"), ("TTFT", "TPOT"), strict=True):
            for color, stat in zip(PALETTE, ("p50", "p95", "p99"), strict=False):
                values = [_finite(s.metrics.distribution(metric).stat(stat)) for s in steps]
                if any(v is not None for v in values):
                    _line(ax, rates, values, color, f"{title} {stat}")
            for target in slo_targets:
                if target.key.startswith(metric + "_"):
                    ax.axhline(
                        target.limit,
                        color=SLO_COLOR,
                        linestyle="--",
                        linewidth=1.2,
                        label=f"SLO {target.key} ≤ {target.limit:g} ms",
                    )
            if knee_rate:
                ax.axvline(
                    knee_rate,
                    color=KNEE_COLOR,
                    linestyle=":",
                    linewidth=1.5,
                    label=f"knee {knee_rate:g} req/s",
                )
            failed = [s.rate for s in steps if not s.slo_met]
            if failed:
                ax.axvspan(min(failed), max(rates), color=SLO_COLOR, alpha=0.06)
            ax.set_title(f"{title} vs offered load")
            ax.set_xlabel("offered rate (req/s)")
            ax.set_ylabel("ms")
            ax.legend(fontsize=7, loc="upper left")
        return _svg(fig)


def _line(
    ax: Any,
    xs: Sequence[float],
    values: Sequence[float | None],
    color: str,
    label: str,
    style: str = "o-",
    **kw: Any,
) -> None:
    """One marked series; an unmeasured point is a gap in the line, not a zero."""
    ax.plot(
        xs,
        [math.nan if v is None else v for v in values],
        style,
        color=color,
        label=label,
        markersize=4,
        **kw,
    )


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def distributions(ttft_ms: Sequence[float], tpot_ms: Sequence[float]) -> str | None:
    """Histograms of per-request TTFT and TPOT with p50 and p99 marked."""
    panels = [
        (name, [v for v in values if math.isfinite(v)])
        for name, values in (("TTFT (ms)", ttft_ms), ("TPOT (ms)", tpot_ms))
    ]
    panels = [(name, values) for name, values in panels if values]
    if not panels:
        return None
    with _figure(4.2 * len(panels), 3.0, 1, len(panels)) as (fig, axes):
        for ax, (name, values), color in zip(axes[0], panels, PALETTE, strict=False):
            ax.hist(values, bins=min(60, max(10, len(values) // 10)), color=color, alpha=0.8)
            ordered = sorted(values)
            for q, style in ((0.5, "-"), (0.99, "--")):
                value = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
                ax.axvline(
                    value,
                    color=KNEE_COLOR,
                    linestyle=style,
                    linewidth=1,
                    label=f"p{int(q * 100)} {value:.1f}",
                )
            ax.set_title(f"{name}, {len(values)} requests")
            ax.set_ylabel("requests")
            ax.legend(fontsize=7)
        return _svg(fig)


def ttft_by_turn(rows: Sequence[TurnRow]) -> str | None:
    """TTFT p50 and p95 at each turn of a conversation, the prompt length it had grown to on a second axis:
    a prefix cache that works keeps TTFT flat while the prompt grows."""
    rows = sorted(rows, key=lambda r: r.turn)
    if len(rows) < 2:
        return None
    turns = [r.turn for r in rows]
    with _figure(8.5, 3.0) as (fig, axes):
        ax = axes[0, 0]
        for color, stat in zip(PALETTE, ("p50", "p95"), strict=False):
            _line(ax, turns, [_finite(getattr(r, f"ttft_ms_{stat}")) for r in rows], color, f"TTFT {stat}")
        ax.set_xlabel("turn")
        ax.set_ylabel("TTFT (ms)")
        ax.set_xticks(turns)
        ax.set_ylim(bottom=0)
        prompt = [_finite(r.mean_input_tokens) for r in rows]
        lines, labels = ax.get_legend_handles_labels()
        if any(v is not None for v in prompt):
            tokens = ax.twinx()
            tokens.grid(False)
            tokens.spines["right"].set_visible(True)
            _line(tokens, turns, prompt, PALETTE[5], "mean prompt tokens", "s--", linewidth=1)
            tokens.set_ylabel("prompt tokens")
            tokens.set_ylim(bottom=0)
            more_lines, more_labels = tokens.get_legend_handles_labels()
            lines, labels = lines + more_lines, labels + more_labels
        ax.legend(lines, labels, fontsize=7, loc="upper left")
        ax.set_title("TTFT by conversation turn")
        return _svg(fig)


# Timeline panels: (title, unit, [(source, name, scale)], diagnosis resources that mark it as the bottleneck).
TIMELINE_PANELS: tuple[tuple[str, str, tuple[tuple[str, str, float], ...], tuple[str, ...]], ...] = (
    (
        "GPU utilization",
        "%",
        (("gpu", "utilization_percent", 1.0), ("dcgm", "utilization_percent", 1.0)),
        ("gpu_compute",),
    ),
    ("GPU memory bandwidth", "%", (("gpu", "memory_utilization_percent", 1.0),), ("gpu_memory_bandwidth",)),
    ("KV cache", "% used", (("metrics", "kv_cache_usage", 100.0),), ("vram_kv", "kv")),
    (
        "Server queue",
        "requests",
        (("metrics", "requests_waiting", 1.0), ("metrics", "requests_running", 1.0)),
        ("admission_queue",),
    ),
    ("Host CPU", "%", (("host", "cpu_percent_total", 1.0), ("process", "cpu_percent", 1.0)), ("server_cpu",)),
    (
        "Disk",
        "MB/s",
        (("host", "disk_read_bytes_per_s", 1e-6), ("host", "disk_write_bytes_per_s", 1e-6)),
        ("disk_io",),
    ),
    (
        "Network",
        "MB/s",
        (("host", "net_rx_bytes_per_s", 1e-6), ("host", "net_tx_bytes_per_s", 1e-6)),
        ("network",),
    ),
    (
        "Load generator",
        "ms",
        (("client", "schedule_lag_ms", 1.0), ("client", "loop_lag_ms", 1.0)),
        ("load_generator",),
    ),
)


def _is_bottleneck(words: Sequence[str], bottleneck: str | None) -> bool:
    if not bottleneck:
        return False
    return any(word in bottleneck.lower() for word in words)


def resource_timelines(samples: Sequence[Sample], bottleneck: str | None = None) -> str | None:
    """One panel per resource that has samples; the bottleneck's panel is shaded and titled as such."""
    series: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for s in samples:
        if math.isfinite(s.value):
            series[(s.source, s.name)][s.t] += s.value  # label sets (interfaces, GPUs) summed per tick
    if not series:
        return None
    start = min(t for points in series.values() for t in points)
    panels = [p for p in TIMELINE_PANELS if any((src, name) in series for src, name, _ in p[2])]
    if not panels:
        return None
    with _figure(8.5, 1.9 * len(panels), len(panels), 1) as (fig, axes):
        for ax, (title, unit, sources, words) in zip(axes[:, 0], panels, strict=True):
            for color, (src, name, scale) in zip(PALETTE, sources, strict=False):
                points = series.get((src, name))
                if points:
                    times = sorted(points)
                    ax.plot(
                        [t - start for t in times],
                        [points[t] * scale for t in times],
                        color=color,
                        linewidth=1.2,
                        label=f"{src} {name}",
                    )
            if _is_bottleneck(words, bottleneck):
                ax.set_facecolor(BOTTLENECK_FACE)
                title = f"{title} — bottleneck ({bottleneck})"
            ax.set_title(
                title, loc="left", fontsize=9, fontweight="bold" if "bottleneck" in title else "normal"
            )
            ax.set_ylabel(unit)
            ax.legend(fontsize=7, loc="upper right")
        axes[-1, 0].set_xlabel("seconds into the run")
        return _svg(fig)


def tier_costs(tiers: Sequence[TierRecord]) -> str | None:
    """$ per 1M output tokens per GPU tier at the SLO-compliant rate; tiers that do not fit are marked."""
    rows = [(t, cost) for t in tiers if (cost := t.cost_per_million_output_tokens) is not None]
    if not rows:
        return None
    rows.sort(key=lambda row: row[1])
    labels = [f"{t.num_gpus}× {t.gpu}" for t, _ in rows]
    with _figure(8.5, 0.45 * len(rows) + 1.2) as (fig, axes):
        ax = axes[0, 0]
        costs = [cost for _, cost in rows]
        colors = [PALETTE[2] if i == 0 else PALETTE[0] for i in range(len(rows))]
        bars = ax.barh(labels, costs, color=colors)
        for bar, cost in zip(bars, costs, strict=True):
            ax.text(
                bar.get_width(), bar.get_y() + bar.get_height() / 2, f" ${cost:.2f}", va="center", fontsize=8
            )
        ax.invert_yaxis()
        ax.set_xlabel("$ per 1M output tokens at the SLO")
        ax.set_title("Cost per serving outcome by tier (cheapest in green)", loc="left")
        return _svg(fig)


def coldstart_runs(startup_s: Sequence[float]) -> str | None:
    """Time to first response of each measured start: the spread is what autoscaling must plan for."""
    values = [float(v) for v in startup_s if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return None
    with _figure(6.0, 2.6) as (fig, axes):
        ax = axes[0, 0]
        ax.bar([str(i + 1) for i in range(len(values))], values, color=PALETTE[3])
        ax.axhline(
            max(values), color=SLO_COLOR, linestyle="--", linewidth=1, label=f"worst {max(values):.1f} s"
        )
        ax.set_xlabel("start")
        ax.set_ylabel("seconds to first response")
        ax.legend(fontsize=7)
        return _svg(fig)


def _iso(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def traffic_forecast(record: TrafficRecord, forecast: ForecastRecord | None) -> str | None:
    """Daily peaks over dates, the fitted trend carried on to the crossing date (or 13 weeks ahead, never past
    a year), capacity and where p95 TTFT doubles as horizontal lines, the crossing as a vertical one."""
    days = [(when, d.peak_rps) for d in record.days if (when := _iso(d.date)) is not None]
    if not days:
        return None
    first, last = days[0][0], days[-1][0]
    crossing = _iso(forecast.crossing_date) if forecast else None
    with _figure(8.5, 3.2) as (fig, axes):
        ax = axes[0, 0]
        ax.plot(
            [d for d, _ in days],
            [p for _, p in days],
            "o-",
            color=PALETTE[0],
            markersize=3,
            linewidth=1,
            label="daily peak",
        )
        level, slope, at = record.trend_level_rps, record.trend_slope_per_day, record.trend_at
        if level is not None and slope is not None and at is not None:
            end = crossing + timedelta(days=7) if crossing and crossing > last else last + timedelta(days=91)
            end = min(end, last + timedelta(days=365))
            span = [first + timedelta(days=k) for k in range((end - first).days + 1)]
            epoch = date(1970, 1, 1)

            def peak(day: date) -> float:
                return level * math.exp(slope * ((day - epoch).days * 86400.0 - at) / 86400.0)

            fitted = [d for d in span if d <= last]
            ahead = [d for d in span if d >= last]
            growth = f" ({math.exp(slope * 7) - 1:+.1%}/week)"
            ax.plot(
                fitted,
                [peak(d) for d in fitted],
                "-",
                color=PALETTE[1],
                linewidth=1.2,
                label="trend" + growth,
            )
            ax.plot(ahead, [peak(d) for d in ahead], "--", color=PALETTE[1], linewidth=1.2, label="projected")
        if forecast is not None:
            ax.axhline(
                forecast.capacity_rps,
                color=SLO_COLOR,
                linewidth=1.2,
                label=f"capacity {forecast.capacity_rps:.3g} req/s ({forecast.replicas}×)",
            )
            if forecast.degrade_rps is not None:
                ax.axhline(
                    forecast.degrade_rps,
                    color=PALETTE[3],
                    linestyle="--",
                    linewidth=1,
                    label=f"p95 TTFT doubles {forecast.degrade_rps:.3g} req/s",
                )
            if crossing is not None:
                ax.axvline(
                    crossing,
                    color=KNEE_COLOR,
                    linestyle=":",
                    linewidth=1.5,
                    label=f"reaches capacity {crossing.isoformat()}",
                )
        ax.set_ylim(bottom=0)
        ax.set_ylabel("peak req/s")
        ax.set_title("Daily peak, its trend and the capacity at the SLO", loc="left")
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.legend(
            fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0)
        )  # beside: the peaks start top left
        return _svg(fig)
