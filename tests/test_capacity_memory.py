"""Memory model, catalogs and name errors, checked against numbers worked out by hand."""

from __future__ import annotations

import json

import pytest

from servewise.capacity import (
    CapacityError,
    Deployment,
    EngineConfig,
    builtin_catalog,
    from_hf_config,
    get_model,
    kv_bytes_per_token,
    memory_plan,
    parse_prices,
    smallest_fitting_tp,
    weight_bytes,
)
from servewise.capacity.hardware import GIB

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
