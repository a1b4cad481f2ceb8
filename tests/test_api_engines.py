"""The APIs beyond OpenAI chat against real engines: Anthropic Messages and OpenAI Responses on llama-server
(with an API key, sent the way each API sends it) and on vLLM, Responses sessions chained by
previous_response_id on vLLM, rerank on llama-server and infinity (the tiny reranker) with its cost per 1M
documents, a generic JSON template on llama-server's native route, and a real server answering another API's
shape (one line naming the mismatch). Images on a real engine (sd-server): tests/test_images_engine.py."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.gateway import running_gateway
from servewise.store import RunStore

from cli_runner import servewise
from engines.servers import EngineServer, InfinityServer, LlamaServer, reranker_missing_reason

pytestmark = [pytest.mark.engines, pytest.mark.slow]

KEY = "sk-anthropic-DO-NOT-STORE-7310"


@pytest.fixture(scope="module")
def keyed_llama() -> Iterator[LlamaServer]:
    """llama-server with an API key: it accepts it as ``x-api-key`` (Anthropic) or a Bearer token.

    One compute thread, so the other core is the load generator's: ggml's threads spin while they decode, and
    with both cores theirs a tiny model's whole stream waited for the client and arrived in one read (ttft ==
    e2e) in 21 of 90 requests here, against 0 of 90 on one thread."""
    reason = LlamaServer.missing_reason()
    if reason:
        pytest.skip(reason)
    with LlamaServer(api_key=KEY, threads=1) as server:
        yield server


@pytest.fixture(scope="module", params=["llama", "infinity"])
def reranker(request) -> Iterator[EngineServer]:
    """The tiny BERT cross-encoder behind llama-server --reranking and behind infinity, one at a time."""
    cls = LlamaServer if request.param == "llama" else InfinityServer
    reason = cls.missing_reason() or reranker_missing_reason()
    if reason:
        pytest.skip(reason)
    with cls(reranker=True) as server:
        yield server


def _bench(url: str, store: Path, *extra: str, code: int = 0, env: dict[str, str] | None = None) -> dict:
    result = servewise("bench", "--target", url, "--quiet", "--json", "-", "--api-key-env", "SW_KEY", *extra,
                       store=store, env={"SW_KEY": KEY} | (env or {}), timeout=600)  # fmt: skip
    assert result.code == code, result.stdout[-2000:] + result.stderr[-2000:]
    assert KEY not in result.stdout + result.stderr
    return result.json() if code == 0 else {"stderr": result.stderr, "stdout": result.stdout}


def _spec(tmp_path: Path, url: str, **target: object) -> str:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"target": {"url": url, **target}}))
    return str(path)


@pytest.mark.parametrize("api", ["anthropic", "responses"])
@pytest.mark.parametrize("stream", ["--stream", "--no-stream"])
def test_llama_server_speaks_each_api(keyed_llama, store_path, api, stream):
    summary = _bench(keyed_llama.base_url, store_path, "--api", api, stream, "--load", "concurrency:2",
                     "--requests", "8", "--input-tokens", "48", "--output-tokens", "12")  # fmt: skip
    m = summary["metrics"]
    assert m["requests_ok"] == 8 and m["requests_failed"] == 0
    assert m["output_tokens_source"] == "usage" and m["mean_output_tokens"] == 12  # usage, read from this API
    assert m["mean_input_tokens"] > 40  # cache reads and the rest, summed: the whole prompt
    if stream == "--stream":
        # one text delta per token: TTFT before the end, and every later delta an inter-token gap
        assert m["ttft_ms"]["p50"] < m["e2e_ms"]["p50"] and m["itl_ms"]["count"] >= 8 * 10
    with RunStore(store_path) as store:
        records = list(store.iter_records(summary["run_id"]))
    assert all(r.output_tokens == 12 and r.finish_reason for r in records)
    assert any(r.cached_tokens for r in records)  # llama's prompt cache, reported in this API's own fields
    assert KEY.encode() not in store_path.read_bytes()
    exported = servewise("runs", "export", summary["run_id"], store=store_path).stdout
    assert KEY not in exported


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("api", "route", "extra", "named"),
    [
        ("anthropic", "/v1/chat/completions", {}, "OpenAI chat completions, not Anthropic Messages"),
        (
            "responses",
            "/v1/messages",
            {"messages": HI, "max_tokens": 4},
            "Anthropic Messages, not OpenAI Responses",
        ),
        ("chat", "/v1/responses", {"input": "hi"}, "OpenAI Responses, not OpenAI chat or completions"),
        ("anthropic", "/v1/responses", {"input": "hi"}, "OpenAI Responses, not Anthropic Messages"),
        ("rerank", "/v1/completions", {"prompt": "hi", "max_tokens": 2}, "OpenAI completions, not rerank"),
        ("images", "/v1/completions", {"max_tokens": 2}, "OpenAI completions, not OpenAI images"),
    ],
)
def test_another_apis_answer_is_named_in_one_line(
    keyed_llama, store_path, tmp_path, api, route, extra, named
):
    """The request is made acceptable to the other route (extra_body), so what differs is only the answer's shape."""
    spec = _spec(tmp_path, keyed_llama.base_url, api=api, route=route, extra_body=extra)
    out = _bench(keyed_llama.base_url, store_path, "--spec", spec, "--load", "concurrency:1", "--requests", "2",
                 "--output-tokens", "4", code=3)  # fmt: skip
    assert "Traceback" not in out["stderr"]
    metrics = json.loads(out["stdout"])["metrics"]
    assert metrics["errors_by_class"] == {"protocol": 2}
    line = metrics["error_examples"]["protocol"]
    assert named in line and "check --api" in line and "\n" not in line


def test_vllm_responses_sessions_chain_previous_response_id(vllm_server, store_path):
    """Each later turn sends only its new message and previous_response_id; vLLM (its response store on) holds
    the history, so the prompt it counts grows turn by turn though the request does not."""
    summary = _bench(vllm_server.base_url, store_path, "--api", "responses", "--load",
                     "sessions:users=2,turns=3,think=0s", "--requests", "6", "--input-tokens", "24",
                     "--output-tokens", "8")  # fmt: skip
    assert summary["metrics"]["requests_ok"] == 6
    with RunStore(store_path) as store:
        records = sorted(store.iter_records(summary["run_id"]), key=lambda r: (r.session, r.turn))
    by_session: dict[int, list[int]] = {}
    for r in records:
        by_session.setdefault(r.session, []).append(r.input_tokens)
    for prompts in by_session.values():
        # turn k's prompt holds turns 1..k-1 and their 8-token answers: only the server could have added them
        assert all(later >= earlier + 24 + 8 for earlier, later in itertools.pairwise(prompts)), prompts


@pytest.mark.parametrize("api", ["responses", "anthropic"])
def test_vllm_streams_each_api(vllm_server, store_path, api):
    """vLLM's own Responses and Anthropic Messages routes, streamed: one delta a token, usage read from each."""
    summary = _bench(vllm_server.base_url, store_path, "--api", api, "--load", "concurrency:2", "--requests", "8",
                     "--input-tokens", "48", "--output-tokens", "12")  # fmt: skip
    m = summary["metrics"]
    assert m["requests_ok"] == 8 and m["output_tokens_source"] == "usage" and m["mean_input_tokens"] > 40
    assert m["ttft_ms"]["p50"] < m["e2e_ms"]["p50"] and m["itl_ms"]["count"] >= 8 * 5
    if api == "responses":  # Responses takes ignore_eos; Anthropic's request model drops it
        assert m["mean_output_tokens"] == 12
    assert api in summary["target"]["api"] and "TTFT" in summary["target"]["timing"]


def test_llama_server_refuses_previous_response_id_by_name(keyed_llama, store_path):
    """llama.cpp's Responses route holds no history: a session's second turn (which carries the first answer's
    response id) is refused, and the run says so rather than sending the history silently another way."""
    summary = _bench(keyed_llama.base_url, store_path, "--api", "responses", "--load", "sessions:users=1,turns=2,think=0s",
                     "--requests", "2", "--output-tokens", "4", code=0)  # fmt: skip
    with RunStore(store_path) as store:
        first, second = sorted(store.iter_records(summary["run_id"]), key=lambda r: r.turn)
    assert first.ok and second.status == 400 and "previous_response_id" in second.error_detail


def test_rerank_on_real_rerankers(reranker, store_path):
    summary = _bench(reranker.base_url, store_path, "--api", "rerank", "--load", "concurrency:2", "--requests", "12",
                     "--input-tokens", "90")  # fmt: skip
    m = summary["metrics"]
    assert m["requests_ok"] == 12 and m["requests_failed"] == 0 and m["e2e_ms"]["p50"] > 0
    # eight documents of ten words and a ten-word query: each scored against the query, so the server counts
    # at least the documents' words and the query once
    assert m["mean_input_tokens"] >= 90
    assert summary["metrics"]["ttft_ms"]["p50"] <= summary["metrics"]["e2e_ms"]["p50"]
    outcome = summary["outcome"]
    assert outcome["unit"] == "documents" and outcome["per_s"] == pytest.approx(m["requests_per_s"] * 8)
    # what a million documents cost at the rate measured, on a GPU of that price
    plan = servewise("plan", "--from-run", summary["run_id"], "--current-gpu", "rtx4090", "--price", "rtx4090=0.69",
                     "--json", store=store_path)  # fmt: skip
    assert plan.code == 0, plan.stderr
    documents = plan.json()
    [tier] = documents["tiers"]
    assert documents["unit"] == "documents" and documents["per"] == 1_000_000 and tier["measured"]
    assert tier["cost"] == pytest.approx(0.69 / (outcome["per_s"] * 3600) * 1e6)


LLAMA_NATIVE = {
    "body": '{"prompt": {{ prompt|tojson }}, "n_predict": {{ max_tokens }}, "stream": {{ stream|tojson }},'
            ' "ignore_eos": true}',
    "text_path": "content", "output_tokens_path": "tokens_predicted", "input_tokens_path": "tokens_evaluated",
}  # fmt: skip


@pytest.mark.parametrize("stream", [True, False])
def test_http_template_on_llama_servers_own_completion_route(keyed_llama, store_path, tmp_path, stream):
    """llama.cpp's native /completion (not OpenAI's shape) through a body template and JSON paths."""
    spec = _spec(
        tmp_path, keyed_llama.base_url, api="http", route="/completion", http=LLAMA_NATIVE, stream=stream
    )
    summary = _bench(keyed_llama.base_url, store_path, "--spec", spec, "--load", "concurrency:2", "--requests", "6",
                     "--input-tokens", "32", "--output-tokens", "10")  # fmt: skip
    m = summary["metrics"]
    assert m["requests_ok"] == 6 and m["mean_output_tokens"] == 10 and m["output_tokens_source"] == "usage"
    assert m["mean_input_tokens"] > 20
    if stream:
        assert m["itl_ms"]["count"] >= 6 * 8 and m["ttft_ms"]["p50"] < m["e2e_ms"]["p50"]


def test_a_traces_tenant_and_priority_reach_a_gateway_in_front_of_llama_server(keyed_llama, store_path, tmp_path):
    """A replayed trace's tenant and priority, sent as the headers the spec names, arrive at the gateway in front
    of a real engine request by request, and the engine answers every one."""
    lines = [(0.0, "acme", 1), (0.05, "globex", 2), (0.1, None, None), (0.15, "acme", None), (0.2, 7, 3)]
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_tokens": 16, "output_tokens": 4, "session_id": i}
                                        | ({"tenant": who} if who is not None else {})
                                        | ({"priority": rank} if rank is not None else {})) + "\n"
                             for i, (t, who, rank) in enumerate(lines)))  # fmt: skip
    with running_gateway(keyed_llama.base_url, tmp_path / "gw.log", log_headers=("x-tenant", "x-priority")) as url:
        spec = _spec(tmp_path, url, headers={"x-tenant": "{tenant}", "x-priority": "{priority}", "x-team": "ml"})
        summary = _bench(url, store_path, "--spec", spec, "--trace", str(trace))
        logged = [line.split()[1:] for line in (tmp_path / "gw.log").read_text().splitlines()]
    seen = [fields[2:] for fields in logged if fields[:2] == ["POST", "/v1/chat/completions"]]  # not the probes
    assert summary["metrics"]["requests_failed"] == 0 and summary["metrics"]["requests_ok"] == len(lines)
    expected = [[f"x-tenant={who if who is not None else '-'}", f"x-priority={rank if rank is not None else '-'}"]
                for _, who, rank in lines]  # fmt: skip
    assert sorted(seen) == sorted(expected), seen
