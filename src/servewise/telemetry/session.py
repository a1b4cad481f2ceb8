"""TelemetrySession: every sampler on one clock, inside bench's event loop, never blocking it.

Synchronous samplers (psutil, NVML; NVML's PCIe counter alone waits ~20 ms in the driver) run in a worker
thread; HTTP scrapes use aiohttp with a timeout shorter than the interval. Each tick's samples go to the
sink in one list. A missing source (no GPU, no /metrics, server process not found) logs once at debug and
the other samplers carry on.

Where each sample was read is kept: ``host`` / ``process`` / ``gpu`` are this machine (psutil, NVML), and
every tick says whether this machine also serves the target (``host:serves_target``); ``node`` is the
serving host's node_exporter, ``dcgm`` its dcgm-exporter, ``metrics`` the engine. The server's process
tree and NVML GPUs are sampled only when the target is local: on a client machine they describe the client.
Each tick also times a TCP connect to the target (``client:connect_rtt_ms``): the first, before any load,
is the path's idle round trip, against which queueing on a slow or shaped link shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import psutil

from servewise.records import Sample
from servewise.telemetry.exposition import engine_from_metrics, engine_samples, parse_exposition
from servewise.telemetry.gpu import NvmlSampler, dcgm_samples
from servewise.telemetry.host import (
    ClientSampler,
    HostSampler,
    ProcessTreeSampler,
    find_listening_pid,
    route_interface,
)
from servewise.telemetry.node import NodeCounters, node_samples

log = logging.getLogger("servewise.telemetry")


class SyncSampler(Protocol):
    source: str

    def collect(self) -> list[Sample]: ...


class _Scraper:
    """GET a Prometheus text endpoint; quiet after the first failure is logged."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._failed_logged = False

    async def fetch(self, http: aiohttp.ClientSession) -> str | None:
        try:
            async with http.get(self.url, timeout=self._timeout) as response:
                if response.status != 200:
                    raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
                return await response.text()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if not self._failed_logged:
                log.debug("cannot scrape %s (%s); will keep trying quietly", self.url, exc)
                self._failed_logged = True
            return None


class MetricsScraper(_Scraper):
    """The target's /metrics -> canonical signals (source ``metrics``) and raw series (``raw:<name>``)."""

    source = "metrics"

    def __init__(self, url: str, timeout_s: float, engine: str | None = None) -> None:
        super().__init__(url, timeout_s)
        self.engine = engine

    async def collect(self, http: aiohttp.ClientSession) -> list[Sample]:
        text = await self.fetch(http)
        if text is None:
            return []
        now = time.perf_counter()
        try:
            series = parse_exposition(text)
        except ValueError as exc:
            if not self._failed_logged:
                log.debug("unparseable /metrics at %s (%s)", self.url, exc)
                self._failed_logged = True
            return []
        if self.engine is None:
            self.engine = engine_from_metrics(series)
        return engine_samples(series, now, self.engine)


class DcgmScraper(_Scraper):
    source = "dcgm"

    async def collect(self, http: aiohttp.ClientSession) -> list[Sample]:
        text = await self.fetch(http)
        if text is None:
            return []
        try:
            return dcgm_samples(parse_exposition(text), time.perf_counter(), self.source)
        except ValueError:
            return []


class NodeScraper(_Scraper):
    """The serving host's node_exporter -> host signals under source ``node``."""

    source = "node"

    def __init__(self, url: str, timeout_s: float) -> None:
        super().__init__(url, timeout_s)
        self._counters = NodeCounters()

    async def collect(self, http: aiohttp.ClientSession) -> list[Sample]:
        text = await self.fetch(http)
        if text is None:
            return []
        try:
            return node_samples(parse_exposition(text), time.perf_counter(), self._counters, self.url)
        except ValueError:
            return []


_TCP_INFO_RTT = struct.Struct("=I")  # struct tcp_info's tcpi_rtt (µs): after 8 one-byte fields and 15 u32s
_TCP_INFO_RTT_OFFSET = 68


class ConnectProbe:
    """One TCP handshake with the target per tick: the network's round trip, not the server's work (the
    kernel answers a SYN whatever the engine is doing, until its accept queue is full). The kernel's own
    measure of it (``TCP_INFO``'s ``tcpi_rtt``) is taken where there is one: a busy client's event loop
    would add its own delay to a wall-clock timing."""

    source = "client"

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self._host, self._port, self._timeout = host, port, timeout_s

    async def collect(self, http: aiohttp.ClientSession | None = None) -> list[Sample]:
        start = time.perf_counter()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self._host, self._port), self._timeout)
        except (OSError, TimeoutError):
            return []
        rtt_ms = (time.perf_counter() - start) * 1000
        kernel = _kernel_rtt_ms(writer.get_extra_info("socket"))
        writer.close()
        return [Sample(start, self.source, "connect_rtt_ms", kernel if kernel is not None else rtt_ms)]


def _kernel_rtt_ms(sock: object) -> float | None:
    info = getattr(socket, "TCP_INFO", None)
    if sock is None or info is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, info, 104)  # type: ignore[attr-defined]
    except OSError:
        return None
    if len(raw) < _TCP_INFO_RTT_OFFSET + 4:
        return None
    return _TCP_INFO_RTT.unpack_from(raw, _TCP_INFO_RTT_OFFSET)[0] / 1000


def local_port(url: str) -> int | None:
    """The URL's port when its host is this machine, so the server process can be found from it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if host in {"localhost", ""}:
        return port
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}  # an IP: str already
    except OSError:
        return None
    local = {a.address for nic in psutil.net_if_addrs().values() for a in nic}
    if any(ipaddress.ip_address(a.split("%")[0]).is_loopback or a in local for a in addresses):
        return port
    return None


class TelemetrySession:
    """Samples host, server process tree, load generator, GPU, /metrics and DCGM every ``interval_s``.

    Use as ``async with TelemetrySession(...)`` or ``await start()`` / ``await stop()``. ``target_port``
    should only be given for a local target: the server is then found as the process listening on it.
    ``target_host`` (default: the host of ``metrics_url``) names the interface the target's traffic takes.
    """

    def __init__(
        self,
        interval_s: float,
        *,
        metrics_url: str | None,
        server_pid: int | None,
        target_port: int | None,
        client_pids: Sequence[int],
        dcgm_url: str | None,
        gpu: bool = True,
        sink: Callable[[list[Sample]], object],  # what it returns is ignored
        target_host: str | None = None,
        node_exporter_url: str | None = None,
        target_url: str | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("telemetry interval must be > 0 s")
        self.interval_s = interval_s
        self.server_pid = server_pid
        self._target_port = target_port
        self._target_host = target_host or (urlsplit(metrics_url).hostname if metrics_url else None)
        self._client_pids = list(client_pids)
        self._sink = sink
        self._serves_target = target_port is not None or server_pid is not None
        self._want_gpu = gpu and dcgm_url is None and self._serves_target
        timeout = max(0.2, min(2.0, 0.8 * interval_s))
        self._metrics = MetricsScraper(metrics_url, timeout) if metrics_url else None
        self._dcgm = DcgmScraper(dcgm_url, timeout) if dcgm_url else None
        self._node = NodeScraper(node_exporter_url, timeout) if node_exporter_url else None
        self._probe: ConnectProbe | None = None
        if target_url is not None:
            parts = urlsplit(target_url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            self._probe = ConnectProbe(parts.hostname or "127.0.0.1", port, timeout)
        self._sync: list[SyncSampler] = []
        self._nvml: NvmlSampler | None = None
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._sink_failed = False
        self.ticks = 0

    @property
    def engine(self) -> str | None:
        """The serving engine recognised from /metrics (``vllm``, ``llamacpp`` ...), once scraped."""
        return self._metrics.engine if self._metrics else None

    async def start(self) -> None:
        if self._task is not None:
            return
        self._sync = await asyncio.to_thread(self._build_sync_samplers)
        if self._metrics or self._dcgm or self._node:
            self._http = aiohttp.ClientSession()
        await self._tick()  # primes rate counters so the first periodic tick already has deltas
        self._task = asyncio.create_task(self._run(), name="servewise-telemetry")

    def _build_sync_samplers(self) -> list[SyncSampler]:
        iface = route_interface(self._target_host) if self._target_host else None
        samplers: list[SyncSampler] = [HostSampler(target_iface=iface)]
        if self.server_pid is None and self._target_port is not None:
            self.server_pid = find_listening_pid(self._target_port)
            if self.server_pid is None:
                log.debug(
                    "no local process listens on port %s; server process sampler off", self._target_port
                )
        if self.server_pid is not None:
            samplers.append(ProcessTreeSampler(self.server_pid))
        samplers.append(ClientSampler(self._client_pids, parent_pid=os.getpid()))
        if self._want_gpu:
            nvml = NvmlSampler()
            if nvml.available:
                self._nvml = nvml
                samplers.append(nvml)
        return samplers

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            await self._tick()  # the last partial interval
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    async def __aenter__(self) -> TelemetrySession:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        next_t = time.perf_counter()
        while True:
            next_t += self.interval_s
            delay = next_t - time.perf_counter()
            if delay < 0:  # fell behind (suspended, overloaded machine): skip missed ticks, keep the grid
                next_t += (-delay // self.interval_s + 1) * self.interval_s
                delay = next_t - time.perf_counter()
            await asyncio.sleep(delay)
            await self._tick()

    async def _tick(self) -> None:
        jobs = [asyncio.to_thread(self._collect_sync)]
        if self._http is not None:
            jobs += [s.collect(self._http) for s in (self._metrics, self._dcgm, self._node) if s is not None]
        if self._probe is not None:
            jobs.append(self._probe.collect())
        results = await asyncio.gather(*jobs, return_exceptions=True)
        samples: list[Sample] = [
            Sample(time.perf_counter(), "host", "serves_target", 1.0 if self._serves_target else 0.0)
        ]
        for result in results:
            if isinstance(result, BaseException):
                log.debug("telemetry sampler failed: %r", result)
            else:
                samples += result
        self.ticks += 1
        if samples:
            try:
                self._sink(samples)
            except Exception as exc:
                if not self._sink_failed:
                    log.warning("telemetry sink failed (%s); samples of this run may be incomplete", exc)
                    self._sink_failed = True

    def _collect_sync(self) -> list[Sample]:
        samples: list[Sample] = []
        for sampler in self._sync:
            try:
                samples += sampler.collect()
            except Exception as exc:  # a sampler bug must not end the run's telemetry
                log.debug("%s sampler failed: %r", sampler.source, exc)
        return samples
