"""Readiness probing during a start: port open, health OK, models listed, a first streamed request.

Health and the model list are polled with one small aiohttp client: a few GETs a second, where any
answer will do. The streamed request is bench's own (its body from ``OpenAIAdapter``, sent through the
engine's transport, read by ``StreamReader``), so TTFT here means what it means everywhere else in
servewise.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Literal

import aiohttp

from servewise.probes.exchange import prompt_request, send
from servewise.protocols.endpoint import auth_headers, host_port, models_url
from servewise.protocols.openai import OpenAIAdapter
from servewise.records import ErrorClass, RequestRecord
from servewise.spec.models import Api, TargetSpec

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
        return host_port(self.base_url)

    @property
    def models_url(self) -> str:
        return models_url(self.base_url)

    def headers(self) -> dict[str, str]:
        return auth_headers(self.api_key)


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


async def stream_request(
    endpoint: Endpoint, model: str | None, index: int = 0, timeout_s: float | None = None
) -> RequestRecord:
    """One streamed request, measured as bench measures one (``model=None``: the server's default)."""
    limit = min(endpoint.request_timeout_s, timeout_s or endpoint.request_timeout_s)
    target = TargetSpec(url=endpoint.base_url, api=Api(endpoint.api), ignore_eos=False)
    adapter = OpenAIAdapter(target, model, endpoint.api_key)
    request = adapter.request_bytes(prompt_request(endpoint.prompt, endpoint.max_tokens))
    [record] = await send(adapter, [(request, adapter.reader())], limit, index)
    if record.error is None and record.t_first is None:
        record.error, record.error_detail = ErrorClass.PROTOCOL, "the stream carried no content"
    return record
