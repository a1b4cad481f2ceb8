"""Samplers and TelemetrySession against real processes, a real /metrics endpoint and a fake NVML."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from servewise.records import Sample
from servewise.telemetry import TelemetrySession, local_port
from servewise.telemetry.gpu import NvmlSampler
from servewise.telemetry.host import (
    ClientSampler,
    HostSampler,
    ProcessTreeSampler,
    find_listening_pid,
    route_interface,
)

FIXTURES = Path(__file__).parent / "fixtures" / "telemetry"

BURN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


@pytest.fixture
def cpu_burner():
    """A parent that sleeps and a child that burns one core: a process tree like a real server's."""
    code = (
        f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {BURN!r}])\ntime.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.5)
    yield proc
    import psutil

    for child in psutil.Process(proc.pid).children(recursive=True):
        child.kill()
    proc.kill()
    proc.wait()


def by_name(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(s.name, []).append(s)
    return out


def test_host_sampler_primes_then_reports_rates():
    sampler = HostSampler(target_iface=route_interface("127.0.0.1"))
    assert sampler.collect() == []  # first tick only primes the counters
    time.sleep(0.3)
    got = by_name(sampler.collect())
    assert len(got["cpu_percent"]) == os.cpu_count()
    assert got["mem_total_bytes"][0].value > got["mem_available_bytes"][0].value > 0
    ifaces = {dict(s.labels)["iface"] for s in got["net_rx_bytes_per_s"]}
    assert "lo" in ifaces
    assert [dict(s.labels)["iface"] for s in got["net_target_iface"]] == ["lo"]
    assert all(s.value >= 0 for s in got["net_rx_bytes_per_s"] + got["disk_read_bytes_per_s"])
    assert all(s.source == "host" for samples in got.values() for s in samples)


def test_process_tree_sampler_sees_the_busy_child(cpu_burner):
    sampler = ProcessTreeSampler(cpu_burner.pid)
    sampler.collect()
    time.sleep(1.0)
    got = {s.name: s.value for s in sampler.collect()}
    assert got["procs"] == 2
    assert got["cpu_percent"] > 50  # the child burns a core; the root sleeps
    assert got["cpu_percent_max_proc"] > 50
    assert got["rss_bytes"] > 1e6 and got["threads"] >= 2
    assert got["cpu_cores_available"] >= 1


def test_process_tree_sampler_is_quiet_for_a_missing_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    sampler = ProcessTreeSampler(proc.pid)
    assert sampler.collect() == [] and sampler.collect() == []


def test_client_sampler_labels_workers_and_parent(cpu_burner):
    sampler = ClientSampler([cpu_burner.pid], parent_pid=os.getpid())
    sampler.collect()
    time.sleep(0.3)
    workers = {dict(s.labels)["worker"] for s in sampler.collect() if s.name == "cpu_percent"}
    assert workers == {"0", "parent"}


async def _serve_metrics(text: str) -> tuple[web.AppRunner, int]:
    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


def test_find_listening_pid_and_local_port():
    async def main() -> tuple[int | None, int]:
        runner, port = await _serve_metrics("")
        try:
            return await asyncio.to_thread(find_listening_pid, port), port
        finally:
            await runner.cleanup()

    pid, port = asyncio.run(main())
    assert pid == os.getpid()
    assert local_port(f"http://127.0.0.1:{port}/v1") == port
    assert local_port("http://localhost/v1") == 80
    assert local_port("http://192.0.2.1:8000") is None  # TEST-NET, never local


def test_session_scrapes_metrics_finds_the_server_and_never_blocks_the_loop():
    text = (FIXTURES / "infinity_metrics.prom").read_text()
    batches: list[list[Sample]] = []

    async def main() -> tuple[TelemetrySession, float]:
        runner, port = await _serve_metrics(text)
        try:
            session = TelemetrySession(
                0.2,
                metrics_url=f"http://127.0.0.1:{port}/metrics",
                server_pid=None,
                target_port=port,
                client_pids=[],
                dcgm_url=None,
                gpu=False,
                sink=batches.append,
            )
            worst = 0.0
            async with session:
                for _ in range(25):
                    start = time.perf_counter()
                    await asyncio.sleep(0.02)
                    worst = max(worst, time.perf_counter() - start - 0.02)
            return session, worst
        finally:
            await runner.cleanup()

    session, worst_lag = asyncio.run(main())
    samples = [s for batch in batches for s in batch]
    sources = {s.source for s in samples}
    assert {"host", "process", "client", "metrics"} <= sources
    assert session.server_pid == os.getpid()  # found from the listening port
    assert session.engine == "infinity"
    names = {s.name for s in samples if s.source == "metrics"}
    assert "requests_finished_total" in names and "raw:http_requests_total" in names
    assert session.ticks >= 3
    times = sorted({s.t for s in samples if s.source == "host" and s.name == "load1"})
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    assert 0.1 < gaps[len(gaps) // 2] < 0.4  # ticks on the 0.2 s grid
    assert worst_lag < 0.05  # samplers run off the loop; generous for a noisy 2-core machine


def test_session_is_quiet_when_every_source_is_missing(caplog):
    batches: list[list[Sample]] = []

    async def main() -> None:
        async with TelemetrySession(
            0.1,
            metrics_url="http://127.0.0.1:9/metrics",
            server_pid=None,
            target_port=9,
            client_pids=[],
            dcgm_url="http://127.0.0.1:9/metrics",
            sink=batches.append,
        ):
            await asyncio.sleep(0.35)

    with caplog.at_level("DEBUG", logger="servewise.telemetry"):
        asyncio.run(main())
    assert not [r for r in caplog.records if r.levelname in {"WARNING", "ERROR"}]
    scrape_logs = [r for r in caplog.records if "cannot scrape" in r.getMessage()]
    assert len(scrape_logs) == 2  # once per endpoint, not once per tick
    sources = {s.source for batch in batches for s in batch}
    assert sources <= {"host", "client"} and "host" in sources


def test_session_rejects_a_nonpositive_interval():
    with pytest.raises(ValueError, match="interval"):
        TelemetrySession(
            0,
            metrics_url=None,
            server_pid=None,
            target_port=None,
            client_pids=[],
            dcgm_url=None,
            sink=lambda _s: None,
        )


class FakeNvml:
    """The slice of pynvml the sampler calls, with an H100's values; PCIe throughput is 'not supported'."""

    NVML_CLOCK_SM = 1
    NVML_PCIE_UTIL_TX_BYTES = 0
    NVML_PCIE_UTIL_RX_BYTES = 1

    def __init__(self) -> None:
        self.pcie_calls = 0

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"gpu{i}"

    def nvmlGpmQueryDeviceSupport(self, _h: str) -> SimpleNamespace:
        return SimpleNamespace(isSupportedDevice=0)

    def nvmlDeviceGetUtilizationRates(self, _h: str) -> SimpleNamespace:
        return SimpleNamespace(gpu=100, memory=87)

    def nvmlDeviceGetMemoryInfo(self, _h: str) -> SimpleNamespace:
        return SimpleNamespace(used=73_000_000_000, total=85_520_809_984)

    def nvmlDeviceGetPowerUsage(self, _h: str) -> int:
        return 455_000  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, _h: str) -> int:
        return 700_000

    def nvmlDeviceGetClockInfo(self, _h: str, _t: int) -> int:
        return 1980

    def nvmlDeviceGetMaxClockInfo(self, _h: str, _t: int) -> int:
        return 1980

    def nvmlDeviceGetCurrentClocksEventReasons(self, _h: str) -> int:
        return 0x4

    def nvmlDeviceGetTemperature(self, _h: str, _s: int) -> int:
        return 58

    def nvmlDeviceGetPcieThroughput(self, _h: str, _c: int) -> int:
        self.pcie_calls += 1
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    def nvmlShutdown(self) -> None:
        pass


def test_nvml_sampler_maps_units_and_drops_unsupported_calls():
    fake = FakeNvml()
    sampler = NvmlSampler(nvml=fake)  # type: ignore[arg-type]
    assert sampler.available
    first = {s.name: s.value for s in sampler.collect()}
    sampler.collect()
    assert first["power_watts"] == 455 and first["power_limit_watts"] == 700
    assert first["memory_utilization_percent"] == 87 and first["clock_event_reasons"] == 4
    assert "pcie_tx_bytes_per_s" not in first and "sm_active" not in first
    assert fake.pcie_calls == 1  # not retried every tick once the GPU said no


def test_nvml_sampler_without_nvml_is_off():
    if not _nvml_missing():
        pytest.skip("NVML works here; covered by the live GPU test")
    sampler = NvmlSampler()
    assert not sampler.available and sampler.collect() == []


def _nvml_missing() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return True
    return False


@pytest.mark.gpu
def test_live_gpu_sampler_reads_a_real_gpu():
    if _nvml_missing():
        pytest.skip("no NVIDIA GPU / NVML here")
    sampler = NvmlSampler()
    sampler.collect()
    time.sleep(0.5)
    got = {s.name for s in sampler.collect()}
    sampler.close()
    assert {"utilization_percent", "memory_used_bytes", "memory_total_bytes", "power_watts"} <= got


class FakeGpmNvml(FakeNvml):
    """An H100 whose GPM (Hopper's per-interval profiling) answers: SM active 91%, DRAM bandwidth 38%, the
    percentages NVML's ``nvmlGpmMetricsGet`` reports for a prefill-heavy interval."""

    NVML_GPM_METRICS_GET_VERSION = 1

    def __init__(self) -> None:
        super().__init__()
        self.freed = 0

    def nvmlGpmQueryDeviceSupport(self, _h: str) -> SimpleNamespace:
        return SimpleNamespace(isSupportedDevice=1)

    def nvmlGpmSampleAlloc(self) -> SimpleNamespace:
        return SimpleNamespace()

    def nvmlGpmSampleGet(self, _h: str, sample: SimpleNamespace) -> None:
        sample.taken = True

    def c_nvmlGpmMetricsGet_t(self) -> SimpleNamespace:
        return SimpleNamespace(metrics=[SimpleNamespace(metricId=0, value=0.0) for _ in range(2)])

    def nvmlGpmMetricsGet(self, request: SimpleNamespace) -> None:
        values = {2: 91.0, 10: 38.0}  # NVML_GPM_METRIC_SM_UTIL, NVML_GPM_METRIC_DRAM_BW_UTIL (nvml.h)
        for metric in request.metrics[: request.numMetrics]:
            metric.value = values[metric.metricId]

    def nvmlGpmSampleFree(self, _sample: SimpleNamespace) -> None:
        self.freed += 1


def test_nvml_gpm_activity_between_two_samples():
    """The GPM branch: nothing on the first tick (one sample), SM and DRAM activity from the second on."""
    fake = FakeGpmNvml()
    sampler = NvmlSampler(nvml=fake)  # type: ignore[arg-type]
    first = {s.name: s.value for s in sampler.collect()}
    second = {s.name: s.value for s in sampler.collect()}
    assert "sm_active" not in first
    assert second["sm_active"] == pytest.approx(0.91) and second["dram_active"] == pytest.approx(0.38)
    assert fake.freed == 1  # the older sample is freed once compared
