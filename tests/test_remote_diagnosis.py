"""The diagnosis of a server on another host: llama-server and node_exporter in a network namespace with
its own address, servewise outside it. The verdicts about the server come from the serving host's
exporter, never from the client's machine, and a healthy server under steady load is not network-bound."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.gateway import running_gateway
from servewise.analysis.diagnosis.step import STEP_HEADROOM, STEP_SATURATED

from cli_runner import servewise

pytestmark = pytest.mark.engines



def bench(url: str, store, *extra: str) -> dict:
    result = servewise(
        "bench", "--target", url, "--json", "-", "--sample-interval", "0.5s", *extra, store=store, timeout=300
    )
    assert result.code == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.json() | {"_stderr": result.stderr}


def findings(run: dict) -> dict[str, dict]:
    return {f["resource"]: f for f in run["diagnosis"]["findings"]}


def test_a_healthy_remote_server_under_steady_load_is_not_network_bound(
    remote_llama_server, remote_node_exporter, store_path
):
    # the serving host's node_exporter is found on its usual port: no flag given
    run = bench(remote_llama_server.base_url, store_path, "--load", "poisson:2", "-d", "8s",
                "--input-tokens", "32", "--output-tokens", "8")  # fmt: skip
    found = findings(run)
    print({k: (v["verdict"], v["read_on"], v["source"], v["evidence"]) for k, v in found.items()})
    assert f"its node_exporter answers at {remote_node_exporter}" in run["_stderr"]
    assert run["metrics"]["requests_failed"] == 0
    assert run["diagnosis"]["primary"] != "network"
    assert found["network"]["verdict"] == "ruled out", found["network"]
    cpu = found["server_cpu"]
    assert (cpu["read_on"], cpu["source"]) == ("server", f"node_exporter {remote_node_exporter}")
    assert found["disk_io"]["read_on"] == "server"
    assert found["load_generator"]["read_on"] == "client"


def test_a_saturated_remote_server_cpu_is_named_from_node_exporter(
    remote_host, remote_llama_server, remote_node_exporter, store_path
):
    remote_host.cpu_hog(cores=2)
    run = bench(remote_llama_server.base_url, store_path, "--node-exporter", remote_node_exporter,
                "--load", "poisson:4", "-d", "8s", "--input-tokens", "64", "--output-tokens", "16")  # fmt: skip
    found = findings(run)
    print({k: (v["verdict"], v["evidence"]) for k, v in found.items()})
    cpu = found["server_cpu"]
    assert cpu["verdict"] == "bottleneck", cpu
    assert (cpu["read_on"], cpu["source"]) == ("server", f"node_exporter {remote_node_exporter}")
    assert cpu["numbers"]["host_cpu_percent_p50"] >= 90
    assert run["diagnosis"]["primary"] == "server_cpu", run["diagnosis"]


def test_without_node_exporter_the_remote_cpu_is_no_data_never_the_clients(
    remote_host, remote_llama_server, store_path
):
    remote_host.cpu_hog(cores=2)  # this machine is busy too: its CPU must not stand in for the server's
    run = bench(remote_llama_server.base_url, store_path, "--load", "poisson:2", "-d", "6s",
                "--input-tokens", "32", "--output-tokens", "8")  # fmt: skip
    found = findings(run)
    assert "no node_exporter answers" in run["_stderr"] and "--node-exporter" in run["_stderr"]
    for resource in ("server_cpu", "disk_io"):
        assert found[resource]["verdict"] == "no data", found[resource]
        assert "--node-exporter" in found[resource]["evidence"] and found[resource]["read_on"] is None
    assert run["diagnosis"]["primary"] not in ("server_cpu", "disk_io", "network")


def test_the_serving_host_read_through_the_teams_prometheus(
    remote_host, remote_llama_server, remote_node_exporter, store_path, tmp_path
):
    """No exporter URL given: the serving host's node_exporter series come from a real Prometheus that
    scrapes it, by label selector, after the run, on the run's clock."""
    from prometheus_server import running_prometheus

    target = f"{remote_host.address}:9100"
    with running_prometheus(tmp_path, [target], job="node") as prometheus:
        remote_host.cpu_hog(cores=2)
        run = bench(remote_llama_server.base_url, store_path, "--prometheus", prometheus,
                    "--prometheus-selector", f'instance="{target}"', "--prometheus-window", "3s",
                    "--load", "poisson:4", "-d", "8s", "--input-tokens", "64", "--output-tokens", "16")  # fmt: skip
    found = findings(run)
    print({k: (v["verdict"], v["source"], v["evidence"]) for k, v in found.items()})
    assert f"read from {prometheus}" in run["_stderr"]
    cpu = found["server_cpu"]
    assert cpu["verdict"] == "bottleneck", cpu
    assert cpu["read_on"] == "server" and cpu["source"].startswith(f"node_exporter via Prometheus {prometheus}")
    assert cpu["numbers"]["host_cpu_percent_p50"] >= 90
    assert found["disk_io"]["read_on"] == "server"


def test_the_engines_step_time_tells_a_slot_limit_from_saturated_hardware(remote_llama_server, store_path):
    """No GPU reading, no node_exporter: only llama-server's /metrics. Requests queue for its 4 slots; whether
    more slots would help is how its decode step time follows the batch, read from runs at other loads (a
    sweep's earlier steps). The ground truth is the client's alone, over the same three runs the engine's curve
    is fitted on: its TPOT against the number of its requests in decode at once, both from its own timestamps
    (the 8-user run sits at the 4 slots with a busier host, and moves both curves alike). The step curve
    fitted from the engine's counters must match it, and the verdict must follow it."""
    from servewise.analysis.diagnosis import diagnose
    from servewise.analysis.diagnosis.signals import Signals
    from servewise.analysis.diagnosis.step import step_scaling
    from servewise.store import RunStore

    url, shape = remote_llama_server.base_url, ("--input-tokens", "16", "--output-tokens", "256", "-d", "6s")
    runs = {users: bench(url, store_path, "--load", f"concurrency:{users}", *shape) for users in (1, 4, 8)}
    with RunStore(store_path) as store:
        samples = {users: store.samples(run["run_id"], source="metrics") for users, run in runs.items()}
        queued = store.get_run(runs[8]["run_id"]).measured
        decoding = {users: decoding_at_once(list(store.iter_records(run["run_id"]))) for users, run in runs.items()}
    d = diagnose(queued, samples[8], server_engine="llamacpp", earlier=[samples[1], samples[4]])
    queue = d.finding("admission_queue")
    print(queue.evidence, d.primary, d.next_steps)
    elasticity = queue.numbers["step_elasticity"]
    # each run alone: the engine's batch (a count) and step time, against what the client timed per token
    alone = {users: step_scaling([Signals(samples[users])]) for users in (1, 4)}
    for users, scaling in alone.items():
        assert scaling is not None
        assert scaling.step_lo_ms == pytest.approx(runs[users]["metrics"]["tpot_ms"]["p50"], rel=0.2), users
    tpot = {users: run["metrics"]["tpot_ms"]["p50"] for users, run in runs.items()}
    client_elasticity = float(np.polyfit(np.log(list(decoding.values())), np.log(list(tpot.values())), 1)[0])
    print("elasticity: engine", elasticity, "client", client_elasticity, "batch", decoding, tpot)
    assert elasticity == pytest.approx(client_elasticity, abs=0.2), (elasticity, client_elasticity)
    if client_elasticity >= STEP_SATURATED + 0.1:
        assert d.primary == "gpu_compute" and "would not add throughput" in d.next_steps[0], queue
        assert queue.verdict == "contributing"
    elif client_elasticity <= STEP_HEADROOM - 0.1:
        assert d.primary == "admission_queue" and d.confidence != "low", queue
        assert "-np" in d.next_steps[0] and "--dcgm" not in d.next_steps[0]


def decoding_at_once(records: list) -> float:
    """The client's time-averaged count of its requests between first and last token: the batch it kept in
    decode, from its own timestamps (no engine counter), over the run's middle (the ramp up and the drain at
    the end trimmed)."""
    spans = [(r.t_first, r.t_end) for r in records if r.ok and r.t_first is not None and r.t_end is not None]
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    lo, hi = first + 0.1 * (last - first), last - 0.1 * (last - first)
    return sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in spans) / (hi - lo)


def test_an_engine_behind_a_gateway_is_read_through_the_teams_prometheus(
    remote_host, remote_llama_server, store_path, tmp_path
):
    """The client reaches the engine only through a gateway that does not route /metrics; the team's
    Prometheus scrapes the engine itself. The engine's findings then come from Prometheus' copy of its
    series, by selector, on the run's clock, and say so."""
    from prometheus_server import running_prometheus

    engine = f"{remote_host.address}:8080"
    with (
        running_prometheus(tmp_path, [engine], job="llama") as prometheus,
        running_gateway(remote_llama_server.base_url, tmp_path / "gateway.log") as url,
    ):
        run = bench(url, store_path, "--prometheus", prometheus, "--prometheus-selector", f'instance="{engine}"',
                    "--prometheus-window", "3s", "--load", "concurrency:8", "-d", "8s",
                    "--input-tokens", "16", "--output-tokens", "64")  # fmt: skip
    found = findings(run)
    print({k: (v["verdict"], v["source"], v["evidence"]) for k, v in found.items()})
    assert f"the engine's /metrics (llamacpp) read from Prometheus {prometheus}" in run["_stderr"]
    assert run["metrics"]["requests_failed"] == 0 and run["diagnosis"]["engine"] == "llamacpp"
    queue = found["admission_queue"]  # 8 users on 4 slots: they wait, as llama-server's own gauge says
    assert queue["read_on"] == "server" and queue["source"].startswith(f"the engine's /metrics via Prometheus {prometheus}")
    assert queue["numbers"]["waiting_fraction"] >= 0.5 and queue["numbers"]["running_max"] == 4, queue
