"""A few requests sent through the load engine's own transport, so their timings mean what bench's do.

Probes and coldstart ask a server a handful of generation questions; a number they report (TTFT, time to
refuse) must be read the way bench reads it: ``t_send`` stamped at the request write, arrivals stamped by
the connection before any parsing, the body read by the same ``ResponseReader``. Each call opens its own
pool, so every request gets a fresh connection, never a kept-alive one the server has since closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from time import perf_counter

from servewise.engine.transport import ConnectionPool
from servewise.protocols.openai import OpenAIAdapter, ResponseReader
from servewise.records import RequestRecord
from servewise.workload.plan import PlannedRequest


def prompt_request(prompt: str, max_tokens: int) -> PlannedRequest:
    """One prompt the way a workload would plan it, for ``OpenAIAdapter.request_bytes``."""
    return PlannedRequest(index=0, prompt=prompt, messages=None, input_tokens=None, max_tokens=max_tokens)


async def send(
    adapter: OpenAIAdapter,
    requests: Sequence[tuple[bytes, ResponseReader]],
    timeout_s: float,
    first_index: int = 0,
) -> list[RequestRecord]:
    """All ``requests`` at once, each on its own connection; their records in order, once all ended."""
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[RequestRecord]] = [loop.create_future() for _ in requests]

    def complete(record: RequestRecord) -> None:
        future = pending[record.index - first_index]
        if not future.done():
            future.set_result(record)

    pool = ConnectionPool(
        adapter.host, adapter.port, tls=adapter.tls, timeout_s=timeout_s, on_complete=complete
    )
    try:
        for i, (request, reader) in enumerate(requests):
            pool.submit(RequestRecord(index=first_index + i, t_sched=perf_counter()), request, reader)
        return list(await asyncio.gather(*pending))
    finally:
        pool.close()
