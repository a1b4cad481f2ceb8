"""Run-to-run spread of a repeated spec: the noise floor the gate holds a change against."""

from __future__ import annotations

from collections.abc import Callable
from statistics import median

from servewise.results import Metrics, RunResult

SPREAD_METRICS: dict[str, Callable[[Metrics], float | None]] = {
    "ttft_ms_p50": lambda m: m.ttft_ms.p50,
    "ttft_ms_p95": lambda m: m.ttft_ms.p95,
    "ttft_ms_p99": lambda m: m.ttft_ms.p99,
    "tpot_ms_p50": lambda m: m.tpot_ms.p50,
    "tpot_ms_p95": lambda m: m.tpot_ms.p95,
    "itl_ms_p50": lambda m: m.itl_ms.p50,
    "itl_ms_p95": lambda m: m.itl_ms.p95,
    "e2e_ms_p50": lambda m: m.e2e_ms.p50,
    "e2e_ms_p95": lambda m: m.e2e_ms.p95,
    "requests_per_s": lambda m: m.requests_per_s,
    "output_tokens_per_s": lambda m: m.output_tokens_per_s,
}


def repeat_spread(results: list[RunResult]) -> dict[str, dict[str, float | None]]:
    """Per metric: median, min, max and relative spread (max - min) / median over the runs."""
    spread: dict[str, dict[str, float | None]] = {}
    for name, read in SPREAD_METRICS.items():
        values = [float(v) for r in results if (v := read(r.metrics)) is not None]
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
    return {name: rel for name, s in spread.items() if (rel := s.get("relative")) is not None}
