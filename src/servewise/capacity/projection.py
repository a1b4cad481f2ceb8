"""One entry point from a user's question to a tier plan, shared by `servewise plan` and `doctor`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servewise.capacity.accuracy import accuracy_note, stored_validation
from servewise.capacity.calibrate import (
    MeasuredHitSource,
    MeasuredRun,
    PrefixHitSource,
    calibrate,
    measured_from_run,
)
from servewise.capacity.engines import EngineSettings, engine_profile
from servewise.capacity.errors import CapacityError, unknown_name
from servewise.capacity.hardware import builtin_catalog, parse_prices
from servewise.capacity.memory import Deployment, default_kv_precision, smallest_fitting_tp
from servewise.capacity.models import KV_PRECISIONS, PRECISION_BYTES, get_model
from servewise.capacity.perf import fitted_efficiency
from servewise.capacity.planner import (
    DEFAULT_TIERS,
    PlanRequest,
    PlanResult,
    SloLimit,
    TierSpec,
    parse_tiers,
    plan,
)
from servewise.capacity.speculative import Speculation
from servewise.results import RunResult
from servewise.spec.models import SloSpec


def slo_limits(slo: SloSpec) -> tuple[SloLimit, ...]:
    """The latency targets a projection can honour; error-rate targets do not constrain capacity."""
    limits = []
    for target in slo.targets:
        if target.metric not in ("ttft", "tpot", "itl", "e2e"):
            continue
        if target.stat not in ("p50", "p90", "p95", "p99", "mean", "max"):
            raise CapacityError(f"--slo: the planner projects p50/p90/p95/p99/mean/max, not {target.stat}")
        limits.append(SloLimit(target.metric, target.stat, target.limit))
    return tuple(limits)


def project(
    *,
    model: str,
    precision: str = "bf16",
    kv_precision: str | None = None,
    input_tokens: int = 1000,
    output_tokens: int = 1000,
    concurrency: int | None = None,
    rate: float | None = None,
    demand: float | None = None,
    slo: tuple[SloLimit, ...] = (),
    gpus: str = ",".join(DEFAULT_TIERS),
    prices: Sequence[str] = (),
    hardware_file: Path | None = None,
    engine: EngineSettings | None = None,
    measured: tuple[RunResult | None, dict[str, Any], str] | None = None,
    current_gpu: str | None = None,
    prefix_hit: float | None = None,
    speculation: Speculation | None = None,
) -> PlanResult:
    """Plan the tiers; with ``measured`` = (result, spec, run id) calibrate on that run first.

    ``prefix_hit``: the share of every prompt served from the prefix cache (prefill is discounted by it);
    None: 0, or with ``measured`` the run's own measured rate. The calibration always replays the run at
    the rate it was measured at."""
    engine = engine or EngineSettings(engine_profile())
    catalog = builtin_catalog()
    if hardware_file:
        catalog = catalog.with_file(hardware_file)
    if prices:
        catalog = catalog.with_prices(parse_prices(list(prices)))
    arch = get_model(model)
    weights = precision.lower()
    if weights not in PRECISION_BYTES:
        raise unknown_name("precision", precision, PRECISION_BYTES)
    kv = (kv_precision or default_kv_precision(weights)).lower()
    if kv not in KV_PRECISIONS:
        raise unknown_name("KV-cache precision", kv, KV_PRECISIONS)
    tiers = parse_tiers(gpus)
    for tier in tiers:
        catalog.get(tier.gpu)
    efficiency = fitted_efficiency()
    notes: list[str | None] = [f"engine: {engine.profile.label} ({engine.profile.summary})",
                               f"efficiency: {efficiency.source}"]  # accuracy_note may be None
    hit = prefix_hit if prefix_hit is not None else 0.0
    source: PrefixHitSource | None = "flag" if prefix_hit is not None else None
    run: MeasuredRun | None = None
    run_id: str | None = None
    widen = 0.0
    if measured is not None:
        if not current_gpu:
            raise CapacityError("calibrating on a run needs --current-gpu (the GPU the run was measured on)")
        result_measured, spec, run_id = measured
        run = measured_from_run(result_measured, spec)
        gpu = catalog.get(current_gpu)
        context = round(run.input_tokens + run.output_tokens)
        config = engine.on(gpu)
        n = smallest_fitting_tp(arch, gpu, weights, kv, context, config) or 1
        calibration = calibrate(Deployment(arch, gpu, n, weights, kv), efficiency, config, run)
        efficiency = calibration.efficiency
        notes[1] = f"run {run_id}: {calibration.describe()}"
        widen = calibration.residual_pct
        if prefix_hit is None:
            hit, source = run.prefix_hit, run.prefix_hit_source
        if all(catalog.get(t.gpu).name != gpu.name for t in tiers):
            tiers = (TierSpec(gpu.name, n), *tiers)
    request = PlanRequest(
        model=arch,
        weight_precision=weights,
        kv_precision=kv,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        tiers=tiers,
        concurrency=concurrency,
        rate=rate,
        demand=demand,
        slo=slo,
        efficiency=efficiency,
        engine=engine,
        current_gpu=catalog.get(current_gpu).name if current_gpu else None,
        prefix_hit=hit,
        speculation=speculation,
    )
    result = plan(request, catalog)
    result.prefix_hit_source = source
    latency = concurrency is not None or rate is not None or demand is not None or bool(slo)
    multi_gpu = any(t.fits and t.num_gpus > 1 for t in result.tiers)
    one_gpu = any(t.fits and t.num_gpus == 1 for t in result.tiers)
    notes.append(accuracy_note(stored_validation(), engine.profile.name, multi_gpu, latency, widen, one_gpu))
    notes.append(_prefix_note(hit, prefix_hit is not None, run, run_id))
    if speculation is not None:
        notes.append(f"{speculation.describe(arch)}; the acceptance length is yours (it depends on the data and "
                     "the draft), the draft's memory is not reserved")
    result.notes.extend(note for note in notes if note)
    return result


_SOURCE_WORDS: dict[MeasuredHitSource, str] = {
    "engine": "the engine's own prefix-cache counter",
    "cached_tokens": "the server's cached-token ratio (usage.prompt_tokens_details.cached_tokens)",
    "theoretical": "the workload's theoretical hit rate (no engine or server count)",
}


def _prefix_note(hit: float, flag: bool, run: MeasuredRun | None, run_id: str | None) -> str | None:
    """Which prefix hit rate the projection used, where it came from, and what it discounts; None when
    neither --prefix-hit nor a run gave one (a cold cache, as before)."""
    effect = "prefill and TTFT discounted by it; KV memory per sequence is not (cached blocks stay in the cache)"
    given = f"prefix cache: {hit:.0%} of every prompt's tokens served from cache (--prefix-hit); {effect}"
    if run is None:
        return given if flag else None
    if run.prefix_hit_source is None:
        cold = f"run {run_id} recorded no prefix hit rate"
        return (f"{given}; {cold}, so it was calibrated as a cold cache" if flag
                else f"prefix cache: {cold}; projected as a cold cache (give --prefix-hit for a warm one)")
    measured = f"{run.prefix_hit:.0%} from {_SOURCE_WORDS[run.prefix_hit_source]}"
    replay = f"the calibration replayed the run's own prefill at its measured {run.prefix_hit:.0%}"
    if flag:
        return f"{given} instead of run {run_id}'s measured {measured}; {replay}"
    if not hit:
        return f"prefix cache: {measured}, measured on run {run_id}; projected as a cold cache"
    return f"prefix cache: {measured}, measured on run {run_id}; {effect}, and {replay}"
