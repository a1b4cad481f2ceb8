"""Run-to-run spread of a repeated spec: the noise floor the gate holds a change against."""

from __future__ import annotations

from statistics import median
from typing import Any

SPREAD_METRICS = {
    "ttft_ms_p50": ("ttft_ms", "p50"),
    "ttft_ms_p95": ("ttft_ms", "p95"),
    "ttft_ms_p99": ("ttft_ms", "p99"),
    "tpot_ms_p50": ("tpot_ms", "p50"),
    "tpot_ms_p95": ("tpot_ms", "p95"),
    "itl_ms_p50": ("itl_ms", "p50"),
    "itl_ms_p95": ("itl_ms", "p95"),
    "e2e_ms_p50": ("e2e_ms", "p50"),
    "e2e_ms_p95": ("e2e_ms", "p95"),
    "requests_per_s": ("requests_per_s", None),
    "output_tokens_per_s": ("output_tokens_per_s", None),
}


def metric_value(metrics: dict[str, Any], name: str) -> float | None:
    key, stat = SPREAD_METRICS[name]
    value = metrics.get(key)
    if stat is not None:
        value = (value or {}).get(stat)
    return float(value) if isinstance(value, (int, float)) else None


def repeat_spread(summaries: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per metric: median, min, max and relative spread (max - min) / median over the runs."""
    spread: dict[str, dict[str, float | None]] = {}
    for name in SPREAD_METRICS:
        values = [v for s in summaries if (v := metric_value(s.get("metrics", {}), name)) is not None]
        if len(values) < 2:
            continue
        mid = median(values)
        spread[name] = {
            "median": mid,
            "min": min(values),
            "max": max(values),
            "relative": (max(values) - min(values)) / mid if mid else None,
        }
    return spread


def noise_floor(spread: dict[str, dict[str, float | None]]) -> dict[str, float]:
    """The gate's view: metric -> relative spread."""
    return {name: s["relative"] for name, s in spread.items() if s.get("relative") is not None}
