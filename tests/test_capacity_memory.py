"""Memory model, catalogs and name errors, checked against numbers worked out by hand."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import yaml

from servewise.capacity import (
    CapacityError,
    Deployment,
    EngineConfig,
    builtin_catalog,
    default_kv_precision,
    from_hf_config,
    get_model,
    kv_bytes_per_token,
    memory_plan,
    parse_prices,
    smallest_fitting_tp,
    weight_bytes,
)
from servewise.capacity.hardware import GIB
from servewise.capacity.memory import kv_cache_shards

KIB = 1024


def test_llama_3_1_8b_bf16_kv_is_128_kib_per_token() -> None:
    # 2 (K,V) * 32 layers * 8 KV heads * 128 head dim * 2 bytes = 131072 B
    assert kv_bytes_per_token(get_model("llama-3.1-8b"), "bf16") == 128 * KIB


@pytest.mark.parametrize(
    ("model", "precision", "expected"),
    [
        ("llama-3.1-70b", "bf16", 2 * 80 * 8 * 128 * 2),  # 320 KiB
        ("llama-3.1-8b", "fp8", 2 * 32 * 8 * 128 * 1),  # 64 KiB
        ("qwen2.5-7b", "bf16", 2 * 28 * 4 * 128 * 2),  # 56 KiB: only 4 KV heads
        ("phi-3.5-mini", "bf16", 2 * 32 * 32 * 96 * 2),  # no GQA: 384 KiB
        ("gemma-2-9b", "bf16", 2 * 42 * 8 * 256 * 2),
    ],
)
def test_kv_bytes_by_hand(model: str, precision: str, expected: int) -> None:
    assert kv_bytes_per_token(get_model(model), precision) == expected


def test_weights_and_kv_capacity_on_rtx4090_by_hand() -> None:
    model = get_model("llama-3.1-8b")
    assert weight_bytes(model, "bf16") == pytest.approx(2 * 8.03e9)
    assert weight_bytes(model, "int4") == pytest.approx(0.5 * 8.03e9)
    engine = EngineConfig()
    plan = memory_plan(Deployment(model, builtin_catalog().get("rtx4090"), 1, "bf16", "bf16"), 4096, engine)
    # 0.9 * 24 GiB - 16.06 GB weights - (1 GiB + 8192 tok * 4096 * 16 B + 256 * 128256 * 4 B) reserve
    reserve = GIB + 8192 * 4096 * 16 + 256 * 128256 * 4
    kv = 0.9 * 24 * GIB - 2 * 8.03e9 - reserve
    assert plan.kv_bytes_per_gpu == pytest.approx(kv)
    tokens = int(kv / (128 * KIB))
    assert plan.kv_capacity_tokens == tokens - tokens % 16
    assert plan.max_concurrency == plan.kv_capacity_tokens // 4096
    assert plan.fits and "16.1 GB of weights" in plan.reason


def test_70b_does_not_fit_one_gpu_and_tensor_parallel_splits_it() -> None:
    model = get_model("llama-3.1-70b")
    h100 = builtin_catalog().get("h100-sxm")
    one = memory_plan(Deployment(model, h100, 1, "bf16", "bf16"), 2000)
    assert not one.fits and "exceed" in one.reason
    assert smallest_fitting_tp(model, h100, "bf16", "bf16", 2000) == 2
    two = memory_plan(Deployment(model, h100, 2, "bf16", "bf16"), 2000)
    four = memory_plan(Deployment(model, h100, 4, "bf16", "bf16"), 2000)
    assert two.weight_bytes_per_gpu == pytest.approx(weight_bytes(model, "bf16") / 2)
    assert four.kv_capacity_tokens > 2 * two.kv_capacity_tokens  # weights shrink per GPU, KV grows faster
    with pytest.raises(CapacityError, match="1, 2, 4 or 8"):
        Deployment(model, h100, 3, "bf16", "bf16")


def test_sliding_window_caps_kv_per_sequence() -> None:
    gemma = get_model("gemma-2-9b")
    assert gemma.kv_tokens_for_context(2000) == 2000
    assert gemma.kv_tokens_for_context(8192) == pytest.approx(0.5 * 8192 + 0.5 * 4096)


def test_context_over_model_maximum_is_explained() -> None:
    plan = memory_plan(Deployment(get_model("gemma-2-9b"), builtin_catalog().get("h100-sxm")), 10000)
    assert not plan.fits and "maximum" in plan.reason


def test_catalog_has_every_required_gpu_with_price_and_source() -> None:
    catalog = builtin_catalog()
    for name in (
        "rtx4090",
        "l4",
        "a10g",
        "l40s",
        "a100-pcie-40gb",
        "a100-sxm-40gb",
        "a100-pcie-80gb",
        "a100-sxm-80gb",
        "h100-pcie",
        "h100-sxm",
        "h200-sxm",
        "b200",
        "mi300x",
    ):
        gpu = catalog.get(name)
        assert gpu.vram_gb > 0 and gpu.memory_bandwidth_gbs > 0 and gpu.bf16_tflops > 0
        assert gpu.price_per_hour and gpu.price_source and gpu.price_date
    assert catalog.get("H200").name == "h200-sxm"
    assert catalog.get("a10g").fp8_tflops is None


def test_model_catalog_covers_the_issue_list() -> None:
    for name in (
        "llama-3.1-8b",
        "llama-3.1-70b",
        "llama-3.2-1b",
        "llama-3.2-3b",
        "llama-3.3-70b",
        "qwen2.5-7b",
        "qwen2.5-72b",
        "mistral-7b",
        "mixtral-8x7b",
        "gemma-2-9b",
        "gemma-2-27b",
        "phi-3.5-mini",
    ):
        assert get_model(name).layers > 0
    assert get_model("meta-llama/Llama-3.1-8B-Instruct").name == "llama-3.1-8b"
    mixtral = get_model("mixtral-8x7b")
    assert mixtral.params_per_token < mixtral.params / 3


def test_unknown_names_list_close_matches() -> None:
    with pytest.raises(CapacityError, match=r"unknown GPU 'h100'.*did you mean.*h100-sxm"):
        builtin_catalog().get("h100")
    with pytest.raises(CapacityError, match=r"unknown model 'lama-3.1-8b'.*did you mean llama-3.1-8b"):
        get_model("lama-3.1-8b")
    with pytest.raises(CapacityError, match="did you mean bf16"):
        Deployment(get_model("llama-3.1-8b"), builtin_catalog().get("l4"), 1, "bf61", "bf16")


def test_prices_and_user_gpus_override(tmp_path) -> None:
    assert parse_prices(["h100-sxm=2.49", "l4=0.5,a10g=$1"]) == {"h100-sxm": 2.49, "l4": 0.5, "a10g": 1.0}
    with pytest.raises(CapacityError, match="GPU=DOLLARS"):
        parse_prices(["h100-sxm"])
    catalog = builtin_catalog().with_prices({"h100-sxm": 1.23})
    assert catalog.get("h100-sxm").price_per_hour == 1.23
    assert builtin_catalog().get("h100-sxm").price_per_hour != 1.23  # the built-in one is untouched
    path = tmp_path / "gpus.yaml"
    path.write_text(
        "gpus:\n  my-card:\n    vram_gb: 32\n    memory_bandwidth_gbs: 1792\n    bf16_tflops: 210\n"
        "    price_per_hour: 0.9\nprices:\n  l4: 0.4\n"
    )
    custom = builtin_catalog().with_file(path)
    assert custom.get("my-card").vram_gb == 32 and custom.get("l4").price_per_hour == 0.4
    path.write_text("gpus:\n  bad:\n    vram_gb: 32\n")
    with pytest.raises(CapacityError, match="needs memory_bandwidth_gbs"):
        builtin_catalog().with_file(path)


def test_hf_config_json_is_read(tmp_path) -> None:
    config = {
        "model_type": "llama",
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    arch = from_hf_config(tmp_path)
    assert arch.params == pytest.approx(8.03e9, rel=0.002)  # the shapes add up to Llama-3.1-8B's count
    assert kv_bytes_per_token(arch, "bf16") == 128 * KIB
    assert get_model(str(tmp_path / "config.json")).head_dim == 128
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(CapacityError, match="not a decoder config"):
        get_model(str(tmp_path / "bad.json"))


def test_added_gpus_load_with_sourced_specs_and_prices() -> None:
    catalog = builtin_catalog()
    expected = {  # name: (GB, GB/s, dense bf16 TFLOPS, dense fp8 TFLOPS)
        "rtx5090": (32, 1792, 209.5, 419),
        "rtx3090": (24, 936, 71, None),
        "l40": (48, 864, 181.05, 362.1),
        "h100-nvl": (94, 3900, 835.5, 1670.5),
        "gh200": (96, 4000, 989, 1979),
    }
    for name, (vram, bandwidth, bf16, fp8) in expected.items():
        gpu = catalog.get(name)
        assert (gpu.vram_gb, gpu.memory_bandwidth_gbs, gpu.bf16_tflops, gpu.fp8_tflops) == (vram, bandwidth, bf16, fp8)
        assert gpu.price_per_hour and gpu.price_source and gpu.price_date
    # the published rows' label ("GH200 120GB", as nvidia-smi names the 96 GB HBM3 part) finds the entry
    assert catalog.get("GH200 120GB").name == "gh200"
    # H100 NVL pairs are NVLink-bridged, but TP 4/8 crosses PCIe: the all-reduce prior must be PCIe's
    assert catalog.get("h100-nvl").interconnect.lower().startswith("pcie")
    assert catalog.get("h100-nvl").interconnect_gbs == 64
    raw = yaml.safe_load(resources.files("servewise.capacity").joinpath("data/hardware.yaml").read_text())["gpus"]
    for name, fields in raw.items():
        assert fields.get("spec_source"), f"{name} has no spec_source"


def test_fp4_tensor_cores_only_on_blackwell() -> None:
    catalog = builtin_catalog()
    assert catalog.get("b200").fp4_tflops == 9000  # HGX B200: 144 PFLOPS sparse FP4 over 8 GPUs, halved
    assert catalog.get("rtx5090").fp4_tflops == 1676
    for name in ("h100-sxm", "h200-sxm", "gh200", "l40s", "mi300x", "a10g"):
        assert catalog.get(name).fp4_tflops is None


def test_compute_precision_picks_fp4_only_where_the_gpu_has_it() -> None:
    catalog = builtin_catalog()
    model = get_model("llama-3.1-8b")

    def dep(gpu: str, weights: str) -> Deployment:
        return Deployment(model, catalog.get(gpu), 1, weights, default_kv_precision(weights))

    assert dep("b200", "fp4").compute_precision == "fp4"
    assert dep("rtx5090", "fp4").compute_precision == "fp4"
    assert dep("h100-sxm", "fp4").compute_precision == "bf16"  # Hopper runs fp4 weights dequantized
    assert dep("h100-sxm", "fp8").compute_precision == "fp8"
    assert dep("a10g", "fp8").compute_precision == "bf16"  # no fp8 tensor cores
    assert dep("b200", "int4").compute_precision == "bf16"  # weight-only
    assert dep("b200", "bf16").compute_precision == "bf16"
    # fp4 weights on Blackwell are not fp8 compute
    assert dep("h100-sxm", "fp8").compute_precision == "fp8" and dep("b200", "fp4").compute_precision != "fp8"
    assert default_kv_precision("fp4") == "fp8"


def test_fp4_weights_take_half_the_memory_of_fp8() -> None:
    model = get_model("llama-3.1-70b")
    assert weight_bytes(model, "fp4") == pytest.approx(0.5 * 70.554e9)
    assert weight_bytes(model, "fp4") == pytest.approx(weight_bytes(model, "fp8") / 2)
    b200 = builtin_catalog().get("b200")
    fp8 = memory_plan(Deployment(model, b200, 1, "fp8", "fp8"), 4096)
    fp4 = memory_plan(Deployment(model, b200, 1, "fp4", "fp8"), 4096)
    assert fp4.weight_bytes_per_gpu == pytest.approx(fp8.weight_bytes_per_gpu / 2)
    assert fp4.kv_bytes_per_gpu == pytest.approx(fp8.kv_bytes_per_gpu + fp4.weight_bytes_per_gpu)  # the rest is KV


@pytest.mark.parametrize(
    ("model", "precision", "expected"),
    [
        ("deepseek-v3", "bf16", 61 * (512 + 64) * 2),  # 70,272 B: ~70 KB, not 2 * 61 * 128 * 128 * 2 (3.8 MiB)
        ("deepseek-v3", "fp8", 61 * (512 + 64) * 1),
        ("deepseek-v2-lite", "bf16", 27 * (512 + 64) * 2),
        ("llama-2-7b", "bf16", 2 * 32 * 32 * 128 * 2),  # MHA: 512 KiB
        ("llama-2-70b", "bf16", 2 * 80 * 8 * 128 * 2),
        ("qwen3-8b", "bf16", 2 * 36 * 8 * 128 * 2),
    ],
)
def test_kv_bytes_of_added_models_by_hand(model: str, precision: str, expected: int) -> None:
    assert kv_bytes_per_token(get_model(model), precision) == expected


@pytest.mark.parametrize(
    ("model", "total", "activated"),
    [
        ("llama-2-7b", 6.74e9, None),
        ("llama-2-70b", 68.98e9, None),
        ("qwen3-8b", 8.19e9, None),
        # DeepSeek's published "activated" counts leave out the input-embedding lookup: the matmul parameters
        ("deepseek-v2-lite", 15.7e9, 2.4e9),
        ("deepseek-v3", 671e9, 37e9),
    ],
)
def test_param_counts_match_the_published_ones(model: str, total: float, activated: float | None) -> None:
    arch = get_model(model)
    assert arch.params == pytest.approx(total, rel=0.005)
    if activated is not None:
        assert arch.is_moe and arch.is_mla
        assert arch.matmul_params_per_token == pytest.approx(activated, rel=0.03)
        assert arch.expert_params < arch.params  # shared experts, dense layers, attention are not routed


def test_deepseek_v3_config_json_counts_mla_moe_params(tmp_path) -> None:
    config = {  # deepseek-ai/DeepSeek-V3 config.json, the fields that decide shapes
        "model_type": "deepseek_v3",
        "hidden_size": 7168,
        "num_hidden_layers": 61,
        "num_attention_heads": 128,
        "num_key_value_heads": 128,
        "intermediate_size": 18432,
        "moe_intermediate_size": 2048,
        "n_routed_experts": 256,
        "n_shared_experts": 1,
        "num_experts_per_tok": 8,
        "first_k_dense_replace": 3,
        "q_lora_rank": 1536,
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
        "vocab_size": 129280,
        "max_position_embeddings": 163840,
        "tie_word_embeddings": False,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    arch = from_hf_config(tmp_path)
    catalog = get_model("deepseek-v3")
    assert arch.params == pytest.approx(catalog.params, rel=1e-4)
    assert arch.params_per_token == pytest.approx(catalog.params_per_token, rel=1e-4)
    assert arch.expert_params == pytest.approx(catalog.expert_params)
    assert (arch.moe_layers, arch.head_dim) == (58, 128)
    assert kv_bytes_per_token(arch, "bf16") == 61 * 576 * 2


def test_mla_kv_cache_is_replicated_across_tensor_parallel_gpus() -> None:
    model = get_model("deepseek-v3")
    b200 = builtin_catalog().get("b200")
    plan = memory_plan(Deployment(model, b200, 8, "fp8", "fp8"), 8192)
    assert kv_cache_shards(model, 8) == 1 and kv_cache_shards(get_model("llama-3.1-70b"), 8) == 8
    tokens = int(plan.kv_bytes_per_gpu / (61 * 576))  # each GPU holds the whole latent of every token it caches
    assert plan.kv_capacity_tokens == tokens - tokens % 16
    # 671 GB of fp8 weights: 4 x 0.9 x 180 GiB = 696 GB leaves a few GB per GPU, and each holds every token's latent
    assert plan.fits and smallest_fitting_tp(model, b200, "fp8", "fp8", 8192) == 4
