"""Readiness probes against real engines (llama-server, vLLM on CPU); skipped when an engine is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servewise.probes import PROBE_NAMES, ProbeConfig, ProbeStatus, run_probes_sync

from engines.conftest_fixtures import llama_server, vllm_server  # noqa: F401

pytestmark = [pytest.mark.engines, pytest.mark.slow]


def _probe(url: str) -> dict:
    config = ProbeConfig(burst_size=16, burst_max_tokens=32, burst_timeout_s=20, request_timeout_s=20)
    results = {r.name: r for r in run_probes_sync(url, config)}
    assert set(results) == set(PROBE_NAMES)
    for r in results.values():
        print(f"{r.name:17} {r.status.value:8} {r.evidence}")
    return results


def test_llama_server(llama_server):  # noqa: F811
    results = _probe(llama_server.api_base)
    assert results["metrics"].status is ProbeStatus.PASS and results["metrics"].facts["engine"] == "llamacpp"
    assert results["health"].status is ProbeStatus.PASS
    assert results["readiness"].status is ProbeStatus.PASS  # llama.cpp answers 503 while loading
    assert results["streaming"].status is ProbeStatus.PASS and "[DONE]" in results["streaming"].evidence
    assert results["usage"].status is ProbeStatus.PASS
    assert results["models"].facts["models"] == [llama_server.model]
    # llama-server serves its one model whatever name a request carries
    assert results["unknown_model"].status is ProbeStatus.FAIL
    assert results["auth"].status is ProbeStatus.FAIL and results["auth"].facts["loopback"] is True
    # it queues without bound rather than shedding: never a fast 429/503
    assert results["overload"].status is not ProbeStatus.PASS
    assert results["overload"].facts["shed"] == 0
    # llama-server (0.3.36's vendored tree) answers malformed JSON with a 500, and refuses an oversized
    # prompt cleanly against the per-slot context (-c 4096 over 4 slots)
    assert results["bad_json"].status is ProbeStatus.FAIL and "500" in results["bad_json"].evidence
    oversized = results["oversized_prompt"]
    assert oversized.status is ProbeStatus.PASS and "context 1024 tokens): 400" in oversized.evidence


def test_vllm_cpu(vllm_server):  # noqa: F811
    results = _probe(vllm_server.api_base)
    assert results["metrics"].facts["engine"] == "vllm"
    assert results["readiness"].status is ProbeStatus.PASS
    for name in ("health", "streaming", "usage", "bad_json", "unknown_model", "oversized_prompt", "version"):
        assert results[name].status is ProbeStatus.PASS, results[name].evidence
    assert "context 2048" in results["oversized_prompt"].evidence
