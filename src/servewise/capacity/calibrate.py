"""Calibrate the performance model on a run the user measured (``servewise plan --from-run``).

One factor scales every efficiency (bandwidth, compute, overheads inverse): the measured run tells how
far this team's engine, drivers and settings sit from the published fit. The factor is chosen so the
simulator, fed the run's workload and load, reproduces the run's median TPOT (decode speed, the
quantity a GPU tier changes most directly); without TPOT, its output tokens/s.

A run measured with a warm prefix cache prefilled only the uncached share of its prompts; the simulator
replays it with the same discount (the run's measured hit rate), so a warm cache does not read as a GPU
that is faster at prefill than it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from servewise.capacity.errors import CapacityError
from servewise.capacity.memory import Deployment, EngineConfig, memory_plan
from servewise.capacity.perf import Efficiency, StepModel
from servewise.capacity.simulator import poisson_arrivals, simulate
from servewise.results import RunResult

MeasuredHitSource = Literal["engine", "cached_tokens", "theoretical"]
PrefixHitSource = Literal["flag", MeasuredHitSource]
#: A measured rate is capped here: an engine always computes at least a prompt's last token.
MAX_MEASURED_PREFIX_HIT = 0.99


@dataclass(frozen=True, slots=True)
class MeasuredRun:
    """What calibration needs from a stored run (its summary and spec)."""

    input_tokens: float
    output_tokens: float
    tpot_ms_p50: float | None
    output_tokens_per_s: float | None
    concurrency: float | None = None
    rate: float | None = None
    #: the share of prompt tokens the run's engine served from its prefix cache, and which measurement
    #: said so (None: the run recorded none, read as a cold cache)
    prefix_hit: float = 0.0
    prefix_hit_source: MeasuredHitSource | None = None


def measured_prefix_hit(result: RunResult) -> tuple[float, MeasuredHitSource | None]:
    """The run's prefix-cache hit rate: the engine's own counter first, then the share of prompt tokens
    the server reported as cached, then what the workload could have reused; (0, None) when the run
    recorded none (every run stored before release 0.2)."""
    cache = result.metrics.cache
    if cache is None:
        return 0.0, None
    candidates: tuple[tuple[float | None, MeasuredHitSource], ...] = (
        (cache.engine_hit_rate, "engine"),
        (cache.cached_tokens_ratio, "cached_tokens"),
        (cache.theoretical_hit_rate, "theoretical"),
    )
    for value, source in candidates:
        if value is not None and math.isfinite(value):
            return min(max(value, 0.0), MAX_MEASURED_PREFIX_HIT), source
    return 0.0, None


def _length_mean(length: dict[str, Any] | None) -> float | None:
    if not length:
        return None
    kind = length.get("kind", "fixed")
    if kind == "fixed":
        return length.get("value")
    if kind == "uniform":
        return (length["low"] + length["high"]) / 2
    if kind == "empirical":
        return float(np.mean(length["values"]))
    return length.get("mean")


def measured_from_run(result: RunResult | None, spec: dict[str, Any]) -> MeasuredRun:
    """Read a bench run's result (and its RunSpec dict for lengths and load)."""
    if result is None:
        raise CapacityError("the run has no summary metrics (did it finish?)")
    metrics = result.metrics
    workload = spec.get("workload") or {}
    load = spec.get("load") or {}
    inputs = metrics.mean_input_tokens or _length_mean(workload.get("input_tokens"))
    outputs = metrics.mean_output_tokens or _length_mean(workload.get("output_tokens"))
    if not inputs or not outputs:
        raise CapacityError("the run records no input/output lengths to calibrate on")
    tpot = metrics.tpot_ms.p50
    concurrency = metrics.concurrency_mean or load.get("concurrency")
    rate = load.get("rate") if load.get("kind") in ("constant", "poisson", "gamma") else None
    if load.get("kind") == "concurrency":
        concurrency = load.get("concurrency") or concurrency
    if rate is None and not concurrency:
        raise CapacityError("the run records neither its concurrency nor its request rate")
    hit, source = measured_prefix_hit(result)
    return MeasuredRun(float(inputs), float(outputs), tpot, metrics.output_tokens_per_s,
                       float(concurrency) if concurrency else None, float(rate) if rate else None, hit, source)


@dataclass(frozen=True, slots=True)
class Calibration:
    factor: float
    efficiency: Efficiency
    predicted_before: float
    measured: float
    metric: str

    def describe(self) -> str:
        unit = "ms" if self.metric == "tpot_ms_p50" else "tok/s"
        return (f"calibrated on the run: measured {self.metric} {self.measured:.4g} {unit}, the published fit "
                f"predicted {self.predicted_before:.4g} {unit}; efficiency x{self.factor:.3f}")


def _predict(dep: Deployment, eff: Efficiency, engine: EngineConfig, run: MeasuredRun, metric: str,
             requests: int) -> float:
    ins = np.full(requests, round(run.input_tokens))
    outs = np.full(requests, max(2, round(run.output_tokens)))
    kv = memory_plan(dep, int(ins[0] + outs[0]), engine).kv_capacity_tokens
    step = StepModel(dep, eff, run.prefix_hit)  # the run's own prefill, discounted by its own cache
    if run.rate is not None:
        result = simulate(step, kv, engine, ins, outs, arrivals=poisson_arrivals(requests, run.rate, 1))
    else:
        result = simulate(step, kv, engine, ins, outs, concurrency=max(1, round(run.concurrency or 1)))
    summary = result.summary(0.2)
    return summary["tpot_ms"]["p50"] if metric == "tpot_ms_p50" else summary["output_tokens_per_s"]


def calibrate(dep: Deployment, base: Efficiency, engine: EngineConfig, run: MeasuredRun,
              requests: int = 400) -> Calibration:
    """Bisect the efficiency factor (log scale, 0.02..5) until the simulator matches the run."""
    if not memory_plan(dep, round(run.input_tokens + run.output_tokens), engine).fits:
        raise CapacityError(f"{dep.model.name} does not fit {dep.gpu.name} for this run's lengths; "
                            "check --current-gpu and --precision")
    metric = "tpot_ms_p50" if run.tpot_ms_p50 else "output_tokens_per_s"
    target = run.tpot_ms_p50 if run.tpot_ms_p50 else run.output_tokens_per_s
    if not target or target <= 0:
        raise CapacityError("the run has neither a TPOT median nor an output token rate to calibrate on")
    faster_is_lower = metric == "tpot_ms_p50"
    before = _predict(dep, base, engine, run, metric, requests)
    low, high = math.log(0.02), math.log(5.0)
    for _ in range(18):
        mid = (low + high) / 2
        value = _predict(dep, base.scaled(math.exp(mid), "calibrating"), engine, run, metric, requests)
        too_slow = value > target if faster_is_lower else value < target
        low, high = (mid, high) if too_slow else (low, mid)
    factor = math.exp((low + high) / 2)
    source = f"{base.source}, calibrated x{factor:.3f} on a measured run on {dep.gpu.name}"
    return Calibration(factor, base.scaled(factor, source), before, float(target), metric)
