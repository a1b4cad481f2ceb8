"""The diagnosis of a server on another host: llama-server and node_exporter in a network namespace with
its own address, servewise outside it. The verdicts about the server come from the serving host's
exporter, never from the client's machine, and a healthy server under steady load is not network-bound."""

from __future__ import annotations

import pytest

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
