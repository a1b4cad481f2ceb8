"""Is the release up? Its ready URL answers 2xx and a streamed request gets a first token, timed from the
command that started it: coldstart's own probes (``coldstart.probe``), without a process to watch, since the
team's command may hand the server to docker, systemd or Kubernetes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from servewise.coldstart.probe import Endpoint, get_status, stream_request

POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class Readiness:
    ok: bool
    detail: str
    time_to_ready_s: float | None = None  # from ``t0`` to the first token
    first_token_ms: float | None = None


async def wait_ready(endpoint: Endpoint, t0: float, timeout_s: float) -> Readiness:
    """Poll until ready and a first token, or ``timeout_s`` from now; the last failure says why not."""
    deadline = time.perf_counter() + timeout_s
    last = "no answer"
    async with aiohttp.ClientSession() as session:
        while (left := deadline - time.perf_counter()) > 0:
            status, _ = await get_status(session, endpoint.ready_url, endpoint.headers())
            if status is not None and 200 <= status < 300:
                record = await stream_request(endpoint, endpoint.model, timeout_s=max(1.0, left))
                if record.ok and record.t_first is not None and record.ttft is not None:
                    return Readiness(True, f"ready in {record.t_first - t0:.1f} s, first token "
                                     f"{record.ttft * 1e3:.0f} ms", record.t_first - t0, record.ttft * 1e3)  # fmt: skip
                last = f"first request: {record.error_detail or record.error}"
            else:
                last = f"{endpoint.ready_url}: {'HTTP ' + str(status) if status else 'no answer'}"
            await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.perf_counter())))
    return Readiness(False, f"not ready after {timeout_s:g} s ({last})")
