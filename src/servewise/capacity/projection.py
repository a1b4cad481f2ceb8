"""One entry point from a user's question to a tier plan, shared by `servewise plan` and `doctor`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servewise.capacity.calibrate import calibrate, measured_from_run
from servewise.capacity.errors import CapacityError, unknown_name
from servewise.capacity.hardware import builtin_catalog, parse_prices
from servewise.capacity.memory import Deployment, EngineConfig, default_kv_precision, smallest_fitting_tp
from servewise.capacity.models import KV_PRECISIONS, PRECISION_BYTES, get_model
from servewise.capacity.perf import fit_validation, fitted_efficiency
from servewise.capacity.planner import (
    DEFAULT_TIERS,
    PlanRequest,
    PlanResult,
    SloLimit,
    TierSpec,
    parse_tiers,
    plan,
)
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
    engine: EngineConfig | None = None,
    measured: tuple[RunResult | None, dict[str, Any], str] | None = None,
    current_gpu: str | None = None,
) -> PlanResult:
    """Plan the tiers; with ``measured`` = (result, spec, run id) calibrate on that run first."""
    engine = engine or EngineConfig()
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
    notes: list[str | None] = [f"efficiency: {efficiency.source}"]  # accuracy_note may be None
    if measured is not None:
        if not current_gpu:
            raise CapacityError("calibrating on a run needs --current-gpu (the GPU the run was measured on)")
        result_measured, spec, run_id = measured
        run = measured_from_run(result_measured, spec)
        gpu = catalog.get(current_gpu)
        context = round(run.input_tokens + run.output_tokens)
        n = smallest_fitting_tp(arch, gpu, weights, kv, context, engine) or 1
        calibration = calibrate(Deployment(arch, gpu, n, weights, kv), efficiency, engine, run)
        efficiency = calibration.efficiency
        notes = [f"run {run_id}: {calibration.describe()}"]
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
    )
    result = plan(request, catalog)
    if measured is None:
        notes.append(accuracy_note(fit_validation(), any(t.fits and t.num_gpus > 1 for t in result.tiers)))
    result.notes.extend(note for note in notes if note)
    return result


def accuracy_note(validation: dict[str, Any] | None, multi_gpu: bool) -> str | None:
    """How far to trust the projection, in the words of the out-of-sample check."""
    if validation is None:
        return None
    one = validation["one_gpu"]
    text = (f"accuracy on {validation['provenance']['rows']} published rows never fitted on: one GPU "
            f"{one['mape_pct']:g}% mean error (median {one['median_error_pct']:+g}%)")
    if multi_gpu:
        multi = validation["multi_gpu"]
        text += (f"; tensor-parallel {multi['mape_pct']:g}% (median {multi['median_error_pct']:+g}%: "
                 f"{'optimistic' if multi['median_error_pct'] > 0 else 'pessimistic'})")
    return text + "; --from-run calibrates on your own measurement"
