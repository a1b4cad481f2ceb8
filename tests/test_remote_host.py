"""The "remote" serving host fixtures (tests/remote_host.py): a network namespace over a veth pair with a
real llama-server and a real node_exporter inside, reached from this side as another machine would be.

Needs root, `ip netns` (iproute2) and, for the exporter, Debian's prometheus-node-exporter (`make
system-deps`); each missing piece skips with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

from remote_host import RemoteHost, RemoteHostUnavailable, start_node_exporter

SINK = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(64)
while True:
    conn, _ = srv.accept()
    want = int.from_bytes(conn.recv(8, socket.MSG_WAITALL), "big")
    got = 0
    while got < want:
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        got += len(chunk)
    conn.sendall(got.to_bytes(8, "big")); conn.close()
"""
SINK_PORT = 7000


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def value(metrics, name: str, **labels: str) -> float:
    hits = [v for lab, v in metrics.get(name, []) if all(lab.get(k) == want for k, want in labels.items())]
    assert len(hits) == 1, f"{name}{labels}: {metrics.get(name)}"
    return hits[0]


def start_sink(host: RemoteHost):
    proc = host.run([sys.executable, "-c", SINK, host.address, str(SINK_PORT)], log_name="sink")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host.address, SINK_PORT), timeout=1).close()
            return proc
        except OSError:
            assert proc.running(), proc.log_tail()
            time.sleep(0.1)
    raise AssertionError("sink not listening")


def send(host: RemoteHost, nbytes: int) -> float:
    """Seconds to deliver ``nbytes`` to the sink inside the namespace (until it says it has them all)."""
    t0 = time.perf_counter()
    with socket.create_connection((host.address, SINK_PORT), timeout=60) as conn:
        conn.sendall(nbytes.to_bytes(8, "big") + b"x" * nbytes)
        got = int.from_bytes(conn.recv(8, socket.MSG_WAITALL), "big")
    assert got == nbytes
    return time.perf_counter() - t0


def connect_rtt_ms(address: str, port: int, n: int = 15) -> float:
    """Median TCP connect time from this side (SYN -> SYN-ACK: one round trip)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        socket.create_connection((address, port), timeout=5).close()
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.01)
    return statistics.median(times)


def shape(host: RemoteHost, **kwargs) -> None:
    try:
        host.shape(**kwargs)
    except RemoteHostUnavailable as exc:  # no netem and no iptables here
        pytest.skip(str(exc))


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()]


def links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")  # a zombie
    except FileNotFoundError:
        return True


# -- the engine ---------------------------------------------------------------------------------------------
@pytest.mark.engines
def test_llama_server_answers_at_the_namespace_address(remote_llama_server, remote_node_exporter):
    srv, host = remote_llama_server, remote_llama_server.remote
    assert srv.base_url == f"http://{host.address}:8080"
    assert host.pid_in_namespace(srv.pid), "llama-server runs inside the namespace"
    assert Path(f"/proc/{srv.pid}/exe").resolve().name == "llama-server", "pid is llama-server's own"

    with urllib.request.urlopen(srv.api_base + "/models", timeout=30) as r:
        models = json.loads(r.read())
    assert srv.model in [m["id"] for m in models["data"]]

    # the request goes over the veth: the exporter inside counts it on the serving host's eth0. A scrape
    # itself moves bytes too, so take the bytes of a scrape-only interval off those of the chat interval.
    def eth0(metrics) -> tuple[float, float]:
        return (value(metrics, "node_network_receive_bytes_total", device="eth0"),
                value(metrics, "node_network_transmit_bytes_total", device="eth0"))  # fmt: skip

    first = eth0(scrape(remote_node_exporter))
    second = eth0(scrape(remote_node_exporter))
    body = {
        "model": srv.model,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "the river and the king " * 60}],
    }
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        srv.api_base + "/chat/completions", data, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        raw = r.read()
    third = eth0(scrape(remote_node_exporter))
    reply = json.loads(raw)
    assert reply["usage"]["completion_tokens"] == 8
    assert reply["choices"][0]["message"]["content"].strip()
    rx = (third[0] - second[0]) - (second[0] - first[0])
    tx = (third[1] - second[1]) - (second[1] - first[1])
    print(f"eth0 counted {rx:.0f} B in for a {len(data)} B request, {tx:.0f} B out for a {len(raw)} B reply")
    assert len(data) <= rx < len(data) + 3000, (rx, len(data))
    assert len(raw) * 0.5 <= tx < len(raw) + 3000, (tx, len(raw))


# -- node_exporter ------------------------------------------------------------------------------------------
def test_node_exporter_reports_the_serving_hosts_cpu_memory_network(remote_host, remote_node_exporter):
    m = scrape(remote_node_exporter)
    build = m["node_exporter_build_info"][0][0]
    print(f"node_exporter {build['version']} ({build['revision']})")

    cpu = m["node_cpu_seconds_total"]
    cpus = {lab["cpu"] for lab, _ in cpu}
    modes = {lab["mode"] for lab, _ in cpu}
    assert len(cpus) == os.cpu_count(), "the machine's CPUs (a namespace does not virtualise /proc/stat)"
    assert {"idle", "user", "system", "iowait", "nice", "irq", "softirq", "steal"} <= modes, modes
    assert all(set(lab) == {"cpu", "mode"} for lab, _ in cpu)

    # network: the namespace's own devices only (its veth end), not this side's
    devices = {lab["device"] for lab, _ in m["node_network_receive_bytes_total"]}
    assert devices == {"eth0"}, devices
    assert remote_host.host_if not in devices
    assert all(set(lab) == {"device"} for lab, _ in m["node_network_transmit_bytes_total"])

    meminfo = dict(re.findall(r"^(\w+):\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M))
    assert value(m, "node_memory_MemTotal_bytes") == int(meminfo["MemTotal"]) * 1024
    assert 0 < value(m, "node_memory_MemAvailable_bytes") <= value(m, "node_memory_MemTotal_bytes")
    assert m["node_load1"] and m["node_pressure_cpu_waiting_seconds_total"]


def test_node_exporter_reports_the_disks(remote_node_exporter):
    exclude = re.compile(r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$")  # node_exporter 1.5 default
    disks = {line.split()[2] for line in Path("/proc/diskstats").read_text().splitlines()}
    disks = {d for d in disks if not exclude.match(d)}
    if not disks:
        pytest.skip("no disk visible in /proc/diskstats on this machine: no node_disk_* series to check")
    m = scrape(remote_node_exporter)
    seen = {lab["device"] for lab, _ in m.get("node_disk_io_time_seconds_total", [])}
    assert seen == disks, (seen, disks)
    assert all(set(lab) == {"device"} for lab, _ in m["node_disk_io_time_seconds_total"])
    assert {"node_disk_read_bytes_total", "node_disk_written_bytes_total", "node_disk_io_now"} <= set(m)


def test_cpu_hog_shows_in_the_exporters_cpu(remote_host, remote_node_exporter):
    """What the hog burns is counted in node_cpu_seconds_total (the machine's CPU = the server host's)."""
    tick = os.sysconf("SC_CLK_TCK")

    def busy_s(metrics) -> float:
        return sum(v for lab, v in metrics["node_cpu_seconds_total"] if lab["mode"] not in ("idle", "iowait"))

    def proc_cpu_s(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    before = scrape(remote_node_exporter)
    (hog,) = remote_host.cpu_hog(cores=1)
    assert remote_host.pid_in_namespace(hog.pid)
    time.sleep(3)
    hog_s = proc_cpu_s(hog.pid)
    after = scrape(remote_node_exporter)
    hog.stop()
    assert pid_gone(hog.pid)
    assert hog_s >= 0.5, f"the hog got {hog_s:.2f} CPU-s in 3 s"
    assert busy_s(after) - busy_s(before) >= 0.9 * hog_s, (busy_s(after) - busy_s(before), hog_s)


# -- shaping ------------------------------------------------------------------------------------------------
def test_delay_adds_to_the_connect_rtt(remote_host):
    start_sink(remote_host)
    base = connect_rtt_ms(remote_host.address, SINK_PORT)
    shape(remote_host, delay="50ms")
    shaped = connect_rtt_ms(remote_host.address, SINK_PORT)
    backend = remote_host.delay_backend
    remote_host.unshape()
    after = connect_rtt_ms(remote_host.address, SINK_PORT)
    print(f"connect RTT: {base:.2f} ms, with delay=50ms ({backend}) {shaped:.2f} ms, unshaped {after:.2f} ms")
    assert shaped - base >= 40, (base, shaped)
    assert shaped - base < 150, (base, shaped)
    assert after < base + 10, (base, after)


def test_rate_limits_what_reaches_the_server(remote_host, remote_node_exporter):
    start_sink(remote_host)
    nbytes = 1_000_000
    free = send(remote_host, nbytes)
    remote_host.shape(rate="4mbit")
    assert "tbf" in remote_host.qdiscs()["host"]
    before = scrape(remote_node_exporter)
    shaped = send(remote_host, nbytes)
    after = scrape(remote_node_exporter)
    remote_host.unshape()
    print(f"1 MB to the server: {free:.3f} s unshaped, {shaped:.3f} s at 4mbit")
    assert shaped >= 1.6, shaped  # 8 Mbit / 4 Mbit/s = 2 s, less the tbf burst
    assert free < shaped / 3, (free, shaped)
    rx = value(after, "node_network_receive_bytes_total", device="eth0") - value(
        before, "node_network_receive_bytes_total", device="eth0"
    )
    assert rx >= nbytes, rx


# -- lifecycle ----------------------------------------------------------------------------------------------
def test_close_removes_namespace_veth_and_processes():
    try:
        host = RemoteHost().start()
    except RemoteHostUnavailable as exc:
        pytest.skip(str(exc))
    with pytest.raises(RuntimeError, match="the test failed"), host:
        sleeper = host.run(["sleep", "300"])
        deadline = time.monotonic() + 10
        sleep_bin = Path(shutil.which("sleep")).resolve()
        while not (
            host.pid_in_namespace(sleeper.pid) and Path(f"/proc/{sleeper.pid}/exe").resolve() == sleep_bin
        ):
            assert time.monotonic() < deadline, "`ip netns exec` did not exec sleep in place"
            time.sleep(0.05)
        hogs = host.cpu_hog(cores=1)
        shape(host, rate="10mbit", delay="5ms", side="both")
        pids = [sleeper.pid, *(h.pid for h in hogs)]
        if host.delay_backend == "nfqueue":
            pids.append(host._delayer.pid)
        assert set(pids) <= set(host.namespace_pids())
        name, host_if, address = host.name, host.host_if, host.address
        assert name in namespaces() and host_if in links()
        raise RuntimeError("the test failed")
    assert name not in namespaces()
    assert host_if not in links()
    assert address not in subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    assert all(pid_gone(pid) for pid in pids), pids
    host.close()  # twice is fine


def test_node_exporter_missing_skips_cleanly(remote_host, monkeypatch):
    import remote_host as module

    monkeypatch.setattr(module, "NODE_EXPORTER", "/nonexistent/node_exporter")
    with pytest.raises(RemoteHostUnavailable, match="make system-deps"):
        start_node_exporter(remote_host)


def test_not_root_is_unavailable_not_an_error(monkeypatch):
    import remote_host as module

    monkeypatch.setattr(module.os, "geteuid", lambda: 1000)
    with pytest.raises(RemoteHostUnavailable, match="needs root"):
        RemoteHost().start()


CRASHER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from remote_host import RemoteHost
host = RemoteHost().start()
sleeper = host.run(["sleep", "300"])
print(host.name, host.host_if, sleeper.pid, flush=True)
os.kill(os.getpid(), 9)  # no cleanup at all
"""


def test_a_crashed_sessions_namespace_is_swept_by_the_next(remote_host):
    from remote_host import sweep_stale

    out = subprocess.run(
        [sys.executable, "-c", CRASHER, str(Path(__file__).resolve().parent)], capture_output=True, text=True
    )
    name, host_if, pid = out.stdout.split()
    assert name in namespaces() and not pid_gone(int(pid)), out.stderr
    assert name in sweep_stale()
    assert name not in namespaces() and pid_gone(int(pid))
    deadline = time.monotonic() + 10
    while host_if in links():  # the veth goes with its namespace (the kernel frees it asynchronously)
        assert time.monotonic() < deadline, f"{host_if} still there"
        time.sleep(0.1)
    assert remote_host.name in namespaces(), "a live session's namespace is left alone"
