"""Image generation capacity: seconds per image on a GPU, images/s per replica and cost per 1,000 images;
and a reranker's cost per 1M documents at the rate a run measured.

A diffusion model's denoiser runs once per step per image (twice with classifier-free guidance) and is
compute-bound at serving sizes, so time per image is steps x FLOPs per pass / achieved FLOP/s, plus the
VAE decode; FLOPs per pass scale with the latent's pixels. Batching images raises utilisation a little
and is left out (the projection is for one image after another on one replica, the engines' default).
The FLOPs are the architectures' published per-pass figures at their native size; ``MFU`` is a prior, not
fitted on measurements here: say so beside any number this gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from servewise.capacity.errors import CapacityError
from servewise.capacity.hardware import Gpu, GpuCatalog
from servewise.capacity.planner import parse_tiers
from servewise.results import UnitPlan, UnitTier

MFU = 0.40  # achieved share of the bf16 tensor peak for a denoiser pass (a prior)


@dataclass(frozen=True, slots=True)
class ImageModel:
    name: str
    tflops_per_pass: float  # one denoiser pass over one image at ``native`` pixels
    native: int  # native side in pixels (square)
    guidance_passes: int  # 2 with classifier-free guidance, 1 for guidance-distilled models
    default_steps: int
    vae_tflops: float  # one VAE decode at the native size


IMAGE_MODELS = {
    m.name: m
    for m in (
        ImageModel("sd-1.5", 0.8, 512, 2, 30, 2.5),  # UNet 0.86B
        ImageModel("sdxl", 6.0, 1024, 2, 30, 10.0),  # UNet 2.6B
        ImageModel(
            "flux-dev", 80.0, 1024, 1, 28, 10.0
        ),  # DiT 12B over 4096 latent tokens, guidance-distilled
    )
}


def image_model(name: str) -> ImageModel:
    if name not in IMAGE_MODELS:
        raise CapacityError(f"unknown image model {name!r}; known: {', '.join(IMAGE_MODELS)}")
    return IMAGE_MODELS[name]


def parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit()) or int(width) < 8 or int(height) < 8:
        raise CapacityError(f"image size must be WIDTHxHEIGHT in pixels, e.g. 512x512, got {size!r}")
    return int(width), int(height)


def seconds_per_image(model: ImageModel, gpu: Gpu, size: str, steps: int | None = None) -> float:
    """One image on one GPU: every denoiser pass at the size's share of native pixels, then the decode."""
    width, height = parse_size(size)
    scale = width * height / model.native**2
    passes = (steps or model.default_steps) * model.guidance_passes
    tflops = (passes * model.tflops_per_pass + model.vae_tflops) * scale
    return tflops / (gpu.bf16_tflops * MFU)


PER = {"images": 1_000, "documents": 1_000_000}  # what a cost is quoted per: 1,000 images, 1M documents


def cost_per(price_per_hour: float | None, per_s: float, per: int) -> float | None:
    """$ per ``per`` units at a sustained rate: the hour's price over the units the hour makes."""
    if price_per_hour is None or per_s <= 0:
        return None
    return price_per_hour / (per_s * 3600) * per


@dataclass(frozen=True, slots=True)
class MeasuredRate:
    """What a stored run measured: its unit's rate on the GPU it ran on (and, for images, at what size)."""

    run_id: str
    gpu: Gpu
    per_s: float
    size: str = "1024x1024"
    steps: int | None = None


def _tier(gpu: Gpu, per_s: float, demand: float | None, per: int, measured: bool = False) -> UnitTier:
    return UnitTier(gpu=gpu.name, seconds_each=1 / per_s, per_s=per_s,
                    replicas=math.ceil(demand / per_s) if demand else None, price_per_hour=gpu.price_per_hour,
                    cost=cost_per(gpu.price_per_hour, per_s, per), measured=measured)  # fmt: skip


def plan_images(
    model: ImageModel,
    catalog: GpuCatalog,
    gpus: str,
    size: str,
    steps: int | None,
    demand: float | None,
    measured: MeasuredRate | None = None,
) -> UnitPlan:
    """Each GPU's seconds per image, images/s, replicas for ``demand`` images/s and cost per 1,000 images
    (``gpus`` as ``plan --gpus`` takes them; one GPU per replica). With ``measured`` (a stored run's images/s
    on its GPU, at its size and steps), every tier is scaled by measured over projected there: the run's
    efficiency replaces the prior's ``MFU``."""
    scale, notes = 1.0, []
    if measured is not None:
        projected = 1 / seconds_per_image(model, measured.gpu, measured.size, measured.steps)
        scale = measured.per_s / projected
        notes.append(f"calibrated on run {measured.run_id}: {measured.per_s:.3g} images/s on {measured.gpu.name}"
                     f" at {measured.size}, {scale:.2f}x the prior's projection there")  # fmt: skip
    else:
        notes.append(f"from the architecture's FLOPs per denoiser pass at {MFU:.0%} of the bf16 peak (a prior,"
                     " not fitted on measurements): bench the real server with --api images, then plan"
                     " --from-run RUN --current-gpu GPU")  # fmt: skip
    names = [tier.gpu for tier in parse_tiers(gpus)]
    if measured is not None and measured.gpu.name not in (catalog.get(n).name for n in names):
        names.insert(0, measured.gpu.name)
    tiers = []
    for gpu in (catalog.get(name) for name in names):
        rate = scale / seconds_per_image(model, gpu, size, steps)
        on_run_gpu = measured is not None and gpu.name == measured.gpu.name
        tiers.append(_tier(gpu, rate, demand, PER["images"], measured=on_run_gpu))
    title = f"Image plan: {model.name}, {size}, {steps or model.default_steps} steps, one image after another per replica"
    return UnitPlan(unit="images", per=PER["images"], title=title, tiers=tiers, notes=notes)


def plan_documents(measured: MeasuredRate, demand: float | None) -> UnitPlan:
    """A reranker's cost per 1M documents at the documents/s a stored run measured on its GPU (no prior
    projects a reranker onto other GPUs: bench it there)."""
    tier = _tier(measured.gpu, measured.per_s, demand, PER["documents"], measured=True)
    note = (f"measured by run {measured.run_id} at its load; a sweep's knee is the capacity at an SLO, and other"
            " GPUs need a run of their own")  # fmt: skip
    return UnitPlan(unit="documents", per=PER["documents"], title=f"Rerank plan: {measured.gpu.name}",
                    tiers=[tier], notes=[note])  # fmt: skip
