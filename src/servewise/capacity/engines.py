"""Engine profiles: how each serving engine batches by default, so `plan --engine` simulates the scheduler a
team actually runs. The step model's constants are shared; what differs is the scheduler (token budget,
sequence cap, whether it reserves a request's whole output before admitting it) and the defaults each
engine picks for the GPU it finds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from servewise.capacity.errors import unknown_name
from servewise.capacity.hardware import GIB, Gpu
from servewise.capacity.memory import EngineConfig


@dataclass(frozen=True, slots=True)
class EngineProfile:
    name: str
    label: str
    summary: str
    defaults: Callable[[Gpu], EngineConfig]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """An engine profile and the knobs the team set on it; None keeps the engine's default for the GPU."""

    profile: EngineProfile
    max_num_seqs: int | None = None
    max_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None

    def on(self, gpu: Gpu) -> EngineConfig:
        """The scheduler this engine runs on ``gpu``."""
        base = self.profile.defaults(gpu)
        return replace(
            base,
            max_num_seqs=self.max_num_seqs or base.max_num_seqs,
            max_batched_tokens=self.max_batched_tokens or base.max_batched_tokens,
            gpu_memory_utilization=self.gpu_memory_utilization or base.gpu_memory_utilization,
        )


def _vllm(gpu: Gpu) -> EngineConfig:
    # vllm/engine/arg_utils.py EngineArgs.get_batch_defaults (V1, OpenAI server): GPUs of 70 GiB or more other
    # than the A100 get an 8192-token budget and 1024 sequences; the others 2048 and 256.
    if gpu.vram_bytes >= 70 * GIB and "a100" not in gpu.name:
        return EngineConfig(max_num_seqs=1024, max_batched_tokens=8192)
    return EngineConfig(max_num_seqs=256, max_batched_tokens=2048)


def _sglang(gpu: Gpu) -> EngineConfig:
    # sglang server_args: chunked_prefill_size by GPU memory (2048 under 35 GB, 4096 under 60 GB, else 8192);
    # max_running_requests is sized from the KV pool, capped here like vLLM's; it retracts (evicts) on overflow.
    budget = 2048 if gpu.vram_gb < 35 else 4096 if gpu.vram_gb < 60 else 8192
    return EngineConfig(max_num_seqs=1024, max_batched_tokens=budget, gpu_memory_utilization=0.88)


def _trtllm(gpu: Gpu) -> EngineConfig:
    # trtllm-serve / trtllm-bench defaults: max_batch_size 2048, max_num_tokens 8192, capacity scheduler
    # GUARANTEED_NO_EVICT (a request's whole output is reserved before it is admitted, never preempted).
    return EngineConfig(max_num_seqs=2048, max_batched_tokens=8192, guaranteed_no_evict=True)


def _lmdeploy(gpu: Gpu) -> EngineConfig:
    # TurboMind: max_batch_size 128 (0.4+), cache_max_entry_count 0.8 of free memory, max_prefill_token_num 8192.
    return EngineConfig(max_num_seqs=128, max_batched_tokens=8192, gpu_memory_utilization=0.8)


PROFILES: dict[str, EngineProfile] = {
    p.name: p
    for p in (
        EngineProfile("vllm", "vLLM (V1 defaults)", "chunked prefill, token budget 8192 on 70+ GiB GPUs (not A100) "
                      "else 2048, max_num_seqs 1024/256, preempts when the KV cache runs out", _vllm),
        EngineProfile("sglang", "SGLang", "chunked prefill 2048-8192 by GPU memory, retracts on KV overflow", _sglang),
        EngineProfile("trtllm", "TensorRT-LLM", "max_num_tokens 8192, max_batch_size 2048, guaranteed no evict "
                      "(reserves each request's whole output)", _trtllm),
        EngineProfile("lmdeploy", "LMDeploy (TurboMind)", "max_batch_size 128, cache_max_entry_count 0.8",
                      _lmdeploy),
    )
}
DEFAULT_ENGINE = "vllm"


def engine_profile(name: str = DEFAULT_ENGINE) -> EngineProfile:
    key = name.strip().lower().replace("-", "").replace("_", "").replace("tensorrtllm", "trtllm")
    if key not in PROFILES:
        raise unknown_name("engine", name, PROFILES)
    return PROFILES[key]
