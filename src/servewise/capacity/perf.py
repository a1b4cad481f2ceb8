"""Performance model: how long one continuous-batching engine step takes, and the steady state it implies.

A step runs the batch's new tokens (prefill chunks and one token per decoding sequence) through the
model. Two kernel groups, each a roofline: the weight matmuls (compute-bound for many tokens, else
bound by reading the weights once) and attention (prefill: compute; decode: reading the KV cache).
A fixed per-step overhead (scheduling, sampling, kernel launches) and a small per-sequence overhead
come on top; tensor parallelism adds two ring all-reduces per layer, timed from the interconnect's
data-sheet bandwidth with public priors for the achievable bus bandwidth and per-step latency
(``hardware.yaml`` ``interconnects``). The only fitted numbers are the achievable fractions of memory
bandwidth and of dense compute (16-bit and fp8), the overheads and one engine cost per all-reduce step:
few, physical, so they carry over to GPUs and models they were not fitted on.

A prefix-cache hit rate ``h`` (``servewise plan --prefix-hit``) is the share of every prompt's tokens the
engine finds in its cache instead of computing: the step model, the one place prefill tokens become time,
charges prefill for the other ``1 - h`` only (matmuls, attention and KV writes). Memory is not discounted:
the cached blocks still sit in the KV cache beside each sequence (``memory.py`` is unaware of ``h``).

With speculative decoding (``speculative.py``) a decode step verifies several positions per sequence and
runs the draft's passes; the step model prices that step, and the planner counts how many tokens it emits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

from servewise.capacity.hardware import tensor_parallel_link
from servewise.capacity.memory import (
    Deployment,
    EngineConfig,
    kv_bytes_per_token,
    kv_cache_shards,
    weight_bytes,
)
from servewise.capacity.models import ModelArch
from servewise.capacity.speculative import Speculation

#: Activations are all-reduced in 16 bits even when weights and KV cache are fp8 (TensorRT-LLM, vLLM).
ALLREDUCE_BYTES_PER_VALUE = 2.0


#: Which side of a step each ``Efficiency`` field belongs to, for a calibration that moves decode and prefill
#: apart. Every field but ``source`` is in exactly one (tests/test_capacity_calibrate.py checks it). Decode,
#: achievable fractions: reading the KV cache and the weights, the all-reduce's share of the link.
DECODE_FRACTIONS = ("kv_bandwidth", "weight_bandwidth", "allreduce_bandwidth", "pcie_allreduce_bandwidth")
#: Decode, fixed costs in seconds: per step, per sequence, per all-reduce ring step.
DECODE_COSTS = ("step_overhead_s", "per_seq_overhead_s", "allreduce_sync_s")
#: Prefill, achievable fractions of dense compute: 16-bit, fp8, fp4.
PREFILL_FRACTIONS = ("compute", "fp8_compute", "fp4_compute")
#: Neither: the per-request cost outside the engine's steps (HTTP, tokenizing) is no GPU's.
UNCALIBRATED = ("request_overhead_s",)


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Achievable fractions of the data-sheet peaks, and fixed costs, for one serving engine."""

    kv_bandwidth: float = 0.6
    weight_bandwidth: float = 0.8
    compute: float = 0.6
    fp8_compute: float = 0.45
    #: Blackwell's fp4 tensor cores (NVFP4 weights); fitted on B200 rows with the tensor-parallel stage.
    fp4_compute: float = 0.45
    step_overhead_s: float = 0.002
    per_seq_overhead_s: float = 5e-6
    #: Engine cost per ring step of a tensor-parallel all-reduce on top of the link's latency prior (launch,
    #: waiting for the slowest GPU): what a small all-reduce costs, so it decides TP latency at small batches;
    #: fitted on latency rows, 0 on one GPU.
    allreduce_sync_s: float = 0.0
    #: The share of the interconnect prior's bus bandwidth a tensor-parallel engine gets for large all-reduces
    #: (overlap lost, smaller per-GPU matmuls): what decides TP throughput; fitted on multi-GPU throughput rows.
    allreduce_bandwidth: float = 1.0
    #: The same over PCIe, where engines fall back from their NVLink kernels to NCCL's ring.
    pcie_allreduce_bandwidth: float = 1.0
    #: Per request, outside the engine's steps: HTTP, tokenizing the prompt, scheduling it, detokenizing
    #: the first token. Added to TTFT (and E2E) only; fitted on latency rows.
    request_overhead_s: float = 0.0
    source: str = "defaults"

    def split(self, decode: float, prefill: float, source: str) -> Efficiency:
        """The decode-side constants moved by ``decode`` (fractions times it, costs divided by it) and the
        prefill side by ``prefill`` (a measured run's calibration, ``servewise plan --from-run``)."""
        fractions = {name: getattr(self, name) * decode for name in DECODE_FRACTIONS}
        costs = {name: getattr(self, name) / decode for name in DECODE_COSTS}
        compute = {name: getattr(self, name) * prefill for name in PREFILL_FRACTIONS}
        return replace(self, **fractions, **costs, **compute, source=source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def fitted_efficiency() -> Efficiency:
    """The constants fitted to the calibration data by ``benchmarks/capacity_fit.py`` (see ``data/fit.json``)."""
    text = resources.files("servewise.capacity").joinpath("data/fit.json").read_text()
    fit = json.loads(text)
    prov = fit["provenance"]
    latency = prov.get("stage3", {})
    where = f"; latency on {latency['rows']:,} published TTFT/TPOT rows" if latency else ""
    return Efficiency(**fit["efficiency"], source=f"fit {prov['date']} (throughput on published TensorRT-LLM "
                      f"tables{where})")


def fit_provenance() -> dict[str, Any]:
    return json.loads(resources.files("servewise.capacity").joinpath("data/fit.json").read_text())


def attention_flops_per_pair(model: ModelArch) -> float:
    """FLOPs of one (query token, context token) pair over all layers: QK and AV, 2 each per element. MLA
    decodes with the up-projections absorbed, so each head attends over the latent (``kv_lora_rank``) plus
    its RoPE key, and reads values from the latent too."""
    if model.kv_lora_rank is not None:
        return 2.0 * model.layers * model.heads * (2 * model.kv_lora_rank + model.qk_rope_head_dim)
    return 4.0 * model.layers * model.heads * model.head_dim


class StepModel:
    """Time of one engine step for a deployment; constants are folded once so a step costs a few flops.

    ``prefix_hit``: the share of prefill tokens served from the prefix cache (0 <= h < 1), so not computed;
    ``speculation``: each decode step verifies its positions per sequence and runs its draft passes."""

    def __init__(self, dep: Deployment, eff: Efficiency, prefix_hit: float = 0.0,
                 speculation: Speculation | None = None) -> None:
        if not 0.0 <= prefix_hit < 1.0:
            raise ValueError(f"prefix_hit must be in [0, 1), got {prefix_hit}")
        model, gpu, n = dep.model, dep.gpu, dep.num_gpus
        self.deployment = dep
        self.efficiency = eff
        self.prefix_hit = prefix_hit
        self._computed = 1.0 - prefix_hit
        self.speculation = speculation
        self._verify = speculation.verify_tokens if speculation else 1
        # the draft's passes, in plain decode steps of the target at the same batch and context
        self._draft = speculation.passes * speculation.share(dep.model) if speculation else 0.0
        precision = dep.compute_precision
        tflops = {"fp4": gpu.fp4_tflops, "fp8": gpu.fp8_tflops}.get(precision) or gpu.bf16_tflops
        frac = {"bf16": eff.compute, "fp8": eff.fp8_compute, "fp4": eff.fp4_compute}[precision]
        compute = tflops * 1e12 * n * frac
        # an MLA latent belongs to every head: each GPU reads all of it, so TP does not split those reads
        bandwidth = gpu.bandwidth_bytes_s * kv_cache_shards(model, n) * eff.kv_bandwidth
        weight_bandwidth = gpu.bandwidth_bytes_s * n * eff.weight_bandwidth
        self._s_per_token_matmul = 2.0 * model.matmul_params_per_token / compute
        self._dense_weight_s = (weight_bytes(model, dep.weight_precision) - self._expert_bytes(dep)) / weight_bandwidth
        self._expert_weight_s = self._expert_bytes(dep) / weight_bandwidth
        self._experts = model.experts
        self._expert_miss = 1.0 - model.experts_per_token / model.experts if model.is_moe else 0.0
        self._s_per_attn_pair = attention_flops_per_pair(model) / compute
        self._s_per_kv_token = kv_bytes_per_token(model, dep.kv_precision) / bandwidth
        # a verify step's positions each attend over the context; its KV is read once
        self.decode_s_per_context_token = (max(self._verify * self._s_per_attn_pair, self._s_per_kv_token)
                                           + self._draft * max(self._s_per_attn_pair, self._s_per_kv_token))
        self._fixed_s = eff.step_overhead_s
        self._per_seq_s = eff.per_seq_overhead_s
        # Tensor parallelism: two ring all-reduces per layer (after attention, after the MLP) of every token's
        # hidden state, not overlapped with compute. Latency is per collective, bandwidth per token.
        prior, link_gbs = tensor_parallel_link(gpu, n)
        self._fixed_s += 2 * model.layers * prior.latency_s(n, eff.allreduce_sync_s)
        self._comm_s_per_token = 2 * model.layers * prior.transfer_s(model.hidden * ALLREDUCE_BYTES_PER_VALUE, n,
                                                                     link_gbs) / (
            eff.pcie_allreduce_bandwidth if prior.kind == "pcie" else eff.allreduce_bandwidth)
        self.request_overhead_s = eff.request_overhead_s

    @staticmethod
    def _expert_bytes(dep: Deployment) -> float:
        return dep.model.expert_params * weight_bytes(dep.model, dep.weight_precision) / dep.model.params

    def weight_read_s(self, tokens: float) -> float:
        """Reading the weights once; an MoE step reads only the experts its tokens were routed to."""
        if not self._experts or self._expert_miss == 0.0:
            return self._dense_weight_s + self._expert_weight_s
        touched = 1.0 - self._expert_miss ** max(tokens, 1.0)
        return self._dense_weight_s + self._expert_weight_s * touched

    def _uncached(self, prefill_tokens: float, prefill_attention_pairs: float) -> tuple[float, float]:
        """The prefill work left once the prefix cache served its share: ``prefix_hit`` of every prompt's
        tokens is not run through the model, so neither its matmuls, its attention nor its KV writes are
        paid. Spread evenly over the prompt: exact for the matmuls (nearly all of prefill); for a cached
        *leading* prefix the attention of the computed tokens over it is slightly understated."""
        return prefill_tokens * self._computed, prefill_attention_pairs * self._computed

    def step_time(self, prefill_tokens: float, decode_seqs: float, decode_context: float,
                  prefill_attention_pairs: float = 0.0, prefill_seqs: float = 0.0) -> float:
        """Seconds for a step with these prefill tokens and decoding sequences (``decode_context``: the
        sum of their context lengths; ``prefill_attention_pairs``: sum of chunk·(start + chunk/2)). The
        prefill arguments are the prompt tokens scheduled, cached or not; the prefix cache's share is
        taken off here."""
        prefill_tokens, prefill_attention_pairs = self._uncached(prefill_tokens, prefill_attention_pairs)
        tokens = prefill_tokens + decode_seqs * self._verify
        matmul = max(tokens * self._s_per_token_matmul, self.weight_read_s(tokens))
        attention = max((decode_context * self._verify + prefill_attention_pairs) * self._s_per_attn_pair,
                        (decode_context + prefill_tokens) * self._s_per_kv_token)
        draft = self._draft * self._plain_decode_s(decode_seqs, decode_context) if decode_seqs else 0.0
        return (self._fixed_s + (decode_seqs + prefill_seqs) * self._per_seq_s + matmul + attention
                + tokens * self._comm_s_per_token + draft)

    def _plain_decode_s(self, decode_seqs: float, decode_context: float) -> float:
        """A decode step emitting one token per sequence, what a draft pass is priced against."""
        matmul = max(decode_seqs * self._s_per_token_matmul, self.weight_read_s(decode_seqs))
        return (self._fixed_s + decode_seqs * (self._per_seq_s + self._comm_s_per_token) + matmul
                + decode_context * max(self._s_per_attn_pair, self._s_per_kv_token))

    def bound(self, prefill_tokens: float, decode_seqs: float, decode_context: float,
              prefill_attention_pairs: float = 0.0) -> str:
        """Which roofline side dominates this step: ``compute`` or ``memory-bandwidth``."""
        prefill_tokens, prefill_attention_pairs = self._uncached(prefill_tokens, prefill_attention_pairs)
        tokens = prefill_tokens + decode_seqs * self._verify
        compute = (tokens * self._s_per_token_matmul
                   + (decode_context * self._verify + prefill_attention_pairs) * self._s_per_attn_pair)
        memory = self.weight_read_s(tokens) + (decode_context + prefill_tokens) * self._s_per_kv_token
        return "compute" if compute > memory else "memory-bandwidth"

    def decode_step_coefficients(self, decode_seqs: int) -> tuple[float, float]:
        """(a, b) with step time = a + b · (sum of contexts) for a pure-decode step of ``decode_seqs``."""
        verified = decode_seqs * self._verify
        matmul = max(verified * self._s_per_token_matmul, self.weight_read_s(verified))
        a = self._fixed_s + decode_seqs * self._per_seq_s + matmul + verified * self._comm_s_per_token
        return a + self._draft * self._plain_decode_s(decode_seqs, 0.0), self.decode_s_per_context_token


@dataclass(frozen=True, slots=True)
class SteadyState:
    """A fluid picture of the engine kept full of identical requests."""

    batch: float
    step_s: float
    output_tokens_per_s: float
    requests_per_s: float
    limit: str


def steady_state(step: StepModel, kv_capacity_tokens: int, engine: EngineConfig, input_tokens: float,
                 output_tokens: float, concurrency: float | None = None) -> SteadyState:
    """Throughput with ``concurrency`` requests in flight (None: as many as the engine admits).

    The batch is the smallest of: the requests offered, ``max_num_seqs``, what the KV cache holds at
    the average context (input + output/2; at the final one, input + output, for a ``guaranteed_no_evict``
    engine), and what the token budget allows once every finishing request's prompt has to be
    prefilled in the same steps (batch · (1 + input/output) <= budget).
    The step time averages steps that carry a prompt chunk and steps that only decode.
    """
    model = step.deployment.model
    mean_context = model.kv_tokens_for_context(input_tokens + output_tokens / 2)
    # A no-evict scheduler reserves every request's final length up front; otherwise the cache holds
    # requests at their current length, input + output/2 on average.
    held = model.kv_tokens_for_context(input_tokens + output_tokens) if engine.guaranteed_no_evict else mean_context
    limits = {
        "kv-cache": kv_capacity_tokens / max(held, 1.0),
        "max-num-seqs": float(engine.max_num_seqs),
        "token-budget": engine.max_batched_tokens / (1.0 + input_tokens / output_tokens),
    }
    if concurrency is not None:
        limits["concurrency"] = float(concurrency)
    limit = min(limits, key=limits.__getitem__)
    batch = max(limits[limit], 1e-9)
    finishing = batch / output_tokens  # requests finishing (and prompts to prefill) per step
    decode_context = batch * mean_context
    # Prompts arrive in lumps, not as a fluid: a step carries one prompt's chunk (up to the budget left by
    # the decoders) or none. The share of steps with a prefill chunk follows from the prefill work.
    chunk = min(input_tokens, max(engine.max_batched_tokens - batch, 1.0))
    share = finishing * input_tokens / chunk
    if share >= 1.0:
        step_s = step.step_time(finishing * input_tokens, batch, decode_context,
                                finishing * input_tokens * input_tokens / 2, finishing)
    else:
        mixed = step.step_time(chunk, batch, decode_context, chunk * input_tokens / 2, 1.0)
        step_s = share * mixed + (1.0 - share) * step.step_time(0.0, batch, decode_context)
    return SteadyState(batch, step_s, batch / step_s, finishing / step_s, limit)
