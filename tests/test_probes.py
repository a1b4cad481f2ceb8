"""Readiness probes against servers written here: one that behaves like a production server and one that
does everything wrong (no health endpoint, 5xx on bad input, hangs on overload, no auth)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from servewise.probes import PROBE_NAMES, ProbeConfig, ProbeResult, ProbeStatus, run_probes
from servewise.secrets import load_api_key

KEY = "sk-servewise-test-secret-0123456789"
CONTEXT = 512


def _chat_chunk(text: str | None, *, finish: str | None = None, usage: dict | None = None) -> bytes:
    event: dict = {"id": "x", "object": "chat.completion.chunk", "model": "tiny",
                   "choices": [] if text is None else [{"index": 0, "delta": {"content": text},
                                                       "finish_reason": finish}]}  # fmt: skip
    if usage:
        event["usage"] = usage
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def good_app(capacity: int = 2) -> web.Application:
    """Validates input, sheds load with 429, requires a key, exposes health/ready/metrics/version."""
    in_flight = 0

    async def chat(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": {"message": "invalid api key"}}, status=401)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"message": "invalid JSON body"}}, status=400)
        if body.get("model") != "tiny":
            return web.json_response(
                {"error": {"message": f"model {body.get('model')!r} not found"}}, status=404
            )
        prompt = body["messages"][-1]["content"]
        if len(prompt.split()) > CONTEXT:
            return web.json_response({"error": {"message": "prompt exceeds the context length"}}, status=400)
        if in_flight >= capacity:
            return web.json_response({"error": {"message": "server busy"}}, status=429)
        in_flight += 1
        try:
            tokens = min(int(body.get("max_tokens", 8)), 8)
            if not body.get("stream"):
                await asyncio.sleep(0.3)
                return web.json_response({"choices": [{"message": {"content": "hi " * tokens}}],
                                          "usage": {"prompt_tokens": 5, "completion_tokens": tokens}})  # fmt: skip
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for _ in range(tokens):
                await asyncio.sleep(0.005)
                await resp.write(_chat_chunk("hi "))
            await resp.write(_chat_chunk("", finish="length"))
            await resp.write(_chat_chunk(None, usage={"prompt_tokens": 5, "completion_tokens": tokens}))
            await resp.write(b"data: [DONE]\n\n")
            return resp
        finally:
            in_flight -= 1

    async def models(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"data": [{"id": "tiny", "max_model_len": CONTEXT}]})

    async def metrics(_: web.Request) -> web.Response:
        text = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n"
        return web.Response(text=text, content_type="text/plain")

    async def fixed(request: web.Request) -> web.Response:
        return web.json_response(FIXED[request.path])

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    for path in FIXED:
        app.router.add_get(path, fixed)
    return app


FIXED = {"/health": {"status": "ok"}, "/ready": {"ready": True}, "/version": {"version": "9.9.9"}}


def bad_app() -> web.Application:
    """No health, no metrics, 500 on bad JSON, serves any model name, queues overload until clients give up."""
    lock = asyncio.Lock()

    async def chat(request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.text())
        except ValueError:
            return web.Response(text="Internal Server Error", status=500)
        if len(str(body)) > 50_000:
            return web.Response(text="Traceback (most recent call last): ... <script>x</script>", status=500)
        async with lock:  # one at a time, everyone else waits with no bound
            await asyncio.sleep(0.4 if not body.get("stream") else 0.01)
            if not body.get("stream"):
                return web.json_response({"choices": [{"message": {"content": "hi"}}]})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(_chat_chunk("hi"))
            await resp.write(_chat_chunk("", finish="stop"))
            return resp

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "whatever"}]})

    app = web.Application(client_max_size=64 << 20)  # takes any body, however large
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


async def _serve(
    app: web.Application, use: Callable[[str], Awaitable[list[ProbeResult]]]
) -> list[ProbeResult]:
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        return await use(f"http://127.0.0.1:{port}/v1")
    finally:
        await runner.cleanup()


def _by_name(results: list[ProbeResult]) -> dict[str, ProbeResult]:
    names = [r.name for r in results]
    assert sorted(names) == sorted(PROBE_NAMES), names
    return {r.name: r for r in results}


def test_good_server_passes_every_probe():
    config = ProbeConfig(api_key=KEY, burst_size=12, burst_timeout_s=5, request_timeout_s=5)
    results = _by_name(asyncio.run(_serve(good_app(), lambda url: run_probes(url, config))))
    failed = {n: r.evidence for n, r in results.items() if r.status is not ProbeStatus.PASS}
    assert failed == {}
    assert results["metrics"].facts["engine"] == "vllm"
    assert results["readiness"].facts["path"] == "/ready"
    assert results["version"].facts["version"] == "9.9.9"
    assert results["overload"].facts["shed"] > 0 and results["overload"].facts["timeouts"] == 0
    assert results["auth"].facts["required"] is True
    assert "context 512" in results["oversized_prompt"].evidence
    # the key is a header only: never in any result
    assert KEY not in json.dumps([r.to_dict() for r in results.values()])


def test_bad_server_fails_where_it_should():
    config = ProbeConfig(burst_size=6, burst_timeout_s=1.5, request_timeout_s=3)
    results = _by_name(asyncio.run(_serve(bad_app(), lambda url: run_probes(url, config))))
    status = {n: r.status for n, r in results.items()}
    assert status["health"] is ProbeStatus.FAIL and "no health endpoint" in results["health"].evidence
    assert status["readiness"] is ProbeStatus.FAIL
    assert status["metrics"] is ProbeStatus.FAIL and "404" in results["metrics"].evidence
    assert status["bad_json"] is ProbeStatus.FAIL and "500" in results["bad_json"].evidence
    assert (
        status["unknown_model"] is ProbeStatus.FAIL and results["unknown_model"].facts["ignores_model_name"]
    )
    assert status["oversized_prompt"] is ProbeStatus.FAIL and "500" in results["oversized_prompt"].evidence
    overload = results["overload"]
    assert overload.status is ProbeStatus.FAIL and overload.facts["timeouts"] > 0, overload.evidence
    assert "without backpressure" in overload.evidence
    assert status["auth"] is ProbeStatus.FAIL and results["auth"].facts["required"] is False
    assert status["usage"] is ProbeStatus.FAIL
    # a stream that ends on finish_reason without [DONE] is still a clean end (transformers serve does this)
    assert status["streaming"] is ProbeStatus.PASS and "finish_reason stop" in results["streaming"].evidence
    # server text is cleaned: one line, bounded
    assert all("\n" not in r.evidence and len(r.evidence) < 400 for r in results.values())


def test_hang_on_bad_json_is_a_failure_not_a_wait():
    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", hang)
    config = ProbeConfig(request_timeout_s=1, include_overload=False)
    loop_start = asyncio.new_event_loop()
    try:
        results = _by_name_partial(
            loop_start.run_until_complete(_serve(app, lambda url: run_probes(url, config)))
        )
    finally:
        loop_start.close()
    assert results["bad_json"].status is ProbeStatus.FAIL
    assert "a hang, not a refusal" in results["bad_json"].evidence


def _by_name_partial(results: list[ProbeResult]) -> dict[str, ProbeResult]:
    return {r.name: r for r in results}


def test_unreachable_target_is_unknown_everywhere():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = asyncio.run(run_probes(f"http://127.0.0.1:{port}", ProbeConfig(request_timeout_s=2)))
    assert {r.status for r in results} == {ProbeStatus.UNKNOWN}
    assert all(r.facts.get("unreachable") for r in results)


def test_api_key_from_env_or_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SW_TEST_KEY", KEY)
    assert load_api_key("SW_TEST_KEY") == KEY
    (tmp_path / "key").write_text(KEY + "\n")
    assert load_api_key(file_path=str(tmp_path / "key")) == KEY
    assert load_api_key() is None
    with pytest.raises(ValueError, match="SW_MISSING"):
        load_api_key("SW_MISSING")
    assert KEY not in repr(ProbeConfig(api_key=KEY))


def test_probe_results_round_trip():
    result = ProbeResult("metrics", ProbeStatus.PASS, "ok", {"engine": "vllm"})
    assert ProbeResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
