"""Induce each bottleneck for real on this machine, run `servewise bench` against it, require the right verdict.

Each scenario drives the real CLI in a subprocess while a TelemetrySession samples host, server process tree
and the bench processes on the same clock; the diagnosis then reads the bench's JSON summary and every
sample (ours plus the ones bench's workers stored). Each also checks that the wrong classes are ruled out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from servewise.analysis.diagnosis import FindingStatus as Verdict
from servewise.analysis.diagnosis import Resource, diagnose
from servewise.records import Sample
from servewise.results import DiagnosisResult as Diagnosis
from servewise.results import RunResult
from servewise.store import RunStore
from servewise.telemetry import TelemetrySession

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SERVEWISE = Path(sys.executable).with_name("servewise")
TOY_SERVER = Path(__file__).parent / "fixtures" / "telemetry" / "toy_server.py"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def toy_server(
    *args: str, prefix: tuple[str, ...] = (), host: str = "127.0.0.1"
) -> Iterator[tuple[str, int]]:
    """The toy OpenAI server as its own process (group); yields (base URL, pid)."""
    port = free_port()
    cmd = [*prefix, sys.executable, str(TOY_SERVER), "--host", host, "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "READY" not in line:
            raise RuntimeError(f"toy server did not start: {line}{proc.stdout.read() if proc.stdout else ''}")
        yield f"http://{host}:{port}", _innermost_python(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def _innermost_python(pid: int) -> int:
    """The server process itself when it was started through `taskset`/`ip netns exec` (they exec, but be safe)."""
    proc = psutil.Process(pid)
    while not proc.name().startswith("python"):
        children = proc.children()
        if not children:
            break
        proc = children[0]
    return proc.pid


@dataclass
class Observed:
    summary: dict
    samples: list[Sample]
    diagnosis: Diagnosis

    def verdict(self, resource: str) -> Verdict:
        return self.diagnosis.finding(resource).verdict

    def explain(self) -> str:
        context = {k: self.summary.get(k) for k in ("load", "client", "workers")}
        return json.dumps({**self.diagnosis.to_json(), "bench": context}, indent=1)


def bench_observed(
    tmp_path: Path,
    bench_args: list[str],
    *,
    server_pid: int | None,
    metrics_url: str | None = None,
    prefix: tuple[str, ...] = (),
    interval_s: float = 0.5,
    engine: str | None = None,
) -> Observed:
    """Run `servewise bench` with telemetry beside it; diagnose from its summary and all samples."""
    store, out = tmp_path / "runs.db", tmp_path / "result.json"
    cmd = [*prefix, str(SERVEWISE), "bench", *bench_args, "--store", str(store), "--json", str(out), "-q"]
    bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    collected: list[Sample] = []

    async def observe() -> None:
        workers: list[int] = []
        deadline = time.monotonic() + 20
        while not workers and time.monotonic() < deadline and bench.poll() is None:
            with contextlib.suppress(psutil.Error):
                workers = [
                    p.pid
                    for p in psutil.Process(bench.pid).children(recursive=True)
                    if "spawn_main" in " ".join(p.cmdline())
                ]
            await asyncio.sleep(0.1)
        session = TelemetrySession(
            interval_s,
            target_host=urlsplit(bench_args[bench_args.index("-t") + 1]).hostname,
            metrics_url=metrics_url,
            server_pid=server_pid,
            target_port=None,
            client_pids=workers,
            dcgm_url=None,
            gpu=False,
            sink=collected.extend,
        )
        async with session:
            while bench.poll() is None:
                await asyncio.sleep(0.1)

    asyncio.run(observe())
    output = bench.stdout.read() if bench.stdout else ""
    assert out.exists(), f"bench failed ({bench.returncode}):\n{output}"
    summary = json.loads(out.read_text())
    with RunStore(store) as runs:
        stored = runs.samples(summary["run_id"])
    # Once bench samples telemetry itself, its samples replace ours (same sources, same clock).
    samples = stored if any(s.source == "host" for s in stored) else stored + collected
    return Observed(
        summary, samples, diagnose(RunResult.model_validate(summary), samples, server_engine=engine)
    )


def assert_ruled_out(observed: Observed, *resources: str) -> None:
    for resource in resources:
        assert observed.verdict(resource) is Verdict.RULED_OUT, f"{resource}:\n{observed.explain()}"


def test_errors_from_a_server_that_sheds_load(tmp_path):
    with toy_server("--shed", "--limit", "2", "--delay", "0.05") as (url, pid):
        seen = bench_observed(
            tmp_path, ["-t", url, "--load", "poisson:60", "-d", "6s", "--output-tokens", "16"], server_pid=pid
        )
    assert seen.summary["metrics"]["errors_by_class"].get("http_status", 0) > 0
    assert seen.diagnosis.primary == Resource.ERRORS, seen.explain()
    assert any("429/503" in step for step in seen.diagnosis.next_steps)
    assert_ruled_out(seen, Resource.LOAD_GENERATOR, Resource.SERVER_CPU, Resource.NETWORK, Resource.DISK_IO)


@pytest.mark.skipif(
    not shutil.which("taskset") or (os.cpu_count() or 1) < 2, reason="needs taskset and 2 cores"
)
def test_client_pinned_to_one_core_is_named_not_the_server(tmp_path):
    # The server writes a pre-built 250-chunk stream in one call; the client must parse every chunk.
    with toy_server("--chunks", "250", prefix=("taskset", "-c", "1")) as (url, pid):
        seen = bench_observed(
            tmp_path,
            ["-t", url, "--load", "poisson:3000", "-d", "6s", "--output-tokens", "250", "--timeout", "30s"],
            server_pid=pid,
            prefix=("taskset", "-c", "0"),
        )
    assert seen.diagnosis.primary == Resource.LOAD_GENERATOR, seen.explain()
    assert seen.verdict(Resource.SERVER_CPU) is not Verdict.BOTTLENECK, seen.explain()
    assert_ruled_out(seen, Resource.NETWORK, Resource.DISK_IO, Resource.ERRORS)


NETNS = "sw-diag-net"


def _netns_possible() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("ip")) and bool(shutil.which("tc"))


@contextlib.contextmanager
def shaped_netns(rate: str = "4mbit") -> Iterator[tuple[str, str]]:
    """A network namespace behind a veth pair whose server->client direction tc holds to ``rate``.

    Yields (server address inside the namespace, host-side interface). Torn down whatever happens.
    """
    host_if, ns_if = "swdiag0", "swdiag1"
    host_ip, ns_ip = "10.213.7.1", "10.213.7.2"
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True)

    try:
        run("ip", "netns", "add", NETNS)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        run("ip", "link", "set", ns_if, "netns", NETNS)
        run("ip", "addr", "add", f"{host_ip}/24", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{ns_ip}/24", "dev", ns_if)
        run("ip", "netns", "exec", NETNS, "ip", "link", "set", ns_if, "up")
        run("ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up")
        run("ip", "netns", "exec", NETNS, "tc", "qdisc", "add", "dev", ns_if, "root", "tbf", "rate", rate,
            "burst", "32kbit", "latency", "400ms")  # fmt: skip
        yield ns_ip, host_if
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)


@pytest.mark.skipif(not _netns_possible(), reason="needs root, iproute2 and tc")
def test_network_shaped_link_with_large_embeddings(tmp_path):
    with (
        shaped_netns("4mbit") as (ns_ip, host_if),
        toy_server("--dim", "4096", prefix=("ip", "netns", "exec", NETNS), host=ns_ip) as (url, pid),
    ):
        seen = bench_observed(
            tmp_path,
            ["-t", url, "--api", "embeddings", "--load", "poisson:20", "-d", "8s", "--timeout", "60s"],
            server_pid=pid,
        )
    network = seen.diagnosis.finding(Resource.NETWORK)
    assert seen.diagnosis.primary == Resource.NETWORK, seen.explain()
    assert host_if in network.evidence
    # named on positive evidence: the round trip grew from its idle value as the link's queue filled
    assert network.numbers["connect_rtt_p50_ms"] >= network.numbers["connect_rtt_idle_ms"] + 10, (
        seen.explain()
    )
    # connections queue behind the full link, so sends leave late while the client idles: not its fault
    assert seen.verdict(Resource.LOAD_GENERATOR) is not Verdict.BOTTLENECK, seen.explain()
    assert_ruled_out(seen, Resource.ERRORS)
    # the server sits in its own namespace, another host to bench: its CPU and disk are not this machine's
    for resource in (Resource.SERVER_CPU, Resource.DISK_IO):
        assert (
            seen.verdict(resource) is Verdict.NO_DATA
            and "--node-exporter" in seen.diagnosis.finding(resource).evidence
        )


@contextlib.contextmanager
def twin_server(**options: str) -> Iterator[tuple[str, int]]:
    """The twin (vLLM-style /metrics) in its own process; yields (base URL, pid)."""
    port = free_port()
    code = (
        "from servewise.twin.server import run_twin\n"
        f"run_twin(host='127.0.0.1', port={port}, **{options!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import urllib.request

                urllib.request.urlopen(f"{url}/health", timeout=1).read()
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("the twin did not start")
        yield url, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_kv_capacity_on_the_twin_with_long_prompts(tmp_path):
    # Llama-3.1-8B on an RTX 4090 leaves ~41k KV tokens: about a dozen 3k-token requests fit at once.
    with twin_server(model="llama-3.1-8b", gpu="rtx4090") as (url, pid):
        seen = bench_observed(
            tmp_path,
            [
                "-t",
                url,
                "--load",
                "poisson:8",
                "-d",
                "12s",
                "--input-tokens",
                "3000",
                "--output-tokens",
                "256",
            ],
            server_pid=pid,
            metrics_url=f"{url}/metrics",
        )
    kv = seen.diagnosis.finding(Resource.KV_CAPACITY)
    assert seen.diagnosis.engine == "vllm"
    assert seen.diagnosis.primary == Resource.KV_CAPACITY, seen.explain()
    assert kv.numbers["kv_cache_usage_p90"] >= 0.9
    assert "max_model_len" in seen.diagnosis.next_steps[0]
    assert seen.verdict(Resource.ADMISSION_QUEUE) is not Verdict.BOTTLENECK
    assert_ruled_out(seen, Resource.LOAD_GENERATOR, Resource.SERVER_CPU, Resource.NETWORK, Resource.DISK_IO,
                     Resource.ERRORS)  # fmt: skip


@pytest.mark.engines
def test_server_cpu_with_llama_server_driven_past_its_capacity(tmp_path):
    from engines.servers import LlamaServer

    if reason := LlamaServer.missing_reason():
        pytest.skip(reason)
    with LlamaServer(slots=4, threads=2) as srv:
        seen = bench_observed(
            tmp_path,
            # closed loop, three times the four slots: the server never idles and the queue never explodes
            [
                "-t",
                srv.base_url,
                "--load",
                "concurrency:12",
                "-d",
                "8s",
                "--output-tokens",
                "64",
                "--timeout",
                "30s",
            ],
            server_pid=srv.pid,
            metrics_url=f"{srv.base_url}/metrics",
        )
    assert seen.diagnosis.engine == "llamacpp"
    assert seen.diagnosis.primary == Resource.SERVER_CPU, seen.explain()
    assert seen.verdict(Resource.LOAD_GENERATOR) is not Verdict.BOTTLENECK, seen.explain()
    assert seen.verdict(Resource.ADMISSION_QUEUE) is not Verdict.BOTTLENECK  # deferred requests: a symptom
    assert "-t" in seen.diagnosis.next_steps[0]
    assert_ruled_out(seen, Resource.NETWORK, Resource.DISK_IO, Resource.ERRORS)
