"""Readiness probing during a start: port open, health OK, models listed, a first streamed request.

One small aiohttp client on purpose: a handful of requests per start do not need the load engine's
transport, and the stream parsing is the load engine's own (``protocols.openai.StreamReader``), so
TTFT here means what it means everywhere else in servewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from servewise.protocols.openai import StreamReader, api_base_path
from servewise.records import ErrorClass, RequestRecord

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to talk to the server being started."""

    base_url: str
    ready_url: str
    api: Literal["chat", "completions"] = "chat"
    model: str | None = None
    prompt: str = "Say hello in one short sentence."
    max_tokens: int = 16
    api_key: str | None = None
    request_timeout_s: float = 60.0

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.base_url)
        return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def models_url(self) -> str:
        return self._origin() + api_base_path(self.base_url) + "models"

    @property
    def request_url(self) -> str:
        route = "chat/completions" if self.api == "chat" else "completions"
        return self._origin() + api_base_path(self.base_url) + route

    def _origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def origin_of(url: str) -> str:
    """``http://h:8000/health`` -> ``http://h:8000``."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


async def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def get_status(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int | None, bytes]:
    """Status and body of a GET; status None when the connection failed or timed out."""
    try:
        async with session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        ) as resp:
            return resp.status, await resp.read()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None, b""


def model_ids(body: bytes) -> list[str]:
    """Model ids from an OpenAI ``/v1/models`` body (empty when it is not one)."""
    try:
        data = json.loads(body).get("data") or []
    except (ValueError, AttributeError):
        return []
    return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]


def request_body(endpoint: Endpoint, model: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "max_tokens": endpoint.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if model:
        body["model"] = model
    if endpoint.api == "chat":
        body["messages"] = [{"role": "user", "content": endpoint.prompt}]
    else:
        body["prompt"] = endpoint.prompt
    return body


async def stream_request(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    model: str | None,
    index: int = 0,
    timeout_s: float | None = None,
) -> RequestRecord:
    """One streamed request; times on the perf_counter clock, stamped as each body chunk arrives."""
    limit = min(endpoint.request_timeout_s, timeout_s or endpoint.request_timeout_s)
    record = RequestRecord(index=index, t_sched=time.perf_counter())
    reader = StreamReader()
    record.t_send = time.perf_counter()
    try:
        async with session.post(
            endpoint.request_url,
            json=request_body(endpoint, model),
            headers=endpoint.headers(),
            timeout=aiohttp.ClientTimeout(total=limit),
        ) as resp:
            record.status = resp.status
            if resp.status != 200:
                body = await resp.read()
                record.t_end = time.perf_counter()
                record.error = ErrorClass.HTTP_STATUS
                record.error_detail = f"HTTP {resp.status}: {body[:200].decode('utf-8', 'replace')}"
                return record
            async for data in resp.content.iter_any():
                reader.feed(data, time.perf_counter())
            record.t_end = time.perf_counter()
    except TimeoutError:
        record.t_end = time.perf_counter()
        record.error, record.error_detail = (
            ErrorClass.TIMEOUT,
            f"no complete response in {limit:.0f} s",
        )
        return record
    except (aiohttp.ClientError, OSError) as exc:
        record.t_end = time.perf_counter()
        record.error, record.error_detail = ErrorClass.CONNECT, str(exc)[:200] or type(exc).__name__
        return record
    reader.finish(record)
    if record.error is None and record.t_first is None:
        record.error, record.error_detail = ErrorClass.PROTOCOL, "the stream carried no content"
    return record
