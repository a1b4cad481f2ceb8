"""A raw-socket OpenAI chat streaming client: the floor for TTFT accuracy and the ceiling of Python on a core.

asyncio ``Protocol`` over keep-alive HTTP/1.1 connections (uvloop when importable), Poisson arrivals,
no SSE parsing beyond finding the first non-empty ``"content"`` delta (TTFT) and the end of the response
(``data: [DONE]``). It keeps one float pair per request and nothing else, so what it measures is what the
server and the loopback cost. Prints one JSON line:
{"client": "raw-socket", "rate", "achieved_rps", "errors", "lag_ms": {p50,p99}, "ttft_ms": {p50,p99,...},
 "cpu_percent"}.

Run: python raw_client.py --url http://127.0.0.1:18123 --rate 20 --requests 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import deque
from urllib.parse import urlsplit

CONTENT_MARK = b'"content":"'
DONE_MARK = b"data: [DONE]"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def first_content_at(buf: bytes) -> bool:
    """True when ``buf`` holds a content delta with at least one character (role chunks carry '')."""
    start = 0
    while True:
        i = buf.find(CONTENT_MARK, start)
        if i < 0:
            return False
        j = i + len(CONTENT_MARK)
        if j < len(buf) and buf[j : j + 1] != b'"':
            return True
        start = j


class Stream(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.t_send = 0.0
        self.ttft: float | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, payload: bytes) -> None:
        self.buf = b""
        self.ttft = None
        self.busy = True
        self.t_send = time.perf_counter()
        assert self.transport is not None
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        if self.ttft is None and first_content_at(self.buf):
            self.ttft = now - self.t_send
        if (self.buf.endswith(b"\r\n\r\n") and DONE_MARK in self.buf[-64:]) or self.buf.endswith(
            DONE_MARK + b"\n\n"
        ):
            self.busy = False
            self.client.done(self, self.ttft, now - self.t_send)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self.busy = False
            self.client.failed(self)


class RawClient:
    def __init__(self, url: str, model: str, max_tokens: int) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        body = json.dumps(
            {
                "model": model,
                "messages": [{"role": "user", "content": "hello " * 32}],
                "max_tokens": max_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
        self.payload = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.idle: deque[Stream] = deque()
        self.ttfts: list[float] = []
        self.e2e: list[float] = []
        self.lags: list[float] = []
        self.errors = 0
        self.in_flight = 0
        self.finished = asyncio.Event()

    async def submit(self, planned: float) -> None:
        if self.idle:
            stream = self.idle.pop()
        else:
            loop = asyncio.get_running_loop()
            try:
                _, stream = await loop.create_connection(lambda: Stream(self), self.host, self.port)
            except OSError:
                self.errors += 1
                self._settle()
                return
        self.lags.append(time.perf_counter() - planned)
        stream.send(self.payload)

    def done(self, stream: Stream, ttft: float | None, e2e: float) -> None:
        if ttft is None:
            self.errors += 1
        else:
            self.ttfts.append(ttft)
            self.e2e.append(e2e)
        self.idle.append(stream)
        self._settle()

    def failed(self, stream: Stream) -> None:
        self.errors += 1
        self._settle()

    def _settle(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.finished.set()


async def run(args: argparse.Namespace) -> dict:
    client = RawClient(args.url, args.model, args.max_tokens)
    rng = random.Random(args.seed)
    count = args.requests or int(args.rate * args.duration)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    t0 = time.perf_counter() + 0.2
    planned = t0
    pending: set[asyncio.Future] = set()
    for _ in range(count):
        planned += rng.expovariate(args.rate)
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        client.finished.clear()
        client.in_flight += 1
        pending.add(task := asyncio.ensure_future(client.submit(planned)))
        task.add_done_callback(pending.discard)
    send_end = time.perf_counter()
    if client.in_flight:
        await asyncio.wait_for(client.finished.wait(), 60)
    wall = time.perf_counter() - wall0
    ok = len(client.ttfts)
    ms = lambda xs, q: round(percentile(xs, q) * 1000, 3)  # noqa: E731
    return {
        "client": "raw-socket",
        "rate": args.rate,
        "requests": count,
        "ok": ok,
        "errors": client.errors,
        "offered_rps": round(count / (planned - t0), 2),
        "achieved_rps": round(ok / (send_end - t0), 2),
        "lag_ms": {"p50": ms(client.lags, 50), "p99": ms(client.lags, 99)},
        "ttft_ms": {q: ms(client.ttfts, float(q[1:])) for q in ("p50", "p90", "p99")},
        "e2e_ms": {"p50": ms(client.e2e, 50)},
        "cpu_percent": round(100 * (time.process_time() - cpu0) / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:18123")
    parser.add_argument("--model", default="timing-model")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
