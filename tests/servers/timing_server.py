"""A small OpenAI-compatible server with exact, injected timing and faults, for the tests and benchmarks.

Timing: the first content chunk is written ``ttft_ms`` after the request is read, then one chunk every
``itl_ms``. Query or header ``X-Fault`` (or the model name ``fault:<name>``) picks a fault:
reset, malformed, http429, http500, http503, hang, bigline, no-done, usage-on-finish, no-usage,
multi-token, crlf, error-event, close-early, reset-on-turn-2 (resets a conversation's second turn mid-stream),
reasoning (the first three tokens are ``reasoning_content``, as a reasoning model streams them).
Prompt tokens are words over every message; a message-level prefix cache reports
``usage.prompt_tokens_details.cached_tokens``: the words of the longest run of leading messages already seen.
Run: python timing_server.py --port 8123 --ttft-ms 100 --itl-ms 10 [--capacity N] [--tls CERT KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time

from aiohttp import web

MODEL = "timing-model"


def _chunk(
    content: str | None, finish: str | None = None, usage: dict | None = None, role: bool = False,
    field: str = "content",
) -> bytes:
    delta: dict = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta[field] = content
    event = {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        event["usage"] = usage
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def _usage_only(prompt: int, completion: int, cached: int = 0) -> bytes:
    event = {"id": "cmpl-1", "object": "chat.completion.chunk", "model": MODEL, "choices": [],
             "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                       "prompt_tokens_details": {"cached_tokens": cached}}}  # fmt: skip
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


class TimingServer:
    def __init__(self, ttft_ms: float, itl_ms: float, capacity: int | None = None) -> None:
        self.ttft = ttft_ms / 1000
        self.itl = itl_ms / 1000
        self.slots = asyncio.Semaphore(capacity) if capacity else None
        self.seen: set[int] = set()

    def _cached(self, contents: list[str]) -> int:
        """Words of the longest run of leading messages seen in an earlier request or answer (then remember
        these), as an engine's prefix cache keeps a conversation's blocks, its answers' too."""
        cached = words = 0
        for j, content in enumerate(contents):
            key = hash(tuple(contents[: j + 1]))
            words += len(content.split())
            if key in self.seen and j < len(contents) - 1:
                cached = words
            self.seen.add(key)
        return cached

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "tests"}]}
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        text = body.get("input", "")
        await asyncio.sleep(self.ttft)
        return web.json_response({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1] * 384}],
                                  "model": MODEL, "usage": {"prompt_tokens": len(str(text).split()), "total_tokens": 0}})  # fmt: skip

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if self.slots is None:
            return await self._chat(request)
        async with self.slots:  # a server with N slots: beyond them, requests queue and TTFT grows
            return await self._chat(request)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        received = time.perf_counter()
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response({"error": {"message": "bad json"}}, status=400)
        fault = request.headers.get("X-Fault") or request.query.get("fault") or ""
        model = str(body.get("model", ""))
        if model.startswith("fault:"):
            fault = model.split(":", 1)[1]
        tokens = int(body.get("max_tokens") or 16)
        messages = body.get("messages") or [{"content": body.get("prompt", "")}]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        contents = [str(m.get("content", "")) for m in messages if isinstance(m, dict)]
        cached = self._cached(contents)
        if fault == "reset-on-turn-2" and sum(1 for m in messages if m.get("role") == "user") >= 2:
            fault = "reset"
        if fault in ("http429", "http500", "http503"):
            return web.json_response({"error": {"message": f"injected {fault}"}}, status=int(fault[4:]))
        if fault == "hang":
            await asyncio.sleep(3600)
        if not body.get("stream"):
            await asyncio.sleep(self.ttft + self.itl * (tokens - 1))
            return web.json_response({
                "id": "cmpl-1", "object": "chat.completion", "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(["word"] * tokens)},
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                          "total_tokens": prompt_tokens + tokens}})  # fmt: skip
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        await response.write(
            _chunk(None, role=True) if fault != "crlf" else _chunk(None, role=True).replace(b"\n", b"\r\n")
        )
        step = 4 if fault == "multi-token" else 1
        sent = 0
        streamed = ""
        held = b""
        deadline = received + self.ttft
        while sent < tokens:
            await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
            n = min(step, tokens - sent)
            sent += n
            last = sent >= tokens
            content = " " + " ".join(["tok"] * n)  # a leading space, as real tokens' text has
            if fault == "bigline" and sent == n:
                content = "x" * 1_000_000
            if fault == "malformed" and sent == 2:
                await response.write(b"data: {this is not json\n\n")
                continue
            if fault == "error-event" and sent == 2:
                await response.write(b'data: {"error": {"message": "engine crashed", "code": 500}}\n\n')
                break
            if fault == "reset" and sent == 3:
                request.transport.abort()
                return response
            if fault == "close-early" and sent == 3:
                request.transport.close()
                return response
            streamed += content
            finish = "length" if last else None
            on_finish = fault == "usage-on-finish" and last
            field = "reasoning_content" if fault == "reasoning" and sent <= 3 else "content"
            data = _chunk(content, finish=finish, usage=usage if on_finish else None, field=field)
            if fault == "buffered":  # a proxy that holds the stream until it ends (nginx proxy_buffering)
                held += data
            else:
                await response.write(data.replace(b"\n", b"\r\n") if fault == "crlf" else data)
            deadline += self.itl
        self.seen.add(hash((*contents, streamed)))
        if include_usage and fault not in ("no-usage", "usage-on-finish"):
            held += _usage_only(prompt_tokens, tokens, cached)
        if fault != "no-done":
            held += b"data: [DONE]\n\n"
        await response.write(held)  # the whole response in one write when buffered, else its tail
        await response.write_eof()
        return response


def make_app(ttft_ms: float = 100.0, itl_ms: float = 10.0, capacity: int | None = None) -> web.Application:
    server = TimingServer(ttft_ms, itl_ms, capacity)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/v1/models", server.models)
    app.router.add_get("/health", server.health)
    app.router.add_post("/v1/chat/completions", server.chat)
    app.router.add_post("/v1/completions", server.chat)
    app.router.add_post("/v1/embeddings", server.embeddings)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft-ms", type=float, default=100.0)
    parser.add_argument("--itl-ms", type=float, default=10.0)
    parser.add_argument("--capacity", type=int, default=None, help="concurrent requests served; more queue")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS with this certificate")
    args = parser.parse_args()
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)
    web.run_app(
        make_app(args.ttft_ms, args.itl_ms, args.capacity),
        host="127.0.0.1",
        port=args.port,
        ssl_context=context,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
