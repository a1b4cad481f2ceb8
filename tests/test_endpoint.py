"""One reading of an endpoint URL and of /v1/models, and one request builder, for bench, probes and coldstart."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from servewise.coldstart import Endpoint
from servewise.coldstart.probe import stream_request
from servewise.probes import ProbeConfig, run_probes
from servewise.probes.context import Reply
from servewise.protocols.endpoint import (
    api_base_path,
    auth_headers,
    health_url,
    host_port,
    listed_models,
    metrics_url,
    model_ids,
    models_url,
    origin,
    server_root,
)
from servewise.protocols.openai import OpenAIAdapter
from servewise.records import ErrorClass, RequestRecord
from servewise.spec.models import TargetSpec
from servewise.workload.plan import PlannedRequest
from test_probes import _serve


@pytest.mark.parametrize(
    ("url", "root", "models"),
    [
        ("http://h:1", "http://h:1", "http://h:1/v1/models"),
        ("http://h:1/", "http://h:1", "http://h:1/v1/models"),
        ("http://h:1/v1", "http://h:1", "http://h:1/v1/models"),
        ("http://h:1/v1/", "http://h:1", "http://h:1/v1/models"),
        ("https://gw/llm/v1", "https://gw/llm", "https://gw/llm/v1/models"),
        ("https://gw/llm", "https://gw/llm", "https://gw/llm/v1/models"),
        ("http://u:p@h:1/v1", "http://u:p@h:1", "http://u:p@h:1/v1/models"),
    ],
)
def test_every_url_is_composed_from_one_reading_of_the_base(url: str, root: str, models: str) -> None:
    assert server_root(url) == root
    assert models_url(url) == models
    assert metrics_url(url) == root + "/metrics"
    assert health_url(url) == origin(url) + "/health"
    assert api_base_path(url) == models.removeprefix(origin(url)).removesuffix("models")


def test_origin_refuses_what_is_no_url() -> None:
    assert origin("http://h:8000/health") == "http://h:8000"
    with pytest.raises(ValueError, match="not an http"):
        origin("localhost:8000")


def test_address_and_key() -> None:
    assert host_port("http://h") == ("h", 80)
    assert host_port("https://h/v1") == ("h", 443)
    assert host_port("http://[::1]:9/") == ("::1", 9)
    assert auth_headers("k") == {"Authorization": "Bearer k"}
    assert auth_headers(None) == {} and auth_headers("") == {}


def test_model_lists_parsed_or_raw_and_anything_else_is_empty() -> None:
    body = {"data": [{"id": "a", "max_model_len": 8}, {"object": "model"}, "junk", {"id": ""}]}
    assert listed_models(body) == [{"id": "a", "max_model_len": 8}, {"object": "model"}, {"id": ""}]
    assert listed_models(json.dumps(body).encode()) == listed_models(body)
    assert model_ids(listed_models(body)) == ["a"]
    for junk in (b"not json", b"[]", b'{"data": null}', b'{"data": {"id": "a"}}', b'{"data": 3}', None):
        assert listed_models(junk) == []


def test_adapter_leaves_out_a_model_it_was_not_given_and_frames_any_body() -> None:
    adapter = OpenAIAdapter(TargetSpec(url="http://h:1", ignore_eos=False), None, None)
    request = PlannedRequest(index=0, prompt="hi", messages=None, input_tokens=None, max_tokens=3)
    head, body = adapter.request_bytes(request).split(b"\r\n\r\n", 1)
    assert json.loads(body) == {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert b"Authorization" not in head
    framed = adapter.frame(b'{"bad": ')
    assert framed.endswith(b'\r\nContent-Length: 8\r\n\r\n{"bad": ')


def _role_then_content(bodies: list[dict[str, Any]], delay_s: float) -> web.Application:
    """Streams a role-only event at once and the first content ``delay_s`` later; keeps every body."""

    async def chat(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.json())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices": [{"delta": {"role": "assistant"}}]}\n\n')
        await asyncio.sleep(delay_s)
        await resp.write(b'data: {"choices": [{"delta": {"content": "hi"}, "finish_reason": "stop"}]}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def test_probe_and_coldstart_ttft_is_first_content_after_the_write() -> None:
    """A role-only event is no token: TTFT waits for content, as bench's does, in probes and coldstart."""
    bodies: list[dict[str, Any]] = []
    app = _role_then_content(bodies, 0.25)

    async def both(url: str) -> tuple[Any, Any]:
        config = ProbeConfig(model="m", request_timeout_s=3, include_overload=False)
        results = {r.name: r for r in await run_probes(url, config)}
        endpoint = Endpoint(base_url=url, ready_url=health_url(url), max_tokens=4)  # url ends in /v1
        record = await stream_request(endpoint, None)
        return results["streaming"], record

    streaming, record = asyncio.run(_serve(app, both))
    assert 0.25 <= streaming.facts["ttft_s"] < 2, streaming.evidence
    assert record.ok and 0.25 <= record.ttft < 2
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    probe_body = next(b for b in bodies if b.get("stream") and b.get("model") == "m")
    assert probe_body == {"model": "m", "messages": [{"role": "user", "content": "Say hello in five words."}],
                          "max_tokens": 8, **stream}  # fmt: skip
    assert bodies[-1] == {"messages": [{"role": "user", "content": "Say hello in one short sentence."}],
                          "max_tokens": 4, **stream}  # fmt: skip


def test_a_probe_reads_an_error_the_transport_cut_short() -> None:
    """The transport keeps an error body's first 300 characters: no JSON any more, still its message."""
    detail = 'HTTP 400: {"error":{"message":"prompt too long: ' + "x" * 300
    record = RequestRecord(index=0, t_sched=0.0, t_send=1.0, t_end=1.5, status=400)
    record.error, record.error_detail = ErrorClass.HTTP_STATUS, detail
    reply = Reply.of(record)
    assert not reply.ok and reply.describe().startswith("400 in 0.50 s: prompt too long: xxx")
    timeout = RequestRecord(index=0, t_sched=0.0, t_send=1.0, t_end=3.0, error=ErrorClass.TIMEOUT)
    assert Reply.of(timeout).describe() == "no answer in 2.0 s"
