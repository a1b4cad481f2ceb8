"""Smoke tests against real serving engines (llama.cpp, vLLM on CPU, infinity-emb).

Install first: `bash tests/engines/install.sh`. Run: `pytest tests/test_engines_smoke.py -m engines -s`
(-s prints what each engine did with streaming). Missing engines skip with the reason.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines.conftest_fixtures import infinity_server, llama_server, vllm_server  # noqa: F401

pytestmark = pytest.mark.engines

MAX_TOKENS = 16
MESSAGES = [{"role": "user", "content": "Tell me a short story about the river and the king."}]


def post(url: str, body: dict, timeout: float = 120.0) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise AssertionError(f"POST {url} -> {e.code}: {e.read()[:2000]!r}") from e


def get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def stream(url: str, body: dict, timeout: float = 120.0) -> dict:
    """POST with stream=true; return the parsed SSE events and what the stream looked like."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    events: list[dict] = []
    done = False
    t0 = time.monotonic()
    first_content_at = None
    with urllib.request.urlopen(req, timeout=timeout) as r:
        assert r.status == 200
        ctype = r.headers.get("Content-Type", "")
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                continue
            ev = json.loads(data)
            events.append(ev)
            if first_content_at is None and _delta_text(ev):
                first_content_at = time.monotonic() - t0
    content_events = [e for e in events if _delta_text(e)]
    usage_idx = [i for i, e in enumerate(events) if e.get("usage")]
    finish_idx = [
        i for i, e in enumerate(events) if any(c.get("finish_reason") for c in e.get("choices") or [])
    ]
    return {
        "content_type": ctype,
        "events": events,
        "done": done,
        "text": "".join(_delta_text(e) for e in events),
        "n_events": len(events),
        "n_content_events": len(content_events),
        "usage": events[usage_idx[-1]]["usage"] if usage_idx else None,
        "usage_event_index": usage_idx,
        "finish_event_index": finish_idx,
        "usage_event_has_choices": bool(events[usage_idx[-1]].get("choices")) if usage_idx else None,
        "ttft_s": first_content_at,
        "total_s": time.monotonic() - t0,
    }


def _delta_text(ev: dict) -> str:
    out = ""
    for c in ev.get("choices") or []:
        if "delta" in c:
            out += c["delta"].get("content") or ""
        else:
            out += c.get("text") or ""
    return out


def _report(engine: str, what: str, info: dict) -> None:
    shown = {k: v for k, v in info.items() if k != "events"}
    print(f"\n[{engine}] {what}: {json.dumps(shown, default=str)}")


def _check_words(text: str) -> None:
    words = text.split()
    assert len(words) >= 3, f"expected readable words, got {text!r}"
    assert all(w.isalpha() for w in words), f"expected plain words, got {text!r}"


def _chat_checks(engine: str, srv) -> None:
    api = srv.api_base
    # non-streaming chat
    r = post(
        api + "/chat/completions",
        {"model": srv.model, "messages": MESSAGES, "max_tokens": MAX_TOKENS, "ignore_eos": True},
    )
    msg = r["choices"][0]["message"]["content"]
    _check_words(msg)
    assert r["usage"]["completion_tokens"] == MAX_TOKENS, r["usage"]
    assert r["usage"]["prompt_tokens"] > 5
    assert r["choices"][0]["finish_reason"] == "length"
    _report(engine, "chat", {"content": msg, "usage": r["usage"]})

    # streaming chat with usage
    s = stream(
        api + "/chat/completions",
        {
            "model": srv.model,
            "messages": MESSAGES,
            "max_tokens": MAX_TOKENS,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    _report(engine, "chat stream", s)
    assert "text/event-stream" in s["content_type"]
    _check_words(s["text"])
    assert s["usage"] is not None, "no usage in the stream despite include_usage"
    assert s["usage"]["completion_tokens"] == MAX_TOKENS, s["usage"]
    assert s["finish_event_index"], "no chunk carried finish_reason"
    assert s["done"], "stream did not end with data: [DONE]"

    # completions, non-streaming and streaming
    r = post(
        api + "/completions",
        {
            "model": srv.model,
            "prompt": "the river and the king",
            "max_tokens": MAX_TOKENS,
            "ignore_eos": True,
        },
    )
    _check_words(r["choices"][0]["text"])
    assert r["usage"]["completion_tokens"] == MAX_TOKENS, r["usage"]
    _report(engine, "completion", {"text": r["choices"][0]["text"], "usage": r["usage"]})
    s = stream(
        api + "/completions",
        {
            "model": srv.model,
            "prompt": "the river and the king",
            "max_tokens": MAX_TOKENS,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    _report(engine, "completion stream", s)
    _check_words(s["text"])
    assert s["usage"] is not None and s["usage"]["completion_tokens"] == MAX_TOKENS, s["usage"]

    # max_tokens governs exact lengths at other sizes too
    for n in (1, 7, 64):
        r = post(
            api + "/completions",
            {
                "model": srv.model,
                "prompt": "a story",
                "max_tokens": n,
                "ignore_eos": True,
                "temperature": 1.0,
            },
        )
        assert r["usage"]["completion_tokens"] == n, (n, r["usage"])


def test_llama_server(llama_server):  # noqa: F811
    srv = llama_server
    print(f"\n[llama] ready in {srv.ready_seconds:.2f}s pid={srv.pid} log={srv.log_path}")
    st, body = get(srv.base_url + "/v1/models")
    assert st == 200 and srv.model in body
    _chat_checks("llama", srv)
    st, metrics = get(srv.base_url + "/metrics")
    assert st == 200
    assert "llamacpp:prompt_tokens_total" in metrics, metrics[:500]
    assert "llamacpp:tokens_predicted_total" in metrics


def test_vllm_server(vllm_server):  # noqa: F811
    srv = vllm_server
    print(f"\n[vllm] ready in {srv.ready_seconds:.2f}s pid={srv.pid} log={srv.log_path}")
    st, body = get(srv.base_url + "/v1/models")
    assert st == 200 and srv.model in body
    _chat_checks("vllm", srv)
    st, metrics = get(srv.base_url + "/metrics")
    assert st == 200
    for name in ("vllm:num_requests_running", "vllm:generation_tokens", "vllm:time_to_first_token_seconds"):
        assert name in metrics, name


def test_infinity_server(infinity_server):  # noqa: F811
    srv = infinity_server
    print(f"\n[infinity] ready in {srv.ready_seconds:.2f}s pid={srv.pid} log={srv.log_path}")
    st, body = get(srv.api_base + "/models")
    assert st == 200 and srv.model in body, body[:500]
    texts = ["the river runs to the sea", "a king sat on his throne", "the river runs to the ocean"]
    r = post(srv.api_base + "/embeddings", {"model": srv.model, "input": texts})
    vecs = [d["embedding"] for d in sorted(r["data"], key=lambda d: d["index"])]
    assert len(vecs) == 3 and all(len(v) == 384 for v in vecs)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True)) / (
            sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5
        )

    # real MiniLM weights: near-paraphrases are closer than unrelated sentences
    assert cos(vecs[0], vecs[2]) > cos(vecs[0], vecs[1]) + 0.2, (cos(vecs[0], vecs[2]), cos(vecs[0], vecs[1]))
    _report("infinity", "embeddings", {"usage": r.get("usage"), "dim": len(vecs[0])})
    st, _ = get(srv.base_url + "/metrics")
    assert st == 200, st
    st, _ = get(srv.base_url + "/health")
    assert st == 200
