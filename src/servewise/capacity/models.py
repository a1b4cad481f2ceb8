"""Model architectures: a built-in catalog of common open models and a reader for HF ``config.json``.

Only the shapes that decide memory and time matter here: parameter counts (total and, for MoE,
active per token), layers, attention heads and KV heads (GQA), head size, sliding windows, and for
multi-head latent attention (MLA, DeepSeek-V2/V3) the compressed KV vector each layer caches instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from servewise.capacity.errors import CapacityError, unknown_name
from servewise.capacity.hardware import normalize_name, read_data_file

#: Weight bytes per parameter. fp4 (NVFP4/MXFP4) counts its 4 bits only, not the per-block scales (~+6%).
PRECISION_BYTES: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5,
                                     "fp4": 0.5}
KV_PRECISIONS = ("fp16", "bf16", "fp8", "int8")


def precision_bytes(precision: str, what: str = "precision") -> float:
    key = precision.strip().lower()
    if key not in PRECISION_BYTES:
        raise unknown_name(what, precision, PRECISION_BYTES)
    return PRECISION_BYTES[key]


@dataclass(frozen=True, slots=True)
class ModelArch:
    name: str
    params: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    active_params: float | None = None
    tied_embeddings: bool = False
    max_context: int = 131072
    sliding_window: int | None = None
    sliding_layers: float = 0.0
    experts: int = 1
    experts_per_token: int = 1
    hf_id: str = ""
    #: Layers with routed experts (DeepSeek keeps its first layers dense); None: all of them.
    moe_layers: int | None = None
    #: MLA: each layer caches one ``kv_lora_rank`` latent plus a ``qk_rope_head_dim`` RoPE key per token,
    #: shared by all heads; None: ordinary (GQA/MHA) attention.
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int = 0

    @property
    def params_per_token(self) -> float:
        """Parameters each token goes through (MoE: the routed experts only)."""
        return self.active_params or self.params

    @property
    def matmul_params_per_token(self) -> float:
        """Parameters in matrix multiplies per token: the input embedding is a lookup, not a matmul."""
        return self.params_per_token - self.vocab * self.hidden * (0 if self.tied_embeddings else 1)

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def expert_params(self) -> float:
        """All routed-expert weights (MoE; ``intermediate`` is one expert's); zero for dense models. Shared
        experts and dense layers run for every token, so they count with the dense weights."""
        if not self.is_moe:
            return 0.0
        layers = self.layers if self.moe_layers is None else self.moe_layers
        return 3.0 * self.hidden * self.intermediate * self.experts * layers

    def kv_tokens_for_context(self, context: float) -> float:
        """Full-attention-equivalent tokens held for one sequence of ``context`` tokens (sliding windows)."""
        if not self.sliding_window or context <= self.sliding_window:
            return context
        return (1 - self.sliding_layers) * context + self.sliding_layers * self.sliding_window


def mla_attention_params(hidden: int, heads: int, q_lora_rank: int | None, kv_lora_rank: int,
                         qk_nope_head_dim: int, qk_rope_head_dim: int, v_head_dim: int) -> int:
    """One MLA layer's attention weights (DeepSeek-V2/V3): queries (through a low-rank ``q_lora_rank``
    bottleneck, or one projection when it is None), the shared KV latent and RoPE key, their up-projection
    to per-head keys and values, and the output projection."""
    q_dim = heads * (qk_nope_head_dim + qk_rope_head_dim)
    queries = hidden * q_dim if q_lora_rank is None else hidden * q_lora_rank + q_lora_rank * q_dim
    latent = hidden * (kv_lora_rank + qk_rope_head_dim)
    up = kv_lora_rank * heads * (qk_nope_head_dim + v_head_dim)
    return queries + latent + up + heads * v_head_dim * hidden


def count_params(layers: int, hidden: int, heads: int, kv_heads: int, head_dim: int, intermediate: int,
                 vocab: int, tied: bool, experts: int = 1, experts_per_token: int = 1, *,
                 attention: int | None = None, moe_layers: int | None = None, dense_intermediate: int | None = None,
                 shared_experts: int = 0) -> tuple[float, float]:
    """(total, active per token) from the shapes of a Llama-style decoder (norms and biases ignored).

    ``attention``: one layer's attention weights when not Llama-style GQA (MLA). MoE: ``intermediate`` is one
    expert's; ``moe_layers`` of the layers (all when None) hold the experts, a router and ``shared_experts``
    always-on experts, the others a dense MLP of ``dense_intermediate``."""
    if attention is None:
        attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    expert = 3 * hidden * intermediate
    moe = (layers if moe_layers is None else moe_layers) if experts > 1 else 0
    dense = (layers - moe) * 3 * hidden * (dense_intermediate or intermediate)
    embeddings = vocab * hidden * (1 if tied else 2)
    every_token = layers * attention + dense + embeddings
    total = every_token + moe * (expert * (experts + shared_experts) + hidden * experts)
    active = every_token + moe * expert * (experts_per_token + shared_experts)
    return float(total), float(active)


def _arch_from_dict(name: str, raw: dict[str, Any]) -> ModelArch:
    return ModelArch(
        name=name,
        params=float(raw["params"]),
        active_params=float(raw["active_params"]) if raw.get("active_params") else None,
        layers=int(raw["layers"]),
        hidden=int(raw["hidden"]),
        heads=int(raw["heads"]),
        kv_heads=int(raw["kv_heads"]),
        head_dim=int(raw["head_dim"]),
        intermediate=int(raw["intermediate"]),
        vocab=int(raw["vocab"]),
        tied_embeddings=bool(raw.get("tied_embeddings", False)),
        max_context=int(raw.get("max_context", 131072)),
        sliding_window=int(raw["sliding_window"]) if raw.get("sliding_window") else None,
        sliding_layers=float(raw.get("sliding_layers", 1.0 if raw.get("sliding_window") else 0.0)),
        experts=int(raw.get("experts", 1)),
        experts_per_token=int(raw.get("experts_per_token", 1)),
        hf_id=str(raw.get("hf_id", "")),
        moe_layers=int(raw["moe_layers"]) if raw.get("moe_layers") is not None else None,
        kv_lora_rank=int(raw["kv_lora_rank"]) if raw.get("kv_lora_rank") else None,
        qk_rope_head_dim=int(raw.get("qk_rope_head_dim", 0)),
    )


@cache
def builtin_models() -> dict[str, ModelArch]:
    text = resources.files("servewise.capacity").joinpath("data/models.yaml").read_text()
    return {name: _arch_from_dict(name, raw) for name, raw in yaml.safe_load(text)["models"].items()}


def from_hf_config(path: str | Path) -> ModelArch:
    """Read a local Hugging Face ``config.json`` (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    cfg = read_data_file(path)
    cfg = {**cfg, **(cfg.get("text_config") or {})}
    try:
        hidden = int(cfg["hidden_size"])
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
        vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CapacityError(f"{path}: not a decoder config.json I can read (missing or bad {exc})") from None
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts") or 1)
    per_token = int(cfg.get("num_experts_per_tok") or 1)
    dense_intermediate = int(cfg.get("intermediate_size") or 4 * hidden)
    intermediate = int(cfg["moe_intermediate_size"] if experts > 1 and cfg.get("moe_intermediate_size")
                       else dense_intermediate)
    tied = bool(cfg.get("tie_word_embeddings", False))
    # DeepSeek: the first `first_k_dense_replace` layers are dense, the rest hold experts plus shared ones.
    moe_layers = layers - int(cfg.get("first_k_dense_replace") or 0) if experts > 1 else None
    kv_lora_rank = int(cfg["kv_lora_rank"]) if cfg.get("kv_lora_rank") else None
    rope_dim = int(cfg.get("qk_rope_head_dim") or 0) if kv_lora_rank else 0
    attention = None
    if kv_lora_rank:
        # MLA: per-head values are v_head_dim wide (a saved config's head_dim is the RoPE part, not a head).
        head_dim = int(cfg.get("v_head_dim") or cfg.get("qk_nope_head_dim") or head_dim)
        q_lora_rank = int(cfg["q_lora_rank"]) if cfg.get("q_lora_rank") else None  # V2-Lite: no query bottleneck
        attention = mla_attention_params(hidden, heads, q_lora_rank, kv_lora_rank,
                                         int(cfg.get("qk_nope_head_dim") or head_dim), rope_dim, head_dim)
    total, active = count_params(layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, tied,
                                 experts, per_token, attention=attention, moe_layers=moe_layers,
                                 dense_intermediate=dense_intermediate,
                                 shared_experts=int(cfg.get("n_shared_experts") or 0))
    window = cfg.get("sliding_window") or 0  # absent, null and 0 all mean no window
    uses_window = window and cfg.get("use_sliding_window", True) and int(window) < int(
        cfg.get("max_position_embeddings") or 1 << 30)
    sliding_layers = 0.0
    if uses_window:
        sliding_layers = 0.5 if "gemma2" in str(cfg.get("model_type", "")) else 1.0
    return ModelArch(
        name=str(cfg.get("_name_or_path") or path.parent.name or "custom"),
        params=total,
        active_params=active if experts > 1 else None,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        vocab=vocab,
        tied_embeddings=tied,
        max_context=int(cfg.get("max_position_embeddings") or 131072),
        sliding_window=int(window) if uses_window else None,
        sliding_layers=sliding_layers,
        experts=experts,
        experts_per_token=per_token,
        moe_layers=moe_layers,
        kv_lora_rank=kv_lora_rank,
        qk_rope_head_dim=rope_dim,
    )


def get_model(name_or_path: str) -> ModelArch:
    """A catalog name (``llama-3.1-8b``; HF ids of catalog models also work) or a path to a config.json."""
    path = Path(name_or_path).expanduser()
    if name_or_path.endswith(".json") or path.is_dir() or path.is_file():
        return from_hf_config(path)
    models = builtin_models()
    key = normalize_name(name_or_path)
    by_hf_id = {normalize_name(arch.hf_id): arch for arch in models.values() if arch.hf_id}
    if key in models:
        return models[key]
    if key in by_hf_id:
        return by_hf_id[key]
    short = key.split("/")[-1].removesuffix("-instruct").removesuffix("-it")
    if short in models:
        return models[short]
    raise unknown_name("model", name_or_path, models)
