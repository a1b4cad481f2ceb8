"""Calibrate the performance model on a run the user measured (``servewise plan --from-run``).

Two factors move the published fit to this team's engine, drivers and settings: a decode factor on the
constants a decode step spends its time on (memory bandwidth, overheads) and a prefill factor on dense
compute. The simulator, fed the run's workload and load, is solved for both so it reproduces the run's
median TPOT (decode, plus the prompt chunks that share its steps) and median TTFT (prefill, plus the
decodes it queues behind): one factor for both on TPOT first, then prefill on TTFT and decode on TPOT in
turn, each a bracketed root in log space within ``FACTOR_BOUNDS``. Without a TTFT (or where the run's
TTFT barely depends on prefill compute) prefill follows the decode factor; without a TPOT, decode is
fitted on output tokens/s instead.

A run is refused (``CapacityError``) rather than calibrated on when it cannot be trusted: its load
generator fell behind, most of its requests failed, no plausible factor reproduces it, or the fitted
simulator still misses it (``MAX_TPOT_RESIDUAL``, ``MAX_TTFT_RESIDUAL``).

A run measured with a warm prefix cache prefilled only the uncached share of its prompts; the simulator
replays it with the same discount (the run's measured hit rate), so a warm cache does not read as a GPU
that is faster at prefill than it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Literal

import numpy as np

from servewise.capacity.errors import CapacityError
from servewise.capacity.memory import Deployment, EngineConfig, memory_plan
from servewise.capacity.perf import Efficiency, StepModel
from servewise.capacity.simulator import poisson_arrivals, simulate, simulate_users
from servewise.results import RunResult

MeasuredHitSource = Literal["engine", "cached_tokens", "theoretical"]
PrefixHitSource = Literal["flag", MeasuredHitSource]
#: A measured rate is capped here: an engine always computes at least a prompt's last token.
MAX_MEASURED_PREFIX_HIT = 0.99

#: The plausible range of either factor: a run that needs one outside it is refused, not clamped.
FACTOR_BOUNDS = (0.02, 5.0)
#: After fitting, the simulator may miss the run's median TPOT by this share, its TTFT by this one.
MAX_TPOT_RESIDUAL = 0.25
MAX_TTFT_RESIDUAL = 0.5
#: A run with a larger share of failed requests, or fewer successful ones, is not calibrated on.
MAX_FAILED_SHARE = 0.5
MIN_OK_REQUESTS = 10
#: Below this |d log TTFT / d log prefill factor| the run's TTFT says too little about prefill (short
#: prompts: a step's time is the weight read), so prefill follows decode.
MIN_PREFILL_SENSITIVITY = 0.1
#: The solver: stop below this |log(simulated / measured)|; at most this many bracket steps, and rounds of
#: prefill-then-decode; the step (log factor) that probes whether TTFT follows prefill.
_TOLERANCE = 0.002
_MAX_ITERATIONS = 12
_ROUNDS = 4
_PROBE = 0.05
_FLAT_TTFT = "the run's TTFT barely depends on prefill compute"
_LOG_BOUNDS = (math.log(FACTOR_BOUNDS[0]), math.log(FACTOR_BOUNDS[1]))

Metric = Literal["ttft", "tpot", "throughput"]
_METRIC_WORDS: dict[Metric, str] = {"ttft": "TTFT p50", "tpot": "TPOT p50", "throughput": "output tokens/s"}
_UNITS: dict[Metric, str] = {"ttft": "ms", "tpot": "ms", "throughput": "tok/s"}


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
    ttft_ms_p50: float | None = None
    #: requests that succeeded and failed (None: the run did not count them)
    requests_ok: int | None = None
    requests_failed: int = 0
    #: why the load generator fell behind its schedule (None: it kept up)
    client_limited: str | None = None


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
    concurrency = metrics.concurrency_mean or load.get("concurrency")
    rate = load.get("rate") if load.get("kind") in ("constant", "poisson", "gamma") else None
    if load.get("kind") == "concurrency":
        concurrency = load.get("concurrency") or concurrency
    if rate is None and not concurrency:
        raise CapacityError("the run records neither its concurrency nor its request rate")
    hit, source = measured_prefix_hit(result)
    # a summary without request counts (written by hand or imported) still says how many it timed
    ok = metrics.requests_ok if metrics.requests_total else max(metrics.ttft_ms.count, metrics.tpot_ms.count)
    limited = (result.client.reason or "its schedule lag was flagged") if result.client.limited else None
    return MeasuredRun(
        input_tokens=float(inputs),
        output_tokens=float(outputs),
        tpot_ms_p50=metrics.tpot_ms.p50,
        output_tokens_per_s=metrics.output_tokens_per_s,
        concurrency=float(concurrency) if concurrency else None,
        rate=float(rate) if rate else None,
        prefix_hit=hit,
        prefix_hit_source=source,
        ttft_ms_p50=metrics.ttft_ms.p50,
        requests_ok=ok,
        requests_failed=metrics.requests_failed,
        client_limited=limited,
    )


@dataclass(frozen=True, slots=True)
class Medians:
    """A run's median TTFT and TPOT (ms) and its output tokens/s, measured or simulated (None: not measured)."""

    ttft_ms: float | None
    tpot_ms: float | None
    output_tokens_per_s: float | None

    def of(self, metric: Metric) -> float | None:
        if metric == "ttft":
            return self.ttft_ms
        return self.tpot_ms if metric == "tpot" else self.output_tokens_per_s


@dataclass(frozen=True, slots=True)
class Calibration:
    """How far the published fit was moved to reproduce a measured run, and how close it then came."""

    efficiency: Efficiency
    decode_factor: float
    prefill_factor: float
    #: what the factors were solved on; with one metric, prefill follows decode, for ``tied_because``
    fitted_on: tuple[Metric, ...]
    tied_because: str | None
    measured: Medians
    #: the simulator's medians on the run's load with the published fit, and with the calibrated one
    predicted_before: Medians
    predicted_after: Medians

    @property
    def compared(self) -> tuple[Metric, ...]:
        """The medians the calibrated simulator is judged on: TTFT and TPOT, or tokens/s for a run without TPOT."""
        return ("ttft", "tpot") if self.measured.tpot_ms is not None else ("ttft", "throughput")

    @property
    def factor(self) -> float:
        """One number for the whole stack against the published fit: the two factors' geometric mean."""
        return math.sqrt(self.decode_factor * self.prefill_factor)

    def residual(self, metric: Metric) -> float | None:
        """Simulated / measured - 1 after calibrating (signed; None where the run did not measure it)."""
        measured, after = self.measured.of(metric), self.predicted_after.of(metric)
        return after / measured - 1.0 if measured and after is not None else None

    @property
    def ttft_residual(self) -> float | None:
        return self.residual("ttft")

    @property
    def tpot_residual(self) -> float | None:
        return self.residual("tpot")

    @property
    def residual_pct(self) -> float:
        """The worst |residual| in percent over the medians compared: how much wider the projection's error
        band is than the fit's."""
        return max(
            (100.0 * abs(r) for m in self.compared if (r := self.residual(m)) is not None), default=0.0
        )

    def describe(self) -> str:
        if self.tied_because is None:
            factors = (
                f"decode x{self.decode_factor:.3f}, prefill x{self.prefill_factor:.3f} of the published fit"
            )
        else:
            factors = f"efficiency x{self.decode_factor:.3f} of the published fit, prefill with it ({self.tied_because})"
        parts = []
        for metric in self.compared:
            measured, before = self.measured.of(metric), self.predicted_before.of(metric)
            after, residual = self.predicted_after.of(metric), self.residual(metric)
            if measured is None or after is None or before is None or residual is None:
                continue
            unit = _UNITS[metric]
            parts.append(
                f"{_METRIC_WORDS[metric]} measured {measured:.4g} {unit}, calibrated {after:.4g} "
                f"({100 * residual:+.1f}%), published fit {before:.4g}"
            )
        fitted = " and ".join(_METRIC_WORDS[m] for m in self.fitted_on)
        return f"calibrated on the run's {fitted}: {factors}; " + "; ".join(parts)


def _simulate(
    dep: Deployment, eff: Efficiency, engine: EngineConfig, run: MeasuredRun, requests: int
) -> Medians:
    ins = np.full(requests, round(run.input_tokens))
    outs = np.full(requests, max(2, round(run.output_tokens)))
    kv = memory_plan(dep, int(ins[0] + outs[0]), engine).kv_capacity_tokens
    step = StepModel(dep, eff, run.prefix_hit)  # the run's own prefill, discounted by its own cache
    if run.rate is not None:
        result = simulate(step, kv, engine, ins, outs, arrivals=poisson_arrivals(requests, run.rate, 1))
    else:
        result = simulate_users(step, kv, engine, ins, outs, max(1, round(run.concurrency or 1)))
    summary = result.summary(0.2)
    return Medians(summary["ttft_ms"]["p50"], summary["tpot_ms"]["p50"], summary["output_tokens_per_s"])


def _check_run(run: MeasuredRun) -> None:
    """Refuse a run whose numbers do not describe the server: a client that fell behind, mostly errors."""
    if run.client_limited:
        raise CapacityError(
            f"the run is client-limited (the load generator fell behind its schedule: "
            f"{run.client_limited}), so its latencies are the client's, not the server's; "
            "re-run the bench with more --workers or a lower load, then calibrate on that run"
        )
    if run.requests_ok is None:
        return
    total = run.requests_ok + run.requests_failed
    if run.requests_failed > MAX_FAILED_SHARE * total:
        raise CapacityError(
            f"{run.requests_failed} of the run's {total} requests failed (more than "
            f"{MAX_FAILED_SHARE:.0%}), so its latencies are not the server's at that load; fix the "
            "errors `servewise report` lists for it and re-run the bench"
        )
    if run.requests_ok < MIN_OK_REQUESTS:
        raise CapacityError(
            f"the run has only {run.requests_ok} successful requests, too few for its medians "
            f"(calibrating needs at least {MIN_OK_REQUESTS}); re-run the bench longer "
            "(--duration or --requests)"
        )


def _root(gap: Callable[[float], float], x: float, rising: bool) -> tuple[float, float]:
    """Solve gap(x) = 0 for a monotone gap of a log factor, from ``x``, within ``_LOG_BOUNDS`` (``rising``:
    gap grows with x). The simulator is a step function with flat stretches and kinks (a step is the max of
    its rooflines), so: secant steps until the sign changes, then regula falsi (Illinois) inside the
    bracket. Returns the root and its gap, or the bound and the gap there when the sign holds up to it."""
    low, high = _LOG_BOUNDS
    fx = gap(x)
    slope = 1.0 if rising else -1.0  # a latency goes as 1/factor, a throughput as the factor, before a probe
    while abs(fx) >= _TOLERANCE:
        up = (fx < 0) == rising
        if (up and x >= high) or (not up and x <= low):
            return x, fx
        step = min(max(abs(fx / slope), _PROBE), high - low)  # the secant's step: at least a probe's
        y = min(x + step, high) if up else max(x - step, low)
        fy = gap(y)
        if (fy > 0) != (fx > 0):
            return _illinois(gap, x, fx, y, fy)
        slope = (fy - fx) / (y - x) if fy != fx else slope / 4  # flat here: the next step goes 4x further
        x, fx = y, fy
    return x, fx


def _illinois(gap: Callable[[float], float], a: float, fa: float, b: float, fb: float) -> tuple[float, float]:
    """Regula falsi on a bracket [a, b] whose ends' gaps differ in sign; the Illinois rule halves a stuck
    end's weight so a kinked gap still converges."""
    side = 0
    for _ in range(_MAX_ITERATIONS):
        c = b - fb * (b - a) / (fb - fa)
        fc = gap(c)
        if abs(fc) < _TOLERANCE or abs(b - a) < _TOLERANCE:
            return c, fc
        if (fc > 0) == (fb > 0):
            b, fb = c, fc
            fa = fa / 2 if side == -1 else fa
            side = -1
        else:
            a, fa = c, fc
            fb = fb / 2 if side == 1 else fb
            side = 1
    return (a, fa) if abs(fa) < abs(fb) else (b, fb)


def _absurd(metric: Metric, factor: str, measured: float, before: float, dep: Deployment) -> CapacityError:
    ratio = measured / before if metric != "throughput" else before / measured
    pace = f"{ratio:.3g} times slower" if ratio > 1 else f"{1 / ratio:.3g} times faster"
    low, high = FACTOR_BOUNDS
    unit = _UNITS[metric]
    return CapacityError(
        f"the run's {_METRIC_WORDS[metric]} ({measured:.4g} {unit}) is {pace} than the published "
        f"fit predicts for {dep.model.name} on {dep.num_gpus}x {dep.gpu.name} ({before:.4g} {unit}), "
        f"beyond any plausible {factor} efficiency (x{low:g} to x{high:g}); check --current-gpu / "
        "--precision (the GPU and weights the run was measured on)"
    )


def calibrate(
    dep: Deployment, base: Efficiency, engine: EngineConfig, run: MeasuredRun, requests: int = 400
) -> Calibration:
    """Solve the decode and prefill factors so the simulator, replaying the run, reproduces its medians;
    CapacityError for a run that cannot be trusted or a fit that still misses it."""
    _check_run(run)
    if not memory_plan(dep, round(run.input_tokens + run.output_tokens), engine).fits:
        raise CapacityError(
            f"{dep.model.name} does not fit {dep.gpu.name} for this run's lengths; "
            "check --current-gpu and --precision"
        )
    measured = Medians(
        _positive(run.ttft_ms_p50), _positive(run.tpot_ms_p50), _positive(run.output_tokens_per_s)
    )
    if measured.tpot_ms is None and measured.output_tokens_per_s is None:
        raise CapacityError("the run has neither a TPOT median nor an output token rate to calibrate on")
    if measured.tpot_ms is None and run.rate is not None:
        raise CapacityError(
            f"the run measured no TPOT and its output tokens/s is its offered load "
            f"({run.rate:g} req/s), whatever the GPU's speed; calibrate on a streaming run "
            "(TPOT) or one at a fixed --concurrency"
        )

    @cache
    def at(decode: float, prefill: float) -> Medians:
        return _simulate(dep, base.split(decode, prefill, "calibrating"), engine, run, requests)

    def gap(metric: Metric, x: float, y: float) -> float:
        """log(simulated / measured) at log factors x (decode) and y (prefill)."""
        return math.log(_known(at(math.exp(x), math.exp(y)).of(metric)) / _known(measured.of(metric)))

    def pinned(v: float, residual: float) -> bool:
        return abs(residual) >= _TOLERANCE and v in _LOG_BOUNDS

    def prefill_moves_ttft(x: float, y: float) -> bool:
        """Does TTFT follow the prefill factor here, on either side (a kink counts)?"""
        probes = (max(y - _PROBE, _LOG_BOUNDS[0]), min(y + _PROBE, _LOG_BOUNDS[1]))
        here = gap("ttft", x, y)
        return max(abs(gap("ttft", x, v) - here) / _PROBE for v in probes) >= MIN_PREFILL_SENSITIVITY

    before = at(1.0, 1.0)
    # decode is fitted on TPOT, or on tokens/s for a run without TPOT; first with prefill following it
    first: Metric = "tpot" if measured.tpot_ms is not None else "throughput"
    x, residual = _root(lambda v: gap(first, v, v), 0.0, rising=first == "throughput")
    if pinned(x, residual):
        raise _absurd(first, "decode", _known(measured.of(first)), _known(before.of(first)), dep)
    y = x
    fitted_on: tuple[Metric, ...] = (first,)
    tied: str | None = "the run has no TTFT"
    if measured.ttft_ms is not None:
        fitted_on, tied = (first, "ttft"), None
        tied_x = x
        # then prefill on TTFT and decode on TPOT in turn: TPOT is mostly decode, TTFT prefill plus decodes
        for _ in range(_ROUNDS):
            if abs(gap("ttft", x, y)) < _TOLERANCE and abs(gap(first, x, y)) < _TOLERANCE:
                break
            y, residual = _root(partial(gap, "ttft", x), y, rising=False)
            if pinned(y, residual):
                if y == _LOG_BOUNDS[1] and not prefill_moves_ttft(x, y):
                    tied, x, y = _FLAT_TTFT, tied_x, tied_x  # TTFT sits on the decode floor: prefill unknown
                    fitted_on = (first,)
                    break
                raise _absurd("ttft", "prefill", _known(measured.ttft_ms), _known(before.ttft_ms), dep)
            x, residual = _root(partial(gap, first, y=y), x, rising=first == "throughput")
            if pinned(x, residual):
                raise _absurd(first, "decode", _known(measured.of(first)), _known(before.of(first)), dep)
        if x == y == tied_x and tied is None and not prefill_moves_ttft(x, y):
            fitted_on, tied = (first,), _FLAT_TTFT
    decode, prefill = math.exp(x), math.exp(y)
    source = (
        f"{base.source}, calibrated decode x{decode:.3f}, prefill x{prefill:.3f} on a measured run on "
        f"{dep.gpu.name}"
    )
    calibration = Calibration(
        efficiency=base.split(decode, prefill, source),
        decode_factor=decode,
        prefill_factor=prefill,
        fitted_on=fitted_on,
        tied_because=tied,
        measured=measured,
        predicted_before=before,
        predicted_after=at(decode, prefill),
    )
    _check_fit(calibration)
    return calibration


def _positive(value: float | None) -> float | None:
    """A measured median, or None where the run has none (or a zero, NaN or negative one)."""
    return value if value is not None and value > 0 and math.isfinite(value) else None


def _known(value: float | None) -> float:
    assert value is not None, "a median the fit needs is missing"
    return value


def _check_fit(calibration: Calibration) -> None:
    """Refuse a calibration whose simulator still misses the run: its projections would not be the run's."""
    limits: dict[Metric, float] = {
        "ttft": MAX_TTFT_RESIDUAL,
        "tpot": MAX_TPOT_RESIDUAL,
        "throughput": MAX_TPOT_RESIDUAL,
    }
    for metric in calibration.compared:
        residual, limit = calibration.residual(metric), limits[metric]
        if residual is None or abs(residual) <= limit:
            continue
        measured, simulated = calibration.measured.of(metric), calibration.predicted_after.of(metric)
        tied = f"; prefill follows decode, as {calibration.tied_because}" if calibration.tied_because else ""
        raise CapacityError(
            f"the calibrated simulator still misses the run's {_METRIC_WORDS[metric]} by {100 * residual:+.0f}% "
            f"(measured {measured:.4g}, simulated {simulated:.4g} {_UNITS[metric]}; at most ±{limit:.0%} is "
            f"trusted{tied}), so projections would not be this run's: the lengths or load it recorded may not "
            "be what it served (variable lengths, an uncounted warm cache, a growing queue); re-run the bench "
            "with fixed --input-tokens/--output-tokens at a load the server keeps up with, or plan without --from-run"
        )
