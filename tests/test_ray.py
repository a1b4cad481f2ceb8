"""`bench --ray` on a real two-node Ray cluster on this machine (tests/fixtures/ray_cluster.py): timing as
accurate as local workers, every load kind, a worker lost mid-run, Ctrl-C, and the one-line refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fixtures.ray_cluster import RayCluster, ray_cluster
from servewise.store import RunStore

from cli_runner import servewise, wait_for_records
from servers.process import assert_default_timing, free_port, timing_server


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray", reason="Ray is the optional extra servewise[ray] (pip install 'servewise[ray]')")
    with ray_cluster() as running:
        yield running


def bench(url, store, *extra, timeout=180):
    return servewise("bench", "--target", url, "--quiet", "--json", "-", *extra, store=store, timeout=timeout)


def popen_bench(url, store, *extra):
    cmd = [sys.executable, "-m", "servewise", "bench", "--target", url, "-q", "--json", "-", *extra]
    env = os.environ | {"SERVEWISE_STORE": str(store)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_a_run_across_both_nodes_is_as_accurate_as_local_workers(cluster: RayCluster, timing_url, store_path):
    result = bench(timing_url, store_path, "--ray", cluster.address, "--workers", "2", "--load", "poisson:10",
                   "--duration", "6", "--output-tokens", "20")  # fmt: skip
    assert result.code == 0, result.stderr
    summary = result.json()
    m = summary["metrics"]
    assert m["requests_failed"] == 0 and m["requests_ok"] >= 30
    assert_default_timing(m)  # the same bounds as a local run
    assert summary["client"]["limited"] is False and summary["client"]["schedule_lag_ms"]["p50"] < 5
    nodes = summary["nodes"]
    assert len({n["node"] for n in nodes}) == 2 and sorted(w for n in nodes for w in n["workers"]) == [0, 1]
    for node in nodes:  # one machine: one clock, so the estimate must be near zero and its round trip short
        assert abs(node["clock_offset_ms"]) < 5 and 0 < node["clock_rtt_ms"] < 50, node
        assert node["client"]["schedule_lag_ms"]["p50"] < 5 and not node["lost"]
    assert summary["workers"]["count"] == 2 and "partial" not in summary
    with RunStore(store_path) as store:
        records = list(store.iter_records(summary["run_id"]))
        spec = store.get_run(summary["run_id"]).spec
    assert {r.worker for r in records} == {0, 1} and spec["workers"] == 2
    # records from the other node are on the driver's run clock: sends are in schedule order across workers
    assert max(r.t_send - r.t_sched for r in records) < 0.05


@pytest.mark.parametrize(
    "args",
    [
        ("--load", "concurrency:4", "--requests", "24"),
        ("--load", "sessions:users=2,turns=3,think=0.1s", "--duration", "3"),
    ],
    ids=["concurrency", "sessions"],
)
def test_closed_loop_and_sessions_on_ray(cluster: RayCluster, timing_url, store_path, args):
    result = bench(timing_url, store_path, "--ray", cluster.address, "--workers", "2", "--output-tokens", "5", *args)
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["metrics"]["requests_failed"] == 0 and summary["metrics"]["requests_ok"] >= 8
    assert 100 <= summary["metrics"]["ttft_ms"]["p50"] < 110
    with RunStore(store_path) as store:
        records = list(store.iter_records(summary["run_id"]))
    assert {r.worker for r in records} == {0, 1}
    if "sessions" in args[1]:
        assert summary["metrics"]["by_turn"][-1]["turn"] == 3  # each turn carried the answers streamed back


def test_trace_replay_and_sweep_on_ray(cluster: RayCluster, tmp_path, store_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": i * 100, "input_length": 20, "output_length": 4}) + "\n"
                             for i in range(30)))  # fmt: skip
    with timing_server(ttft_ms=50, itl_ms=5, capacity=4) as server:
        replay = bench(server.url, store_path, "--ray", cluster.address, "--workers", "2", "--trace", str(trace))
        assert replay.code == 0, replay.stderr
        assert replay.json()["metrics"]["requests_ok"] == 30
        sweep = bench(server.url, store_path, "--ray", cluster.address, "--workers", "2", "--load", "sweep",
                      "--sweep-step", "2s", "--sweep-start", "20", "--output-tokens", "4",
                      "--slo", "ttft_p95=200ms")  # fmt: skip
    assert sweep.code in (0, 1), sweep.stderr
    steps = sweep.json()["sweep"]  # (a busy 2-core machine may call a late step client-limited: it says so)
    assert len(steps) >= 2 and steps[0]["slo_met"] and not steps[0]["client_limited"]
    with RunStore(store_path) as store:
        step = store.get_run(steps[0]["run_id"])
        assert {r.worker for r in store.iter_records(step.id)} == {0, 1}


def test_a_worker_killed_mid_run_is_a_partial_run_with_its_loss_accounted(cluster: RayCluster, timing_url, store_path):
    proc = popen_bench(timing_url, store_path, "--ray", cluster.address, "--workers", "2", "--load", "constant:20",
                       "--duration", "8", "--output-tokens", "30")  # fmt: skip
    try:
        wait_for_records(store_path, 20, timeout_s=90.0)
        victims = cluster.second.actors("LoadActor")
        assert len(victims) == 1
        victims[0].kill()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 4, err
    assert "PARTIAL" in err
    summary = json.loads(out)
    assert summary["status"] == "partial"
    [lost] = summary["partial"]["workers"]
    assert "ActorDied" in lost["reason"] or "Actor" in lost["reason"]
    # a request every 100 ms on the lost worker, each 390 ms long: a few in flight when it died
    assert 1 <= lost["lost_requests"] <= 12 and lost["unsent"] > 10
    assert summary["metrics"]["errors_by_class"].get("lost") == summary["partial"]["lost_requests"]
    [gone] = [n for n in summary["nodes"] if n["lost"]]
    assert gone["workers"] == [lost["worker"]]
    with RunStore(store_path) as store:
        records = list(store.iter_records(summary["run_id"]))
    mine = [r for r in records if r.worker == lost["worker"]]
    assert any(r.ok for r in mine)  # what it sent back before it died is kept
    # every request of the lost worker due before the loss has a record: an answer or a loss, never both
    indices = [r.index for r in mine]
    assert len(indices) == len(set(indices))
    assert sorted(indices) == list(range(lost["worker"], lost["worker"] + 2 * len(indices), 2))
    # the other node carried on to the end: ~80 of 160 requests
    others = [r for r in records if r.worker != lost["worker"]]
    assert len(others) >= 70 and all(r.ok for r in others)


def test_ctrl_c_stops_every_actor(cluster: RayCluster, timing_url, store_path):
    proc = popen_bench(timing_url, store_path, "--ray", cluster.address, "--workers", "2", "--load", "constant:20",
                       "--duration", "60", "--output-tokens", "50")  # fmt: skip
    try:
        wait_for_records(store_path, 20, timeout_s=90.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert summary["status"] == "interrupted" and summary["metrics"]["requests_ok"] >= 20
    assert summary["metrics"]["errors_by_class"].get("cancelled", 0) >= 1  # in flight at Ctrl-C
    deadline = time.monotonic() + 20
    while (cluster.head.actors("LoadActor") or cluster.second.actors("LoadActor")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not cluster.head.actors("LoadActor") and not cluster.second.actors("LoadActor")


def test_unreachable_or_malformed_ray_address_is_one_line(timing_url, store_path):
    unreachable = servewise("bench", "--target", timing_url, "--ray", f"127.0.0.1:{free_port()}", store=store_path)
    assert unreachable.code == 3 and "no Ray cluster at 127.0.0.1" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr and len(unreachable.stderr.strip().splitlines()) == 1
    malformed = servewise("bench", "--target", timing_url, "--ray", "head-node", store=store_path)
    assert malformed.code == 2 and "HOST:PORT" in malformed.stderr and "Traceback" not in malformed.stderr
    client = servewise("bench", "--target", timing_url, "--ray", "ray://head:10001", store=store_path)
    assert client.code == 2 and "Ray Client" in client.stderr and "--ray auto" in client.stderr


def test_without_ray_installed_the_flag_says_how_to_install_it(timing_url, store_path):
    hide_ray = "import sys; sys.modules['ray'] = None; from servewise.cli.app import main; sys.argv[0] = 'servewise'; main()"
    proc = subprocess.run(
        [sys.executable, "-c", hide_ray, "bench", "--target", timing_url, "--ray", "auto"],
        capture_output=True, text=True, timeout=60, env=os.environ | {"SERVEWISE_STORE": str(store_path)},
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --ray needs Ray: pip install 'servewise[ray]'"
    ], proc.stderr
