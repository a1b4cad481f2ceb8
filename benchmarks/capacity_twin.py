"""Twin capacity: how many concurrent streams the twin holds on one core, and its token timing error.

    chrt -f 10 .venv/bin/python benchmarks/capacity_twin.py [--streams 500] [--max-num-seqs N] [--duration 12]

The twin runs in its own process pinned to CPU 0 (uvloop); a lean asyncio client pinned to CPU 1 keeps
``--streams`` streaming requests in flight (closed loop). Reported: streams held (the twin's own
``vllm:num_requests_running``), chunks/s received, the twin's token timing error (write time minus the
simulator's due time, per token; absolute percentiles), and the gaps between reads the client saw.

The same run measures the floor under any one-core server on this machine: a bare asyncio server on the
same core, with the same client, writes the same chunk to every stream each step and nothing else. A
step's tokens are all due at one instant and one core writes them one after another, so no server can
do better than half the floor's spread per step (``floor.least_abs_ms``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time

import aiohttp
import numpy as np
import psutil

TWIN = """
import sys
from servewise.capacity import EngineConfig
from servewise.twin import run_twin
run_twin("127.0.0.1", int(sys.argv[1]), model=sys.argv[2], gpu=sys.argv[3],
         engine=EngineConfig(max_num_seqs=int(sys.argv[4])))
"""

FLOOR = """
import asyncio, json, sys, time
import uvloop
from servewise.twin.server import WORDS, Stream, _chunk_json, _frame, _sse
from servewise.capacity import Seq

port, streams, max_tokens, interval = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
stream = Stream(Seq(0, 1, 1, 0.0), "cmpl-floor", "completion", True, False, 1, 0.0)
CHUNK = _frame(_sse(_chunk_json(stream, "m", WORDS[1], None)))
HEAD = b"HTTP/1.1 200 OK\\r\\nContent-Type: text/event-stream\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n"
DONE = _frame(b"data: [DONE]\\n\\n") + b"0\\r\\n\\r\\n"
active, steps, gone = {}, [], [0]

class Conn(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(HEAD)
        active[self] = 0
    def connection_lost(self, exc):
        active.pop(self, None)
        gone[0] += 1

async def serve():
    loop = asyncio.get_running_loop()
    await loop.create_server(Conn, "127.0.0.1", port, backlog=2048)
    due = time.perf_counter()
    while gone[0] < streams:
        due += interval
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        first = time.perf_counter()
        finished = []
        for conn, sent in active.items():
            conn.transport.write(CHUNK)
            active[conn] = sent + 1
            if sent + 1 >= max_tokens:
                finished.append(conn)
        if active:
            steps.append((first, time.perf_counter(), len(active)))
        for conn in finished:
            conn.transport.write(DONE)
            del active[conn]
    print(json.dumps([(last - first) * 1e3 for first, last, n in steps if n >= streams * 0.9]))

uvloop.run(serve())
"""


def _pin(cpu: int) -> None:
    """One core each; raised priority where allowed, so other jobs on a shared machine do not starve it."""
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > cpu:
        os.sched_setaffinity(0, {cpu})
    with contextlib.suppress(OSError):
        os.nice(-19)


async def _wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{url}/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("twin did not start")


class _StreamReader(asyncio.Protocol):
    """A lean HTTP/1.1 client for one connection: sends a request, counts SSE chunks until ``[DONE]``.
    (aiohttp's line iterator costs more CPU per chunk than the twin's write; the client must not be the
    bottleneck of a server benchmark.)"""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future | None = None
        self.chunks = 0
        self.gaps: list[float] = []
        self._last = 0.0
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes) -> asyncio.Future:
        self.done = asyncio.get_running_loop().create_future()
        self._last = 0.0
        self.transport.write(request)
        return self.done

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        chunks = data.count(b"data: {")
        if chunks:
            if self._last:
                self.gaps.append(now - self._last)
            self._last = now
            self.chunks += chunks
        if b"[DONE]" in self._tail + data and self.done and not self.done.done():
            self.done.set_result(None)
        self._tail = data[-8:]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))


def _request(words: int, max_tokens: int, model: str) -> bytes:
    body = json.dumps({"model": model, "prompt": " ".join(["word"] * words), "max_tokens": max_tokens,
                       "stream": True}).encode()
    return (b"POST /v1/completions HTTP/1.1\r\nHost: twin\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


async def _users(url: str, streams: int, duration: float, request: bytes) -> tuple[list[_StreamReader], int]:
    """``streams`` connections, each sending ``request`` again as soon as its last one ended."""
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    readers: list[_StreamReader] = []
    completed = 0
    stop_at = time.perf_counter() + duration

    async def user() -> None:
        nonlocal completed
        _, reader = await loop.create_connection(_StreamReader, host, int(port))
        readers.append(reader)
        while time.perf_counter() < stop_at:
            await reader.send(request)
            completed += 1
        reader.transport.close()

    await asyncio.gather(*(user() for _ in range(streams)))
    return readers, completed


async def _drive(url: str, streams: int, duration: float, request: bytes) -> dict:
    running_samples: list[float] = []
    stop_at = time.perf_counter() + duration

    async def sampler(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop_at:
            await asyncio.sleep(1.0)
            async with http.get(f"{url}/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    if line.startswith("vllm:num_requests_running"):
                        running_samples.append(float(line.split()[-1]))

    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        (readers, completed), _ = await asyncio.gather(_users(url, streams, duration, request), sampler(http))
        elapsed = time.perf_counter() - started
        async with http.get(f"{url}/twin") as resp:
            twin = await resp.json()
    gaps = np.concatenate([np.array(r.gaps) for r in readers]) * 1e3
    tokens = sum(r.chunks for r in readers)
    return {
        "elapsed_s": round(elapsed, 2), "requests_completed": completed, "chunks_received": tokens,
        "chunks_per_s": round(tokens / elapsed, 1),
        "running_max": max(running_samples or [0]), "running_median": float(np.median(running_samples or [0])),
        "client_read_gap_ms": {"p50": round(float(np.percentile(gaps, 50)), 3),
                               "p99": round(float(np.percentile(gaps, 99)), 3)},
        "twin_token_error_ms": {k: round(v, 3) for k, v in twin["lateness_ms"].items()},
        "twin_resyncs": twin["resyncs"],
    }


def floor(streams: int, duration: float, request: bytes, max_tokens: int, port: int) -> dict:
    """The bare server's write spread per step, with the same client, core and chunk as the twin's run."""
    server = subprocess.Popen([sys.executable, "-c", FLOOR, str(port), str(streams), str(max_tokens), "0.02"],
                              stdout=subprocess.PIPE, text=True, preexec_fn=lambda: _pin(0))
    try:
        time.sleep(1.0)
        asyncio.run(_users(f"http://127.0.0.1:{port}", streams, duration, request))
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    spreads = np.array(json.loads(out))
    # the best any one-core server could do with these spreads: each step's writes centred on its due time
    # with foreknowledge of how long they take, so a step's errors are spread evenly over ±spread/2
    centred = np.abs(np.concatenate([np.linspace(-s / 2, s / 2, streams) for s in spreads]))
    return {"steps": int(spreads.size),
            "us_per_token_p50": round(1e3 * float(np.median(spreads)) / streams, 2),
            "step_spread_ms": {"p50": round(float(np.median(spreads)), 3),
                               "p99": round(float(np.percentile(spreads, 99)), 3)},
            "least_abs_ms": {"p50": round(float(np.percentile(centred, 50)), 3),
                             "p99": round(float(np.percentile(centred, 99)), 3)}}


def noise_floor(samples: int = 200) -> dict:
    """How late this machine wakes a sleeping process (5 ms sleeps): the floor under any timing error."""
    late = []
    for _ in range(samples):
        start = time.perf_counter()
        time.sleep(0.005)
        late.append(time.perf_counter() - start - 0.005)
    values = np.array(late) * 1e3
    return {"sleep_overshoot_ms_p50": round(float(np.percentile(values, 50)), 3),
            "sleep_overshoot_ms_p99": round(float(np.percentile(values, 99)), 3)}


def emit_cost(streams: int, steps: int = 200) -> dict:
    """CPU cost of the twin's hot loop alone: ``streams`` loopback TCP connections, one token each per
    step, measured in this thread's CPU time (robust to other jobs on a shared machine)."""
    import socket

    from servewise.capacity import EngineConfig, Seq
    from servewise.twin.server import WORDS, Stream, TwinScheduler, _chunk_json, _frame, _sse, build_config

    class SocketTransport:
        def __init__(self, sock: socket.socket) -> None:
            self.write = sock.send

        def is_closing(self) -> bool:
            return False

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    pairs = []
    for _ in range(streams):
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        server.setblocking(False)
        pairs.append((server, client))
    config = build_config("llama-3.1-8b", "h100-sxm", engine=EngineConfig(max_num_seqs=max(256, streams)))

    async def run() -> tuple[float, float]:
        scheduler = TwinScheduler(config)
        for i, (server, _) in enumerate(pairs):
            stream = Stream(Seq(i, 100, steps + 10, 0.0), f"cmpl-{i}", "completion", True, False, steps + 10, 0.0,
                            transport=SocketTransport(server))
            stream.chunks = [_frame(_sse(_chunk_json(stream, "m", w, None))) for w in WORDS]
            scheduler.submit(stream)
        cpu = wall = 0.0
        for k in range(steps):
            result = scheduler.engine.step(0.0)
            c0, w0 = time.thread_time(), time.perf_counter()
            scheduler._emit(result.first_tokens, result.decoded, result.finished, time.perf_counter())
            cpu += time.thread_time() - c0
            wall += time.perf_counter() - w0
            if k % 10 == 0:
                for _, client in pairs:
                    with contextlib.suppress(BlockingIOError):
                        while client.recv(1 << 20, socket.MSG_DONTWAIT):
                            pass
        return cpu, wall

    cpu, wall = asyncio.run(run())
    for server, client in pairs:
        server.close()
        client.close()
    listener.close()
    per_token = cpu / (steps * streams)
    return {"streams": streams, "cpu_us_per_token": round(1e6 * per_token, 2),
            "wall_us_per_token": round(1e6 * wall / (steps * streams), 2),
            "cpu_ms_per_step": round(1e3 * per_token * streams, 3),
            "expected_abs_error_max_ms_centered": round(1e3 * per_token * streams / 2, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--max-num-seqs", type=int, help="the simulated engine's batch cap (default: --streams)")
    parser.add_argument("--gpu", default="h100-sxm")
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--words", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=400)
    parser.add_argument("--port", type=int, default=18555)
    parser.add_argument("--no-floor", action="store_true", help="skip the bare-server floor")
    parser.add_argument("--emit-only", action="store_true", help="measure the write loop's CPU cost only")
    args = parser.parse_args()
    if args.emit_only:
        _pin(0)
        print(json.dumps({**emit_cost(args.streams), "machine_noise_floor": noise_floor()}, indent=2))
        return
    request = _request(args.words, args.max_tokens, args.model)
    batch = min(args.streams, args.max_num_seqs or args.streams)
    twin = subprocess.Popen([sys.executable, "-c", TWIN, str(args.port), args.model, args.gpu, str(batch)],
                            preexec_fn=lambda: _pin(0))
    try:
        _pin(1)
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        url = f"http://127.0.0.1:{args.port}"
        asyncio.run(_wait_ready(url))
        proc = psutil.Process(twin.pid)
        cpu_before, wall_before = sum(proc.cpu_times()[:2]), time.perf_counter()
        result = asyncio.run(_drive(url, args.streams, args.duration, request))
        cpu = sum(proc.cpu_times()[:2]) - cpu_before
        result["twin_cpu_percent"] = round(100 * cpu / (time.perf_counter() - wall_before), 1)
        result["twin_cpu_us_per_chunk"] = round(1e6 * cpu / max(result["chunks_received"], 1), 2)
    finally:
        twin.terminate()
        twin.wait(10)
    if not args.no_floor:
        result["floor"] = floor(batch, min(args.duration, 8.0), request, args.max_tokens, args.port + 1)
    result["machine_noise_floor"] = noise_floor()
    result.update(streams=args.streams, max_num_seqs=batch, gpu=args.gpu, model=args.model,
                  python=platform.python_version(), machine=f"{platform.machine()} {os.cpu_count()} CPUs",
                  load_avg=os.getloadavg())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
