"""`servewise bench` against real engines nobody here wrote: llama.cpp, vLLM on CPU, infinity."""

from __future__ import annotations

import pytest

from servewise.store import RunStore

from cli_runner import servewise
from engines.servers import tiny_model_dir

pytestmark = [pytest.mark.engines, pytest.mark.slow]


def bench(server, store, *extra):
    result = servewise("bench", "--target", server.base_url, "--quiet", "--json", "-", *extra, store=store, timeout=600)
    assert result.code == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.json()


@pytest.mark.parametrize(
    ("api", "stream"), [("chat", "--stream"), ("chat", "--no-stream"), ("completions", "--stream"), ("completions", "--no-stream")]
)
def test_llama_server_all_apis(llama_server, store_path, api, stream):
    summary = bench(llama_server, store_path, "--api", api, stream, "--load", "concurrency:4", "--requests", "12", "--input-tokens", "64", "--output-tokens", "24")
    m = summary["metrics"]
    assert m["requests_ok"] == 12 and m["requests_failed"] == 0
    # ignore_eos and the tiny model's output head make every answer exactly max_tokens long
    assert m["output_tokens_source"] == "usage" and m["mean_output_tokens"] == 24
    assert m["mean_input_tokens"] > 40  # the server's own count of our ~64-word prompts plus the template
    assert summary["target"]["model"] == llama_server.model
    assert m["e2e_ms"]["p50"] > 0 and m["ttft_ms"]["p50"] <= m["e2e_ms"]["p50"]
    if stream == "--stream":
        # every answer's pace is measured, or the answer is named as one that arrived whole (llama-server's two
        # ggml threads spin on both cores and can keep the client from reading until the answer has ended)
        paced = 12 - m.get("arrived_whole", 0)
        assert paced >= 1 and m["tpot_ms"]["count"] == paced and m["itl_ms"]["count"] >= paced * 20


def test_llama_server_open_loop_with_slo_and_records(llama_server, store_path):
    summary = bench(llama_server, store_path, "--load", "poisson:4", "--duration", "5", "--output-tokens", "16", "--slo", "errors=1%")
    assert summary["slo"]["met"] is True and summary["client"]["limited"] is False
    with RunStore(store_path) as store:
        records = list(store.iter_records(summary["run_id"]))
        run = store.get_run(summary["run_id"])
    assert len(records) == summary["metrics"]["requests_ok"]
    assert all(len(r.chunk_times) >= 15 for r in records)  # one content chunk per token
    assert run.target["models"] and run.environment["cpu_count"]


def test_tokenizer_makes_prompt_lengths_exact(llama_server, store_path):
    """With the model's own tokenizer.json, llama-server counts exactly the prompt tokens asked for, in
    every request (completions has no template to add to them)."""
    pytest.importorskip("tokenizers")
    for tokens in (37, 83):
        summary = bench(llama_server, store_path, "--api", "completions", "--tokenizer", str(tiny_model_dir() / "hf"), "--load", "concurrency:2", "--requests", "6", "--input-tokens", str(tokens), "--output-tokens", "4")
        with RunStore(store_path) as store:
            counts = [r.input_tokens for r in store.iter_records(summary["run_id"])]
        assert counts == [tokens] * 6


def test_vllm_chat_and_completions_streamed(vllm_server, store_path):
    for api in ("chat", "completions"):
        summary = bench(vllm_server, store_path, "--api", api, "--load", "concurrency:4", "--requests", "12", "--input-tokens", "64", "--output-tokens", "32")
        m = summary["metrics"]
        assert m["requests_ok"] == 12 and m["mean_output_tokens"] == 32 and m["output_tokens_source"] == "usage"
        assert m["itl_ms"]["count"] >= (12 - m.get("arrived_whole", 0)) * 25, m.get("arrived_whole")


def test_vllm_not_streamed(vllm_server, store_path):
    summary = bench(vllm_server, store_path, "--no-stream", "--load", "concurrency:2", "--requests", "6", "--output-tokens", "16")
    assert summary["metrics"]["requests_ok"] == 6 and summary["metrics"]["mean_output_tokens"] == 16


def test_infinity_embeddings(infinity_server, store_path):
    summary = bench(infinity_server, store_path, "--api", "embeddings", "--load", "concurrency:4", "--requests", "40", "--input-tokens", "32")
    m = summary["metrics"]
    assert m["requests_ok"] == 40 and m["e2e_ms"]["p50"] > 0 and m["requests_per_s"] > 1
