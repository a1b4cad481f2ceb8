"""plan as a use case: project GPU tiers for a model and workload, calibrated on a stored run when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servewise.capacity import PlanResult
from servewise.capacity.hardware import builtin_catalog, parse_prices
from servewise.capacity.images import MeasuredRate, plan_documents, plan_images
from servewise.capacity.images import image_model as named_image_model
from servewise.capacity.projection import project
from servewise.errors import UsageError
from servewise.results import UnitPlan
from servewise.store import open_store


def plan_tiers(*, from_run: str | None, store_path: str | None, **projection: Any) -> PlanResult:
    """``project(**projection)``; with ``from_run``, on that run's measured result and spec."""
    measured = None
    if from_run:
        with open_store(store_path) as runs:
            row = runs.get_run(from_run)
        measured = (row.measured, row.spec, row.id)
    return project(measured=measured, **projection)


def plan_units(
    *,
    from_run: str | None,
    store_path: str | None,
    image_model: str | None,
    size: str,
    steps: int | None,
    gpus: str,
    prices: list[str],
    hardware_file: Path | None,
    current_gpu: str | None,
    demand: float | None,
) -> UnitPlan | None:
    """A plan in images (``image_model``, calibrated on a stored images run when given) or in reranked
    documents (a stored rerank run): cost per 1,000 images or per 1M documents. None when neither applies
    (the plan is in tokens)."""
    row = None
    if from_run:
        with open_store(store_path) as runs:
            row = runs.get_run(from_run)
    outcome = row.measured.outcome if row is not None and row.measured else None
    if outcome is None and (image_model is None or row is not None):
        if row is not None and image_model is not None:
            raise UsageError(f"run {row.id} measured no images: --image-model with --from-run needs a bench"
                             " --api images run")  # fmt: skip
        return None
    catalog = builtin_catalog().with_file(hardware_file) if hardware_file else builtin_catalog()
    catalog = catalog.with_prices(parse_prices(prices))
    if row is None or outcome is None:
        assert image_model is not None
        return plan_images(named_image_model(image_model), catalog, gpus, size, steps, demand)
    if outcome.per_s <= 0:
        raise UsageError(f"run {row.id} served no {outcome.unit}: nothing to plan on")
    if current_gpu is None:
        raise UsageError(f"plan --from-run {row.id}: name the GPU its server ran on with --current-gpu")
    image = (row.spec.get("target") or {}).get("image") or {}
    rate = MeasuredRate(row.id, catalog.get(current_gpu), outcome.per_s, str(image.get("size", size)),
                        image.get("steps"))  # fmt: skip
    if outcome.unit == "documents":
        return plan_documents(rate, demand)
    if image_model is None:
        raise UsageError(f"run {row.id} measured images: name its --image-model (sd-1.5, sdxl, flux-dev) to"
                         " project other GPUs from it")  # fmt: skip
    return plan_images(named_image_model(image_model), catalog, gpus, size, steps, demand, rate)
