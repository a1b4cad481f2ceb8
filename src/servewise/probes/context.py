"""What every probe shares: the endpoint, what earlier probes learnt, and two ways to ask that never raise.

Generations go out through the load engine's transport and request builder (``exchange.send``,
``OpenAIAdapter``), so a probe's status, timing and error class mean what bench's do. The plain GETs of
the server's own routes (health, metrics, version) go through a small aiohttp client instead: they need
the response headers and the body of any status, which the measured hot path deliberately does not keep.
Redirects are never followed, so neither a request nor the key goes anywhere but the URL given.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from servewise.probes.exchange import prompt_request, send
from servewise.probes.results import ProbeConfig
from servewise.protocols.endpoint import auth_headers
from servewise.protocols.openai import OpenAIAdapter
from servewise.records import ErrorClass, RequestRecord, TokenSource
from servewise.spec.models import Api, TargetSpec

_BODY_LIMIT = 1 << 20
KEY_HINT = "needs an API key (give --api-key-env or --api-key-file)"
# the message of a JSON error body cut short (the transport keeps an error body's first 300 characters)
_CUT_MESSAGE = re.compile(r'"(?:error|detail|message)"\s*:\s*"((?:[^"\\]|\\.)*)')


def clean(text: str, limit: int = 160) -> str:
    """Server text made safe to show anywhere: no control characters, one line, bounded."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace")
        cut = _CUT_MESSAGE.search(text)
        return clean(cut.group(1) if cut else text)
    for key in ("error", "detail", "message"):
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, dict):
            value = value.get("message", value)
        if value:
            return clean(value if isinstance(value, str) else json.dumps(value))
    return clean(json.dumps(data)) if data not in (None, {}, []) else ""


@dataclass(slots=True)
class Reply:
    """One answer as a probe reads it, whichever way it was asked."""

    status: int | None
    body: bytes = b""
    elapsed_s: float = 0.0
    failure: str | None = None  # "timeout" or "connect: ..." when there was no HTTP answer
    usage: bool = False  # a generation's answer counted its tokens (``usage.completion_tokens``)

    @classmethod
    def of(cls, record: RequestRecord) -> Reply:
        """A transport record; an error status keeps the start of its body, as the transport does."""
        elapsed = (record.t_end or time.perf_counter()) - record.t_send
        if record.error is ErrorClass.TIMEOUT:
            return cls(None, elapsed_s=elapsed, failure="timeout")
        if not record.status:
            return cls(None, elapsed_s=elapsed, failure=f"connect: {clean(record.error_detail)}")
        body = ""
        if record.error is ErrorClass.HTTP_STATUS:
            body = record.error_detail.removeprefix(f"HTTP {record.status}: ")
        usage = record.output_tokens_source is TokenSource.USAGE
        return cls(record.status, body.encode(), elapsed_s=elapsed, usage=usage)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        if self.failure == "timeout":
            return f"no answer in {self.elapsed_s:.1f} s"
        if self.failure:
            return self.failure
        message = "" if self.ok else _error_message(self.body)
        return f"{self.status} in {self.elapsed_s:.2f} s" + (f": {message}" if message else "")


def needs_key(reply: Reply) -> bool:
    return reply.status in (401, 403)


@dataclass(slots=True)
class ProbeContext:
    """The endpoint (``base`` is its server root), the bounds, and what probes learnt so far."""

    session: aiohttp.ClientSession
    base: str
    config: ProbeConfig
    model: str | None = None
    engine: str | None = None
    context_tokens: int | None = None
    health: Reply | None = None
    server_header: str | None = None

    async def get(self, path: str, *, auth: bool = True) -> Reply:
        """GET one of the server's routes (``path`` from its root), bounded by the request timeout."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                async with self.session.get(
                    self.base + path,
                    headers=auth_headers(self.config.api_key) if auth else {},
                    allow_redirects=False,
                ) as resp:
                    body = await resp.content.read(_BODY_LIMIT)
                    self.server_header = self.server_header or resp.headers.get("Server")
                    return Reply(resp.status, body, time.perf_counter() - started)
        except TimeoutError:
            return Reply(None, elapsed_s=time.perf_counter() - started, failure="timeout")
        except aiohttp.ClientError as exc:
            return Reply(None, elapsed_s=time.perf_counter() - started, failure=f"connect: {clean(str(exc))}")

    def adapter(self, *, stream: bool = False, model: str | None = None, auth: bool = True) -> OpenAIAdapter:
        """bench's request builder for this endpoint; probe generations are short and may stop early."""
        target = TargetSpec(url=self.base, api=Api(self.config.api), stream=stream, ignore_eos=False)
        return OpenAIAdapter(target, model or self.model or "default", self.config.api_key if auth else None)

    async def post(
        self, adapter: OpenAIAdapter, request: bytes, *, count: int = 1, timeout_s: float | None = None
    ) -> list[Reply]:
        """``count`` copies of one request at once, through the engine's transport."""
        timeout = timeout_s or self.config.request_timeout_s
        records = await send(adapter, [(request, adapter.reader()) for _ in range(count)], timeout)
        return [Reply.of(record) for record in records]

    async def generate(
        self, prompt: str, max_tokens: int, *, model: str | None = None, auth: bool = True
    ) -> Reply:
        """One plain (not streamed) generation."""
        adapter = self.adapter(model=model, auth=auth)
        [reply] = await self.post(adapter, adapter.request_bytes(prompt_request(prompt, max_tokens)))
        return reply
