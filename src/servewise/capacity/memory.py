"""Memory model: weights, KV cache per token, what is left for the KV cache, and how many requests fit.

KV bytes per token = 2 (K and V) · layers · kv_heads · head_dim · bytes per element. By hand for
Llama-3.1-8B in bf16: 2 · 32 · 8 · 128 · 2 = 131,072 B = 128 KiB per token. An MLA model (DeepSeek-V2/V3)
caches one compressed latent and one RoPE key per layer instead, shared by all heads: layers ·
(kv_lora_rank + qk_rope_head_dim) · bytes; DeepSeek-V3 in bf16: 61 · (512 + 64) · 2 = 70,272 B per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from servewise.capacity.errors import CapacityError
from servewise.capacity.hardware import GIB, Gpu
from servewise.capacity.models import KV_PRECISIONS, ModelArch, precision_bytes

TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
#: CUDA context, kernels, CUDA graphs and the allocator's slack, per GPU (what vLLM reports as non-torch memory).
RUNTIME_RESERVE_BYTES = 1.0 * GIB
#: Activation working set per batched token and hidden unit (bf16 residual, MLP intermediate, temporaries).
ACTIVATION_BYTES_PER_TOKEN_HIDDEN = 16

#: The tensor-core formats whose peak a deployment's matmuls run at.
ComputePrecision = Literal["fp4", "fp8", "bf16"]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The serving engine's knobs that decide batching (vLLM's names and defaults).

    ``guaranteed_no_evict``: admit a request only when the KV cache can hold its prompt and its whole
    output at once, and never preempt (TensorRT-LLM's default ``GUARANTEED_NO_EVICT`` capacity scheduler).
    Off (vLLM): admit on the prompt alone and preempt when decoding runs out of room, so the cache
    holds requests at their current, not their final, length.
    """

    max_num_seqs: int = 256
    max_batched_tokens: int = 8192
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    chunked_prefill: bool = True
    guaranteed_no_evict: bool = False


@dataclass(frozen=True, slots=True)
class Deployment:
    """A model on a number of identical GPUs (tensor parallel) at given weight and KV precisions."""

    model: ModelArch
    gpu: Gpu
    num_gpus: int = 1
    weight_precision: str = "bf16"
    kv_precision: str = "bf16"

    def __post_init__(self) -> None:
        precision_bytes(self.weight_precision, "weight precision")
        if self.kv_precision not in KV_PRECISIONS:
            raise CapacityError(f"KV-cache precision must be one of {', '.join(KV_PRECISIONS)}, got "
                                f"{self.kv_precision!r}")
        if self.num_gpus not in TENSOR_PARALLEL_SIZES:
            raise CapacityError(f"tensor parallelism must be 1, 2, 4 or 8 GPUs, got {self.num_gpus}")
        if self.model.kv_heads % self.num_gpus and self.num_gpus % self.model.kv_heads:
            raise CapacityError(f"{self.model.name}: {self.model.kv_heads} KV heads cannot be split over "
                                f"{self.num_gpus} GPUs")

    @property
    def compute_precision(self) -> ComputePrecision:
        """The tensor-core peak the matmuls run at: fp4 or fp8 weights use that format's tensor cores where
        the GPU has them (``Gpu.fp4_tflops``/``fp8_tflops``); elsewhere, and for int8/int4 weight-only
        quantization, the weights are dequantized and multiplied in 16 bits."""
        if self.weight_precision == "fp4" and self.gpu.fp4_tflops is not None:
            return "fp4"
        if self.weight_precision == "fp8" and self.gpu.fp8_tflops is not None:
            return "fp8"
        return "bf16"


def default_kv_precision(weight_precision: str) -> str:
    """fp8 and fp4 checkpoints usually run an fp8 KV cache (NVFP4 ones ship fp8 KV scales); weight-only
    int8/int4 keep a 16-bit cache."""
    return "fp8" if weight_precision in ("fp8", "fp4") else "bf16"


def weight_bytes(model: ModelArch, precision: str) -> float:
    return model.params * precision_bytes(precision, "weight precision")


def kv_bytes_per_token(model: ModelArch, kv_precision: str) -> float:
    """KV-cache bytes one token adds over all layers; ``kv_cache_shards`` says over how many GPUs they split."""
    per_element = precision_bytes(kv_precision, "KV precision")
    if model.kv_lora_rank is not None:
        return model.layers * (model.kv_lora_rank + model.qk_rope_head_dim) * per_element
    return 2.0 * model.layers * model.kv_heads * model.head_dim * per_element


def kv_cache_shards(model: ModelArch, num_gpus: int) -> int:
    """Over how many tensor-parallel GPUs one token's KV cache is split. MLA's latent belongs to every head,
    so each GPU keeps all of it (vLLM and SGLang without data-parallel attention): ``num_gpus`` GPUs hold no
    more tokens than one."""
    return 1 if model.is_mla else num_gpus


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    fits: bool
    reason: str
    weight_bytes_per_gpu: float
    reserve_bytes_per_gpu: float
    kv_bytes_per_gpu: float
    kv_bytes_per_token: float
    kv_capacity_tokens: int
    context_tokens: int
    max_concurrency: int

    @property
    def weight_gb(self) -> float:
        return self.weight_bytes_per_gpu / 1e9


def memory_plan(dep: Deployment, context_tokens: int, engine: EngineConfig = EngineConfig()) -> MemoryPlan:
    """Where the GPU memory goes and how many ``context_tokens``-long requests the KV cache holds at once."""
    model, gpu, n = dep.model, dep.gpu, dep.num_gpus
    weights = weight_bytes(model, dep.weight_precision) / n
    activations = engine.max_batched_tokens * model.hidden * ACTIVATION_BYTES_PER_TOKEN_HIDDEN
    logits = engine.max_num_seqs * model.vocab * 4.0
    reserve = RUNTIME_RESERVE_BYTES + activations + logits
    usable = engine.gpu_memory_utilization * gpu.vram_bytes
    kv_per_gpu = usable - weights - reserve
    per_token = kv_bytes_per_token(model, dep.kv_precision)
    capacity = max(0, int(kv_per_gpu * kv_cache_shards(model, n) / per_token)) if kv_per_gpu > 0 else 0
    capacity -= capacity % engine.block_size
    per_request = model.kv_tokens_for_context(context_tokens)
    concurrency = min(engine.max_num_seqs, int(capacity // math.ceil(per_request))) if per_request else 0
    gpus = f"{n}x {gpu.name}" if n > 1 else gpu.name
    if context_tokens > model.max_context:
        return MemoryPlan(False, f"{context_tokens:,}-token context exceeds {model.name}'s maximum of "
                          f"{model.max_context:,}", weights, reserve, kv_per_gpu, per_token, capacity,
                          context_tokens, 0)
    if kv_per_gpu <= 0:
        reason = (f"{weights / 1e9:.1f} GB of {dep.weight_precision} weights per GPU plus "
                  f"{reserve / 1e9:.1f} GB runtime reserve exceed {usable / 1e9:.1f} GB usable on {gpus}")
        return MemoryPlan(False, reason, weights, reserve, kv_per_gpu, per_token, 0, context_tokens, 0)
    if concurrency < 1:
        reason = (f"KV cache holds {capacity:,} tokens, less than one {context_tokens:,}-token request "
                  f"on {gpus}")
        return MemoryPlan(False, reason, weights, reserve, kv_per_gpu, per_token, capacity, context_tokens, 0)
    reason = (f"{weights * n / 1e9:.1f} GB of weights leave {kv_per_gpu * n / 1e9:.1f} GB of KV cache "
              f"({capacity:,} tokens) on {gpus}: {concurrency} concurrent {context_tokens:,}-token requests")
    return MemoryPlan(True, reason, weights, reserve, kv_per_gpu, per_token, capacity, context_tokens,
                      concurrency)


def smallest_fitting_tp(model: ModelArch, gpu: Gpu, weight_precision: str, kv_precision: str,
                        context_tokens: int, engine: EngineConfig = EngineConfig()) -> int | None:
    """The fewest GPUs (1/2/4/8) on which at least one request of this context fits; None if none."""
    for n in TENSOR_PARALLEL_SIZES:
        try:
            dep = Deployment(model, gpu, n, weight_precision, kv_precision)
        except CapacityError:
            continue
        if memory_plan(dep, context_tokens, engine).fits:
            return n
    return None
