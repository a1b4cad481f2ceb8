"""Diagnosis rules on synthetic samples: each scenario names the right bottleneck and rules out the wrong."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from servewise.analysis.diagnosis import NO_BOTTLENECK, Resource
from servewise.analysis.diagnosis import FindingStatus as Verdict
from servewise.analysis.diagnosis import diagnose as _diagnose
from servewise.records import Sample
from servewise.results import RunResult
from servewise.telemetry.exposition import parse_exposition
from servewise.telemetry.gpu import dcgm_samples


def diagnose(summary, samples, **kwargs):
    """The stored JSON shape in, as the tests write it; the typed result is what diagnose reads."""
    return _diagnose(RunResult.model_validate(summary) if summary else None, samples, **kwargs)


FIXTURES = Path(__file__).parent / "fixtures" / "telemetry"
GPU_RESOURCES = (Resource.GPU_COMPUTE, Resource.GPU_MEMORY_BANDWIDTH)

Value = float | list[float] | Callable[[int], float]


class RunBuilder:
    """A run's samples at 1 Hz: a healthy, lightly loaded CPU-only run that scenarios override."""

    def __init__(self, ticks: int = 20, t0: float = 1000.0, seed: int = 3) -> None:
        self.ticks, self.t0 = ticks, t0
        self.rng = random.Random(seed)
        self.series: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[float]] = {}
        self.healthy()

    def noisy(self, base: float, spread: float) -> Callable[[int], float]:
        return lambda _i: max(0.0, base + self.rng.uniform(-spread, spread))

    def set(self, source: str, name: str, value: Value, **labels: str) -> RunBuilder:
        if callable(value):
            values = [value(i) for i in range(self.ticks)]
        elif isinstance(value, list):
            values = value
        else:
            values = [float(value)] * self.ticks
        self.series[(source, name, tuple(sorted(labels.items())))] = values
        return self

    def drop(self, source: str) -> RunBuilder:
        self.series = {k: v for k, v in self.series.items() if k[0] != source}
        return self

    def healthy(self) -> None:
        for core in ("0", "1"):
            self.set("host", "cpu_percent", self.noisy(35, 8), cpu=core)
        self.set("host", "cpu_percent_total", self.noisy(35, 6))
        self.set("host", "cpu_count", 2)
        self.set("host", "cpu_iowait_percent", self.noisy(0.5, 0.5))
        self.set("host", "disk_busy_percent", self.noisy(2, 2))
        self.set("host", "tcp_retrans_ratio", 0.0)
        # loopback traffic that varies with a Poisson load
        self.set("host", "net_rx_bytes_per_s", self.noisy(400_000, 300_000), iface="lo")
        self.set("host", "net_tx_bytes_per_s", self.noisy(400_000, 300_000), iface="lo")
        self.set("host", "net_rx_bytes_per_s", self.noisy(3_000, 2_000), iface="eth0")
        self.set("host", "net_tx_bytes_per_s", self.noisy(2_000, 1_500), iface="eth0")
        self.set("host", "net_speed_bytes_per_s", 1.25e9, iface="eth0")
        self.set("host", "net_drops_per_s", 0.0, iface="eth0")
        self.set("process", "cpu_percent", self.noisy(60, 15))
        self.set("process", "cpu_percent_max_proc", self.noisy(60, 15))
        self.set("process", "cpu_cores_available", 2)
        self.set("process", "involuntary_ctx_switches_per_s", self.noisy(40, 20))
        self.set("process", "read_bytes_per_s", 0.0)
        self.set("client", "cpu_percent", self.noisy(15, 5), worker="0")
        self.set("client", "cpu_percent", self.noisy(3, 2), worker="parent")
        self.set("client", "loop_lag_ms", self.noisy(1.5, 1), worker="0")

    def gpu_fixture(self, name: str) -> RunBuilder:
        body = json.loads((FIXTURES / name).read_text())
        for metric, values in body["series"].items():
            self.set("gpu", metric, [float(v) for v in values][: self.ticks], gpu="0")
        self.ticks = min(self.ticks, len(next(iter(body["series"].values()))))
        return self

    def samples(self) -> list[Sample]:
        out = []
        for (source, name, labels), values in self.series.items():
            for i, value in enumerate(values[: self.ticks]):
                out.append(Sample(self.t0 + i, source, name, float(value), labels))
        return sorted(out, key=lambda s: s.t)


def summary(
    *,
    total: int = 1000,
    failed: int = 0,
    by_class: dict[str, int] | None = None,
    e2e_mean_ms: float = 900.0,
    lag_p99_ms: float = 2.0,
    client_cpu: float = 15.0,
    limited: bool = False,
) -> dict:
    return {
        "run_id": "r1",
        "status": "ok",
        "load": "poisson 8 req/s",
        "metrics": {
            "e2e_ms": {
                "mean": e2e_mean_ms,
                "p50": e2e_mean_ms,
                "p99": 2 * e2e_mean_ms,
                "count": total - failed,
            },
            "requests_total": total,
            "requests_failed": failed,
            "requests_ok": total - failed,
            "errors_by_class": by_class or {},
        },
        "client": {
            "schedule_lag_ms": {"p50": lag_p99_ms / 4, "p99": lag_p99_ms},
            "cpu_percent": client_cpu,
            "limited": limited,
            "reason": "schedule lag" if limited else None,
        },
    }


def verdicts(d) -> dict[str, Verdict]:
    return {f.resource: f.verdict for f in d.findings}


def assert_ruled_out(d, *resources: str) -> None:
    got = verdicts(d)
    for r in resources:
        assert got[r] is Verdict.RULED_OUT, f"{r}: {got[r]} ({d.finding(r).evidence})"


def test_healthy_run_names_no_bottleneck_and_rules_everything_out():
    d = diagnose(summary(), RunBuilder().samples())
    assert d.primary == NO_BOTTLENECK
    assert_ruled_out(
        d, Resource.LOAD_GENERATOR, Resource.NETWORK, Resource.SERVER_CPU, Resource.DISK_IO, Resource.ERRORS
    )
    assert verdicts(d)[Resource.GPU_COMPUTE] is Verdict.NO_DATA
    assert "headroom" in d.next_steps[0]


def test_server_cpu_saturated():
    run = RunBuilder()
    run.set("process", "cpu_percent", run.noisy(192, 6)).set(
        "process", "cpu_percent_max_proc", run.noisy(192, 6)
    )
    run.set("host", "cpu_percent_total", run.noisy(98, 2))
    # llama.cpp defers requests while its slots are busy: a symptom, not the cause
    run.set("metrics", "requests_running", 4).set("metrics", "requests_waiting", run.noisy(6, 4))
    d = diagnose(summary(e2e_mean_ms=4000), run.samples(), server_engine="llamacpp")
    assert d.primary == Resource.SERVER_CPU
    assert d.confidence in {"high", "medium"}
    assert verdicts(d)[Resource.ADMISSION_QUEUE] is Verdict.CONTRIBUTING
    assert_ruled_out(d, Resource.LOAD_GENERATOR, Resource.NETWORK, Resource.DISK_IO, Resource.ERRORS)
    assert "-t" in d.next_steps[0]
    assert "of 2 cores" in d.finding(Resource.SERVER_CPU).evidence


def test_single_process_gil_bound_server_is_cpu_bound_on_a_many_core_host():
    run = RunBuilder()
    run.set("process", "cpu_cores_available", 16)
    run.set("process", "cpu_percent", run.noisy(104, 3)).set(
        "process", "cpu_percent_max_proc", run.noisy(99, 1)
    )
    d = diagnose(summary(), run.samples())
    assert d.primary == Resource.SERVER_CPU
    assert "one process at" in d.finding(Resource.SERVER_CPU).evidence


def test_client_pinned_to_one_core_is_the_limit_not_the_server():
    run = RunBuilder()
    run.set("client", "cpu_percent", run.noisy(98, 2), worker="0")
    run.set("client", "cpu_cores_available", 1, worker="0")
    run.set("client", "loop_lag_ms", run.noisy(120, 60), worker="0")
    run.set("process", "cpu_percent", run.noisy(70, 10))
    d = diagnose(summary(lag_p99_ms=850, client_cpu=98, limited=True), run.samples())
    assert d.primary == Resource.LOAD_GENERATOR
    assert d.confidence == "high"
    assert_ruled_out(d, Resource.SERVER_CPU, Resource.NETWORK, Resource.DISK_IO, Resource.ERRORS)
    assert "client, not the server" in d.next_steps[0]


def test_client_lagging_because_the_server_eats_the_host_cpu_blames_the_server():
    run = RunBuilder()
    run.set("process", "cpu_percent", run.noisy(185, 8)).set("host", "cpu_percent_total", run.noisy(99, 1))
    run.set("client", "cpu_percent", run.noisy(25, 5), worker="0")
    run.set("client", "loop_lag_ms", run.noisy(90, 30), worker="0")  # its loop waits for a CPU
    d = diagnose(summary(lag_p99_ms=240, client_cpu=25), run.samples())
    assert d.primary == Resource.SERVER_CPU
    assert verdicts(d)[Resource.LOAD_GENERATOR] is Verdict.CONTRIBUTING
    assert "starved" in d.finding(Resource.LOAD_GENERATOR).evidence


def test_kv_capacity_on_vllm_gives_the_vllm_advice_with_the_numbers():
    run = RunBuilder().gpu_fixture("nvml_h100_decode_bandwidth.json")
    n = run.ticks
    run.set("gpu", "dram_active", [0.3] * n, gpu="0").set("gpu", "sm_active", [0.35] * n, gpu="0")
    run.set("gpu", "memory_utilization_percent", [35.0] * n, gpu="0")
    run.set("metrics", "kv_cache_usage", run.noisy(0.97, 0.02))
    run.set("metrics", "requests_running", run.noisy(30, 3))
    run.set("metrics", "requests_waiting", [0, 0, 3, 0, 5, 0, 0, 2, 0, 0, 4, 0][:n])
    run.set("metrics", "preemptions_total", [4.0 * i for i in range(n)])
    d = diagnose(summary(), run.samples(), server_engine="vllm")
    assert d.primary == Resource.KV_CAPACITY
    kv = d.finding(Resource.KV_CAPACITY)
    assert kv.numbers["preemptions_per_s"] == pytest.approx(4.0)
    assert "requests waiting 33% of the time" in kv.evidence
    assert "max_model_len" in d.next_steps[0] and "gpu_memory_utilization" in d.next_steps[0]
    assert "preemptions/s" in d.next_steps[0]
    assert_ruled_out(
        d,
        Resource.LOAD_GENERATOR,
        Resource.SERVER_CPU,
        Resource.GPU_COMPUTE,
        Resource.GPU_MEMORY_BANDWIDTH,
        Resource.NETWORK,
        Resource.DISK_IO,
        Resource.ERRORS,
    )


@pytest.mark.parametrize(("kv_used", "named"), [(0.64, Resource.KV_CAPACITY), (0.30, Resource.SERVER_CPU)])
def test_requests_held_back_for_kv_without_preempting(kv_used, named):
    """vLLM's full-prompt admission gate, as a real vLLM CPU run showed it (1 running / 7 waiting / KV 64% of 11
    blocks, no preemption, its CPU saturated): the free 36% cannot hold a second request of the running one's
    64%, so the KV cache is what holds the queue. With the running request at 30%, room for three, the same
    queue is not the KV cache's doing, and the busy CPU stays the answer."""
    run = RunBuilder()
    run.set("process", "cpu_percent", run.noisy(188, 6)).set("host", "cpu_percent_total", run.noisy(98, 1))
    run.set("metrics", "kv_cache_usage", [kv_used if i % 5 else 0.0 for i in range(run.ticks)])
    run.set("metrics", "requests_running", [1.0 if i % 5 else 0.0 for i in range(run.ticks)])
    run.set("metrics", "requests_waiting", [7.0 if i % 5 else 0.0 for i in range(run.ticks)])
    run.set("metrics", "preemptions_total", 12.0)
    d = diagnose(summary(), run.samples(), server_engine="vllm")
    kv = d.finding(Resource.KV_CAPACITY)
    assert kv.numbers["preemptions_per_s"] == 0.0 and kv.numbers["waiting_fraction"] == pytest.approx(0.8)
    assert kv.numbers["kv_room_requests"] == pytest.approx(1 / kv_used)
    assert d.primary == named, kv.evidence
    if named == Resource.KV_CAPACITY:
        assert kv.numbers["waiting_held_for_kv"] == 1.0
        assert "free KV under one running request's share in 100% of the waiting ticks" in kv.evidence
        assert "max_model_len" in d.next_steps[0]
    else:
        assert kv.numbers["waiting_held_for_kv"] == 0.0 and kv.verdict is not Verdict.BOTTLENECK


def test_admission_queue_capped_slots_with_idle_hardware():
    run = RunBuilder()
    run.set("metrics", "requests_running", 4).set("metrics", "requests_waiting", run.noisy(9, 5))
    run.set("metrics", "kv_cache_usage", run.noisy(0.3, 0.05))
    n = run.ticks
    run.set("metrics", "queue_time_seconds_sum", [0.6 * 10 * i for i in range(n)])
    run.set("metrics", "queue_time_seconds_count", [10.0 * i for i in range(n)])
    d = diagnose(summary(e2e_mean_ms=1000), run.samples(), server_engine="llamacpp")
    assert d.primary == Resource.ADMISSION_QUEUE
    assert d.finding(Resource.ADMISSION_QUEUE).numbers["queue_share_of_e2e"] == pytest.approx(0.6)
    assert "-np" in d.next_steps[0] and "capped at 4" in d.next_steps[0]
    assert_ruled_out(d, Resource.SERVER_CPU, Resource.KV_CAPACITY, Resource.LOAD_GENERATOR, Resource.NETWORK)


def test_a_remote_queue_with_the_gpu_unread_does_not_advise_more_sequences():
    """A saturated remote GPU without --dcgm looks like a queue: the advice must say what would tell them
    apart, not "raise --max-num-seqs"."""
    run = remote(RunBuilder())
    run.set("metrics", "requests_running", 64).set("metrics", "requests_waiting", run.noisy(30, 10))
    run.set("metrics", "kv_cache_usage", run.noisy(0.5, 0.05))
    d = diagnose(summary(e2e_mean_ms=1000), run.samples(), server_engine="vllm")
    assert d.primary == Resource.ADMISSION_QUEUE and d.confidence == "low"
    queue = d.finding(Resource.ADMISSION_QUEUE)
    assert queue.numbers["accelerator_seen"] == 0 and (queue.read_on, queue.source) == ("server", "the engine's /metrics")
    step = d.next_steps[0]
    assert "--dcgm" in step and "before changing the engine's limits" in step
    assert step.index("--dcgm") < step.index("--max-num-seqs")  # raising the limit only once GPU headroom is seen


def queue_with_steps(run: RunBuilder, step_ms: Callable[[float], float]) -> RunBuilder:
    """A remote engine holding a queue while its batch moves between 8 and 64, its step time a function of
    the batch: the engine's inter-token histogram as cumulative sum and count, one scrape a second."""
    batch = [8 + 56 * (i % 5) / 4 for i in range(run.ticks)]
    tokens = [0.0]
    for size in batch[1:]:
        tokens.append(tokens[-1] + size * 1000 / step_ms(size))
    seconds = [0.0]
    for i in range(1, run.ticks):
        seconds.append(seconds[-1] + (tokens[i] - tokens[i - 1]) * step_ms((batch[i - 1] + batch[i]) / 2) / 1000)
    run.set("metrics", "requests_running", batch).set("metrics", "requests_waiting", run.noisy(30, 10))
    run.set("metrics", "kv_cache_usage", run.noisy(0.5, 0.05))
    return run.set("metrics", "step_seconds_sum", seconds).set("metrics", "step_seconds_count", tokens)


def test_a_queue_whose_step_time_stays_flat_is_the_engines_limit():
    """No GPU reading, but the engine's own step time barely moved while its batch grew eightfold: the
    hardware had headroom, so the queue is the engine's limit and raising it is the advice."""
    run = queue_with_steps(remote(RunBuilder()), lambda size: 20 + 0.05 * size)
    d = diagnose(summary(e2e_mean_ms=1000), run.samples(), server_engine="vllm")
    queue = d.finding(Resource.ADMISSION_QUEUE)
    assert d.primary == Resource.ADMISSION_QUEUE and d.confidence != "low", queue
    assert queue.numbers["step_elasticity"] < 0.1 and "accelerator_seen" not in queue.numbers
    assert "--max-num-seqs" in d.next_steps[0] and "--dcgm" not in d.next_steps[0]
    assert d.finding(Resource.GPU_COMPUTE).verdict is Verdict.NO_DATA


def test_a_queue_whose_step_time_grows_with_the_batch_is_saturated_hardware():
    """The same queue, but each step takes as much longer as the batch is larger: tokens per second stayed
    flat, so the hardware is the limit (named from the engine's metrics, on the server) and more sequences
    are the wrong advice."""
    run = queue_with_steps(remote(RunBuilder()), lambda size: 2.5 * size)
    d = diagnose(summary(e2e_mean_ms=1000), run.samples(), server_engine="vllm")
    gpu = d.finding(Resource.GPU_COMPUTE)
    assert d.primary == Resource.GPU_COMPUTE, d.finding(Resource.ADMISSION_QUEUE)
    assert gpu.numbers["step_elasticity"] == pytest.approx(1.0, abs=0.05)
    assert (gpu.read_on, gpu.verdict) == ("server", Verdict.BOTTLENECK) and "/metrics" in gpu.source
    assert d.finding(Resource.ADMISSION_QUEUE).verdict is Verdict.CONTRIBUTING
    assert "would not add throughput" in d.next_steps[0] and "--dcgm" in d.next_steps[0]


def test_a_batch_pinned_at_one_size_leaves_the_queue_undecided():
    run = queue_with_steps(remote(RunBuilder()), lambda size: 2.5 * size)
    run.set("metrics", "requests_running", 64)
    d = diagnose(summary(e2e_mean_ms=1000), run.samples(), server_engine="vllm")
    queue = d.finding(Resource.ADMISSION_QUEUE)
    assert d.primary == Resource.ADMISSION_QUEUE and d.confidence == "low"
    assert "one batch size only" in queue.evidence and math.isnan(queue.numbers["step_elasticity"])


def test_errors_429_503_under_load():
    run = RunBuilder()
    shed = summary(total=2000, failed=640, by_class={"http_status": 640})
    shed["metrics"]["error_examples"] = {"http_status": 'HTTP 429: {"error": "overloaded"}'}
    d = diagnose(shed, run.samples())
    assert "(e.g. HTTP 429)" in d.finding(Resource.ERRORS).evidence
    assert d.primary == Resource.ERRORS
    assert d.finding(Resource.ERRORS).numbers["error_rate"] == pytest.approx(0.32)
    assert any("429/503" in step for step in d.next_steps)
    assert_ruled_out(d, Resource.SERVER_CPU, Resource.LOAD_GENERATOR, Resource.NETWORK, Resource.DISK_IO)


def test_a_few_errors_only_contribute():
    d = diagnose(summary(total=1000, failed=12, by_class={"timeout": 12}), RunBuilder().samples())
    assert verdicts(d)[Resource.ERRORS] is Verdict.CONTRIBUTING
    assert d.primary == NO_BOTTLENECK


def test_disk_io_bound_server():
    run = RunBuilder()
    run.set("host", "disk_busy_percent", run.noisy(96, 3)).set("host", "cpu_iowait_percent", run.noisy(35, 5))
    run.set("process", "read_bytes_per_s", run.noisy(180e6, 20e6))
    d = diagnose(summary(), run.samples())
    assert d.primary == Resource.DISK_IO
    assert "180" in d.finding(Resource.DISK_IO).evidence or "MB/s" in d.finding(Resource.DISK_IO).evidence
    assert_ruled_out(d, Resource.SERVER_CPU, Resource.LOAD_GENERATOR, Resource.NETWORK, Resource.ERRORS)


def test_network_link_with_known_speed_saturated():
    run = RunBuilder()
    run.set("host", "net_rx_bytes_per_s", run.noisy(119e6, 3e6), iface="eth0")
    run.set("host", "net_speed_bytes_per_s", 125e6, iface="eth0")  # 1 Gb/s
    d = diagnose(summary(), run.samples())
    assert d.primary == Resource.NETWORK
    assert d.finding(Resource.NETWORK).numbers["link_utilisation"] > 0.9
    assert_ruled_out(d, Resource.SERVER_CPU, Resource.LOAD_GENERATOR, Resource.DISK_IO, Resource.ERRORS)


def test_shaped_link_found_by_its_round_trip_growing_under_load():
    run = RunBuilder()
    # a veth reports 10 Gb/s, but tc holds it at 1 MB/s: its queue adds ~200 ms to every round trip
    run.set("host", "net_rx_bytes_per_s", run.noisy(1.0e6, 0.03e6), iface="veth-sw0")
    run.set("host", "net_speed_bytes_per_s", 1.25e9, iface="veth-sw0")
    run.set("process", "cpu_percent", run.noisy(12, 4))
    run.set("client", "connect_rtt_ms", [0.4] + [run.noisy(210, 40)(i) for i in range(run.ticks - 1)])
    # connections wait behind the full link, so sends go out late while the client's loop is on time
    d = diagnose(summary(e2e_mean_ms=6000, lag_p99_ms=1400, limited=True), run.samples())
    assert d.primary == Resource.NETWORK
    network = d.finding(Resource.NETWORK)
    assert "queue on the path" in network.evidence and network.numbers["connect_rtt_idle_ms"] == 0.4
    assert (network.read_on, network.source) == ("client", "psutil NIC counters and a TCP connect probe on this machine")
    assert verdicts(d)[Resource.LOAD_GENERATOR] is Verdict.CONTRIBUTING
    assert "outside the client" in d.finding(Resource.LOAD_GENERATOR).evidence
    assert_ruled_out(d, Resource.SERVER_CPU, Resource.DISK_IO, Resource.ERRORS)


@pytest.mark.parametrize(("drops", "verdict"), [(0.0, Verdict.RULED_OUT), (5.0, Verdict.CONTRIBUTING), (400.0, Verdict.BOTTLENECK)])
def test_interface_drops_are_network_evidence(drops, verdict):
    run = RunBuilder()
    run.set("host", "net_rx_bytes_per_s", run.noisy(2.0e6, 0.2e6), iface="eth0")
    run.set("host", "net_drops_per_s", drops, iface="eth0")
    assert verdicts(diagnose(summary(), run.samples()))[Resource.NETWORK] is verdict


def test_a_steady_stream_is_not_network_bound():
    """A healthy server under steady Poisson load: traffic varies by under 25% a second and nothing else is
    busy, which is no evidence about the link (the old plateau rule named it network-bound)."""
    run = RunBuilder()
    run.set("host", "net_rx_bytes_per_s", run.noisy(1.0e6, 0.1e6), iface="veth-sw0")
    run.set("host", "net_speed_bytes_per_s", 1.25e9, iface="veth-sw0")
    run.set("process", "cpu_percent", run.noisy(12, 4))
    run.set("client", "connect_rtt_ms", [0.3] + [run.noisy(0.35, 0.1)(i) for i in range(run.ticks - 1)])
    d = diagnose(summary(), run.samples())
    assert d.primary == NO_BOTTLENECK
    assert verdicts(d)[Resource.NETWORK] is Verdict.RULED_OUT


def test_a_constant_added_latency_is_not_a_network_bottleneck():
    """netem's fixed delay: the round trip is long but does not grow with the load."""
    run = RunBuilder()
    run.set("client", "connect_rtt_ms", [50.2] + [run.noisy(50.5, 0.4)(i) for i in range(run.ticks - 1)])
    d = diagnose(summary(), run.samples())
    assert verdicts(d)[Resource.NETWORK] is Verdict.RULED_OUT
    assert d.finding(Resource.NETWORK).numbers["connect_rtt_p50_ms"] > 50


def remote(run: RunBuilder) -> RunBuilder:
    """The same run with the engine on another machine: this machine's counters are the client's."""
    run.drop("process")
    run.set("host", "serves_target", 0.0)
    return run


def test_a_remote_server_without_node_exporter_has_no_cpu_or_disk_finding_from_the_client():
    run = remote(RunBuilder())
    run.set("host", "cpu_percent_total", run.noisy(97, 2))  # the client's machine is busy, not the server
    d = diagnose(summary(), run.samples())
    for resource in (Resource.SERVER_CPU, Resource.DISK_IO):
        finding = d.finding(resource)
        assert finding.verdict is Verdict.NO_DATA, finding
        assert "--node-exporter" in finding.evidence and finding.read_on is None


def test_a_remote_server_cpu_saturated_is_named_from_its_node_exporter():
    run = remote(RunBuilder())
    run.set("host", "cpu_percent_total", run.noisy(20, 5))  # the client's machine is quiet
    run.set("node", "up", 1.0, url="http://10.200.0.2:9100/metrics")
    run.set("node", "cpu_percent_total", run.noisy(98, 1.5))
    run.set("node", "cpu_count", 2)
    run.set("node", "disk_busy_percent", run.noisy(3, 2))
    run.set("node", "cpu_iowait_percent", 0.2)
    d = diagnose(summary(), run.samples())
    assert d.primary == Resource.SERVER_CPU
    cpu = d.finding(Resource.SERVER_CPU)
    assert (cpu.read_on, cpu.source) == ("server", "node_exporter http://10.200.0.2:9100/metrics")
    assert "serving host CPU 98%" in cpu.evidence
    disk = d.finding(Resource.DISK_IO)
    assert disk.verdict is Verdict.RULED_OUT and disk.read_on == "server"


def test_every_finding_says_where_it_was_read():
    d = diagnose(summary(), RunBuilder().samples())
    places = {f.resource: (f.read_on, f.source) for f in d.findings}
    assert places[Resource.SERVER_CPU] == ("server", "psutil, the server's process tree")
    assert places[Resource.LOAD_GENERATOR][0] == "client"
    assert places[Resource.DISK_IO] == ("server", "psutil on this machine, which serves the target too")
    for finding in d.findings:
        assert (finding.read_on is None) == (finding.verdict is Verdict.NO_DATA), finding
        assert finding.to_json()["read_on"] == finding.read_on


def test_flat_traffic_is_not_blamed_on_the_network_when_the_server_cpu_is_saturated():
    run = RunBuilder()
    run.set("host", "net_rx_bytes_per_s", run.noisy(1.0e6, 0.03e6), iface="veth-sw0")
    run.set("process", "cpu_percent", run.noisy(195, 4))
    d = diagnose(summary(), run.samples())
    assert d.primary == Resource.SERVER_CPU
    assert verdicts(d)[Resource.NETWORK] is Verdict.RULED_OUT


def test_gpu_compute_bound_from_nvml_fixture():
    d = diagnose(summary(), RunBuilder().gpu_fixture("nvml_h100_prefill_compute.json").samples())
    assert d.primary == Resource.GPU_COMPUTE
    compute = d.finding(Resource.GPU_COMPUTE)
    assert compute.numbers["sm_active_p50"] > 0.85
    assert "power/thermal" in compute.evidence  # SW power cap events in the fixture
    assert verdicts(d)[Resource.GPU_MEMORY_BANDWIDTH] is not Verdict.BOTTLENECK  # DRAM ~40%
    assert_ruled_out(d, Resource.SERVER_CPU, Resource.LOAD_GENERATOR, Resource.NETWORK, Resource.DISK_IO)
    assert "servewise plan" in d.next_steps[0]


def test_gpu_memory_bandwidth_bound_from_nvml_fixture():
    d = diagnose(summary(), RunBuilder().gpu_fixture("nvml_h100_decode_bandwidth.json").samples())
    assert d.primary == Resource.GPU_MEMORY_BANDWIDTH
    assert verdicts(d)[Resource.GPU_COMPUTE] is Verdict.RULED_OUT  # util 100% but SM active ~40%
    assert "decode" in d.next_steps[0]
    assert_ruled_out(d, Resource.SERVER_CPU, Resource.LOAD_GENERATOR, Resource.NETWORK)


def test_gpu_utilisation_alone_never_decides():
    """A10G at 98% utilisation, 22% of its power, memory busy 6%: the GPU is not the bottleneck."""
    d = diagnose(summary(), RunBuilder().gpu_fixture("nvml_a10g_tiny_kernels.json").samples())
    assert verdicts(d)[Resource.GPU_COMPUTE] is Verdict.RULED_OUT
    assert verdicts(d)[Resource.GPU_MEMORY_BANDWIDTH] is Verdict.RULED_OUT
    assert "low power" in d.finding(Resource.GPU_COMPUTE).evidence
    assert d.primary == NO_BOTTLENECK


def test_gpu_utilisation_without_power_or_sm_activity_is_at_most_contributing():
    run = RunBuilder()
    run.set("gpu", "utilization_percent", 100, gpu="0")
    d = diagnose(summary(), run.samples())
    assert verdicts(d)[Resource.GPU_COMPUTE] is Verdict.CONTRIBUTING
    assert d.primary != Resource.GPU_COMPUTE


def _dcgm_fixture_samples() -> list[Sample]:
    text = (FIXTURES / "dcgm_exporter_decode.prom").read_text()
    scrapes = [s for s in text.split("# --- scrape") if s.strip()]
    samples: list[Sample] = []
    for i, scrape in enumerate(scrapes):
        body = scrape.split("\n", 1)[1]
        samples += dcgm_samples(parse_exposition(body), 1000.0 + i)
    return samples


def test_dcgm_fixture_maps_to_gpu_names_and_diagnoses_bandwidth():
    samples = _dcgm_fixture_samples()
    names = {s.name for s in samples}
    assert {"sm_active", "dram_active", "memory_used_bytes", "memory_total_bytes", "power_watts"} <= names
    total = next(s.value for s in samples if s.name == "memory_total_bytes")
    assert total == (41306 + 4187) * 1024 * 1024
    assert all(s.source == "dcgm" and dict(s.labels)["gpu"] == "0" for s in samples)
    run = RunBuilder(ticks=5)
    d = diagnose(summary(), run.samples() + samples)
    assert d.primary == Resource.GPU_MEMORY_BANDWIDTH
    assert d.finding(Resource.GPU_MEMORY_BANDWIDTH).numbers["dram_active_p50"] == pytest.approx(0.78)
    assert verdicts(d)[Resource.GPU_COMPUTE] is Verdict.RULED_OUT


@pytest.mark.parametrize(("tensor", "compute"), [(0.05, Verdict.CONTRIBUTING), (0.6, Verdict.BOTTLENECK)])
def test_sm_activity_is_necessary_not_sufficient_for_compute_bound(tensor, compute):
    """Decode keeps the SMs "active" waiting on DRAM: without busy tensor pipes, that is memory-bound."""
    run = RunBuilder()
    for name, value in (("sm_active", 0.92), ("dram_active", 0.85), ("tensor_active", tensor), ("power_watts", 600)):
        run.set("dcgm", name, run.noisy(value, value * 0.02), gpu="0")
    run.set("dcgm", "power_limit_watts", 700, gpu="0")
    d = diagnose(summary(), run.samples())
    assert verdicts(d)[Resource.GPU_COMPUTE] is compute, d.finding(Resource.GPU_COMPUTE).evidence
    assert d.primary == (Resource.GPU_MEMORY_BANDWIDTH if compute is Verdict.CONTRIBUTING else d.primary)
    assert d.finding(Resource.GPU_COMPUTE).source == "dcgm-exporter"


def test_no_samples_and_no_summary_is_no_data_everywhere():
    d = diagnose({}, [])
    assert set(verdicts(d).values()) == {Verdict.NO_DATA}
    assert d.primary == NO_BOTTLENECK and d.confidence == "low"


def test_to_dict_shape_is_json_ready():
    d = diagnose(summary(total=100, failed=50, by_class={"http_status": 50}), RunBuilder().samples())
    out = json.loads(json.dumps(d.to_json()))
    assert set(out) >= {"primary", "confidence", "findings", "next_steps"}
    assert len(out["findings"]) == len(Resource)
    for f in out["findings"]:
        assert {"resource", "verdict", "evidence"} <= set(f)
        assert all(math.isfinite(v) for v in f["numbers"].values())
    assert out["primary"] == "errors"


def test_engine_inferred_from_stored_raw_series():
    run = RunBuilder()
    run.set("metrics", "raw:vllm:num_requests_waiting", 0)
    d = diagnose(summary(), run.samples())
    assert d.engine == "vllm"


def test_small_schedule_lag_on_long_requests_does_not_blame_the_client():
    d = diagnose(summary(lag_p99_ms=22, e2e_mean_ms=5000, limited=True), RunBuilder().samples())
    assert verdicts(d)[Resource.LOAD_GENERATOR] is Verdict.RULED_OUT
    assert "client-limited" in d.finding(Resource.LOAD_GENERATOR).evidence  # a stored flag is still shown


@pytest.mark.parametrize(
    ("lag_p99_ms", "e2e_ms", "cpu", "limited"),
    [(22, 5000, 20, False), (400, 300, 20, True), (15, 30, 20, True), (8, 30, 20, False), (2, 900, 95, True)],
)
def test_bench_and_the_diagnosis_use_one_client_rule(lag_p99_ms, e2e_ms, cpu, limited):
    """bench's flag (summary, sweep, gate) and the diagnosis' load-generator finding agree on every run."""
    from servewise.analysis.client import client_verdict

    lag = {"count": 1000, "p50": lag_p99_ms / 4, "p99": lag_p99_ms, "max": lag_p99_ms}
    check = client_verdict(lag, [cpu], open_loop=True, loop_lag_max_ms=1.0, e2e_p50_ms=e2e_ms)
    assert check.limited is limited
    run = RunBuilder().set("client", "cpu_percent", cpu, worker="0")
    flagged = summary(lag_p99_ms=lag_p99_ms, e2e_mean_ms=e2e_ms, client_cpu=cpu, limited=check.limited)
    finding = diagnose(flagged, run.samples()).finding(Resource.LOAD_GENERATOR)
    assert (finding.verdict is not Verdict.RULED_OUT) is limited, finding.evidence


def test_the_client_advice_follows_the_cause():
    """A client starved by a co-located server is told to move, not to add workers."""
    run = RunBuilder()
    run.set("process", "cpu_percent", run.noisy(185, 8)).set("host", "cpu_percent_total", run.noisy(99, 1))
    run.set("client", "loop_lag_ms", run.noisy(90, 30), worker="0")
    d = diagnose(summary(lag_p99_ms=240, client_cpu=25, limited=True), run.samples())
    assert d.client_cause == "starved"
    from servewise.analysis.client import client_advice

    assert "quiet machine" in client_advice(d.client_cause) and "--workers" not in client_advice(d.client_cause)
    busy = RunBuilder().set("client", "cpu_percent", 98, worker="0")
    d = diagnose(summary(lag_p99_ms=850, client_cpu=98, limited=True), busy.samples())
    assert d.client_cause == "cpu" and "--workers" in client_advice(d.client_cause)


def test_client_starved_by_other_processes_says_so():
    run = RunBuilder()
    run.set("host", "cpu_percent_total", run.noisy(99, 1)).set("process", "cpu_percent", run.noisy(15, 3))
    run.set("client", "loop_lag_ms", run.noisy(150, 50), worker="0")
    d = diagnose(summary(lag_p99_ms=400, e2e_mean_ms=300), run.samples())
    assert d.primary == Resource.LOAD_GENERATOR
    assert "other processes" in d.finding(Resource.LOAD_GENERATOR).evidence
    assert "quiet machine" in " ".join(d.next_steps)
    assert verdicts(d)[Resource.SERVER_CPU] is Verdict.RULED_OUT


@pytest.mark.parametrize("backlogged", [True, False])
def test_client_stalls_beside_a_server_backlog_do_not_make_the_client_the_limit(backlogged):
    """Seen on real vLLM (CPU) with a tiny KV cache: event-loop stalls of 0.5 s in an idle worker while the
    engine preempted 5.6 requests/s. A client that limits the load leaves the server without a backlog."""
    run = RunBuilder()
    run.set("client", "cpu_percent", run.noisy(20, 3), worker="0")
    run.set("client", "loop_lag_ms", run.noisy(500, 60), worker="0")
    run.set("metrics", "requests_running", 2)
    run.set("metrics", "requests_waiting", [float(i % 3 == 0) * 4 * backlogged for i in range(run.ticks)])
    run.set("metrics", "kv_cache_usage", run.noisy(0.8, 0.15))
    run.set("metrics", "preemptions_total", [5.0 * i * backlogged for i in range(run.ticks)])
    d = diagnose(summary(lag_p99_ms=1.4, e2e_mean_ms=4000), run.samples(), server_engine="vllm")
    client = d.finding(Resource.LOAD_GENERATOR)
    if backlogged:
        assert d.primary == Resource.KV_CAPACITY
        assert client.verdict is Verdict.CONTRIBUTING and "held a backlog" in client.evidence
    else:
        assert d.primary == Resource.LOAD_GENERATOR and client.verdict is Verdict.BOTTLENECK


def test_loopback_retransmits_from_full_accept_queues_do_not_blame_the_network():
    run = RunBuilder()
    run.set("host", "tcp_retrans_ratio", run.noisy(0.03, 0.005))
    d = diagnose(summary(), run.samples())
    assert verdicts(d)[Resource.NETWORK] is Verdict.RULED_OUT
    run.set("host", "net_rx_bytes_per_s", run.noisy(40e6, 5e6), iface="eth0")  # now a real link carries it
    d = diagnose(summary(), run.samples())
    assert verdicts(d)[Resource.NETWORK] is Verdict.BOTTLENECK


def test_the_findings_read_the_load_window_not_the_idle_ticks_around_it():
    """The telemetry session starts before the workers and stops after the last answer: 5 idle ticks before the
    load and 5 after it. Inside the window the engine held a full KV cache and a queue every tick; read whole,
    the idle ticks halve the waiting fraction and the KV median, and the counter's rate."""
    idle, busy = [0.0] * 5, 10
    run = RunBuilder(ticks=20)
    run.set("metrics", "kv_cache_usage", idle + [1.0] * busy + idle)
    run.set("metrics", "requests_running", idle + [2.0] * busy + idle)
    run.set("metrics", "requests_waiting", idle + [6.0] * busy + idle)
    run.set("metrics", "preemptions_total", idle + [3.0 * (i + 1) for i in range(busy)] + [30.0] * 5)
    run.set("client", "connect_rtt_ms", [0.2] * 5 + [40.0] * busy + [0.2] * 5)
    window = (run.t0 + 5, run.t0 + 5 + busy - 1)
    whole = diagnose(summary(), run.samples(), server_engine="vllm")
    windowed = diagnose(summary(), run.samples(), server_engine="vllm", window=window)
    kv, kv_whole = windowed.finding(Resource.KV_CAPACITY), whole.finding(Resource.KV_CAPACITY)
    assert kv.numbers["waiting_fraction"] == 1.0 and kv_whole.numbers["waiting_fraction"] == 0.5
    # the tick before the window is the counter's start: 30 preemptions over the 10 s from it
    assert kv.numbers["preemptions_per_s"] == pytest.approx(3.0)
    assert kv_whole.numbers["preemptions_per_s"] == pytest.approx(30 / 19)
    queue = windowed.finding(Resource.ADMISSION_QUEUE)
    assert queue.numbers["running_p50"] == 2.0
    assert whole.finding(Resource.ADMISSION_QUEUE).numbers["running_p50"] == 1.0  # half the ticks idle
    # the idle round trip is the probe before the load began
    net = windowed.finding(Resource.NETWORK)
    assert net.numbers["connect_rtt_idle_ms"] == 0.2 and net.numbers["connect_rtt_p50_ms"] == 40.0
    assert net.verdict is Verdict.BOTTLENECK, net.evidence
    # a window too short for three ticks is read whole
    short = diagnose(summary(), run.samples(), server_engine="vllm", window=(run.t0 + 5, run.t0 + 6))
    assert short.finding(Resource.KV_CAPACITY).numbers == kv_whole.numbers
