"""What running the load workers on Ray costs, and how the sustained rate grows from one node to two.

    .venv/bin/python benchmarks/ray_overhead.py [--rates 1000,2000,4000,6000,8000,10000,12000,14000] [--seconds 8]

Starts a real two-node Ray cluster on this machine (tests/fixtures/ray_cluster.py: a head and a second node,
one CPU each), nginx answering every request with a static 16-token chat stream (benchmarks/loadgen) and the
exact-delay server (first token exactly 100 ms after the request). Then, with servewise's own ``bench``:

- **overhead per request**: the same Poisson loads (``--overhead-rates``, 500, 2,000, 4,000 req/s) sent by one
  local worker process and by one Ray actor; the load generator's CPU seconds (the driver, its workers, and
  every process of the two Ray nodes), per request as the slope of a line through the rates (start-up, Ray's
  connect and actor start cancel out and are reported as the fixed cost); the servers' CPU is not counted;
- **TTFT accuracy**: 20 req/s against the exact server, local and on Ray: TTFT excess over 100 ms, p50 and p99;
- **sustained rate**: the highest Poisson rate reached within 5%, with no errors and schedule lag p99 within
  10 ms on every node, for one worker (one node) and two workers (two nodes), local and on Ray.

The script, and with it the Ray nodes, servers and benches it starts, runs SCHED_FIFO 10 (``--sched none``
to leave it) so that other work on a shared machine does not preempt what is measured, as
benchmarks/loadgen/run.py does. Prints a Markdown table for benchmarks/RESULTS.md and writes the JSON beside it (``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
LOADGEN = ROOT / "benchmarks" / "loadgen"
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.ray_cluster import RayCluster, ray_cluster  # noqa: E402

SERVEWISE = [sys.executable, "-c", "from servewise.cli.app import main; main()"]
NGINX_PORT, EXACT_PORT = 18080, 18723
NGINX_URL, EXACT_URL = f"http://127.0.0.1:{NGINX_PORT}", f"http://127.0.0.1:{EXACT_PORT}"
TTFT_MS = 100.0
LAG_LIMIT_MS = 10.0


def wait_http(url: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=1).read()
            return
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


@contextlib.contextmanager
def servers(workdir: Path) -> Iterator[None]:
    nginx = subprocess.Popen([str(LOADGEN / "serve_nginx.sh"), str(NGINX_PORT), str(workdir / "nginx")],
                             start_new_session=True)  # fmt: skip
    exact = subprocess.Popen([sys.executable, str(LOADGEN / "exact_server.py"), "--port", str(EXACT_PORT),
                              "--ttft-ms", str(TTFT_MS), "--itl-ms", "10"], start_new_session=True)  # fmt: skip
    try:
        wait_http(f"{NGINX_URL}/v1/models")
        wait_http(f"{EXACT_URL}/v1/models")
        yield
    finally:
        for proc in (nginx, exact):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            proc.wait(timeout=10)


class ClientCpu:
    """CPU seconds of the load generator alone while one bench runs: the driver and its local workers (its
    reaped children) plus every process of the Ray nodes (raylets, GCS, the actors), polled while they live,
    since an actor's process is killed at the run's end. The servers' CPU is not in it."""

    def __init__(self, cluster: RayCluster) -> None:
        self.nodes = (cluster.head, cluster.second)
        self.first: dict[tuple[int, float], float] = {}
        self.last: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._poll(initial=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._thread.start()

    def _poll(self, initial: bool = False) -> None:
        for node in self.nodes:
            for proc in node.processes():
                with contextlib.suppress(psutil.Error):
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    used = times.user + times.system
                    self.first.setdefault(key, used if initial else 0.0)
                    self.last[key] = used

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._poll()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        driver = (children.ru_utime - self._children.ru_utime) + (children.ru_stime - self._children.ru_stime)
        return driver + sum(self.last[key] - self.first[key] for key in self.last)


def bench(url: str, store: Path, load: str, seconds: float, ray: str | None, workers: int,
          cluster: RayCluster) -> tuple[dict, float]:  # fmt: skip
    """One ``servewise bench``: its summary, and the load generator's CPU seconds."""
    out = Path(tempfile.mktemp(suffix=".json"))
    cmd = [*SERVEWISE, "bench", "--target", url, "--load", load, "--duration", f"{seconds}s",
           "--input-tokens", "32", "--output-tokens", "16", "--workers", str(workers), "--quiet",
           "--no-telemetry", "--json", str(out), "--store", str(store), *(["--ray", ray] if ray else [])]  # fmt: skip
    cpu = ClientCpu(cluster)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    cpu_s = cpu.stop()
    if not out.exists():
        raise SystemExit(f"bench failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(out.read_text())
    out.unlink()
    return summary, cpu_s


def overhead(store: Path, cluster: RayCluster, rates: list[float], seconds: float) -> dict:
    """Client CPU per request as the slope of a line through runs at several rates (so the command's start-up,
    and Ray's connect and actor start, cancel out), and that fixed cost as the intercept. The idle Ray nodes'
    own CPU is in every run of the Ray side alike, so it lands in the fixed cost too."""
    rows: dict = {}
    for name, ray in (("local", None), ("ray", cluster.address)):
        requests, cpu = [], []
        for rate in rates:
            summary, cpu_s = bench(NGINX_URL, store, f"poisson:{rate}", seconds, ray, 1, cluster)
            requests.append(summary["metrics"]["requests_ok"])
            cpu.append(cpu_s)
        slope, fixed = np.polyfit(requests, cpu, 1)
        rows[name] = {"requests": requests, "client_cpu_s": [round(c, 2) for c in cpu],
                      "cpu_us_per_request": round(1e6 * slope, 1), "fixed_cpu_s": round(fixed, 2)}  # fmt: skip
        print(f"  overhead {name}: {json.dumps(rows[name])}", flush=True)
    rows["ray_extra_us_per_request"] = round(rows["ray"]["cpu_us_per_request"] - rows["local"]["cpu_us_per_request"], 1)
    return rows


def accuracy(store: Path, cluster: RayCluster, seconds: float) -> dict:
    rows = {}
    for name, ray in (("local", None), ("ray", cluster.address)):
        summary, _ = bench(EXACT_URL, store, "poisson:20", seconds, ray, 1, cluster)
        ttft = summary["metrics"]["ttft_ms"]
        rows[name] = {"excess_p50_ms": round(ttft["p50"] - TTFT_MS, 2), "excess_p99_ms": round(ttft["p99"] - TTFT_MS, 2)}
        print(f"  TTFT {name}: {json.dumps(rows[name])}", flush=True)
    return rows


def step(store: Path, cluster: RayCluster, rate: float, seconds: float, ray: str | None, workers: int) -> dict:
    summary, _ = bench(NGINX_URL, store, f"poisson:{rate}", seconds, ray, workers, cluster)
    m, c = summary["metrics"], summary["client"]
    lags = [n["client"]["schedule_lag_ms"]["p99"] or 0.0 for n in summary.get("nodes", [])] or [
        c["schedule_lag_ms"]["p99"] or 0.0
    ]
    ok = m["requests_per_s"] >= 0.95 * rate and m["requests_failed"] == 0 and max(lags) <= LAG_LIMIT_MS
    return {"rate": rate, "ok": ok, "achieved": m["requests_per_s"], "errors": m["requests_failed"],
            "lag_p99_ms": round(max(lags), 2), "worker_cpu_percent": c["cpu_percent"]}  # fmt: skip


def sustained(store: Path, cluster: RayCluster, rates: list[float], seconds: float, ray: str | None,
              workers: int) -> dict:  # fmt: skip
    best, steps = None, []
    for rate in rates:
        row = step(store, cluster, rate, seconds, ray, workers)
        steps.append(row)
        print(f"  {'ray' if ray else 'local'} x{workers} {rate:>6.0f} req/s: {json.dumps(row)}", flush=True)
        if not row["ok"]:
            break
        best = rate
    return {"sustained": best, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,2000,4000,6000,8000,10000,12000,14000")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--overhead-rates", default="500,2000,4000", help="rates whose CPU line gives the slope")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results-ray.json")
    parser.add_argument("--sched", choices=("rt", "none"), default="rt")
    args = parser.parse_args()
    if args.sched == "rt":  # inherited by every process started from here
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    rates = [float(r) for r in args.rates.split(",")]
    import ray

    results: dict = {"machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                                 "ray": ray.__version__, "python": platform.python_version()},
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, servers(Path(tmp)), ray_cluster() as cluster:
        store = Path(tmp) / "runs.db"
        results["overhead"] = overhead(store, cluster, [float(r) for r in args.overhead_rates.split(",")], args.seconds)
        results["ttft"] = accuracy(store, cluster, args.seconds)
        results["sustained"] = {
            f"{where} x{n}": sustained(store, cluster, rates, args.seconds, cluster.address if where == "ray" else None, n)
            for where in ("local", "ray")
            for n in (1, 2)
        }
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    o, t, s = results["overhead"], results["ttft"], results["sustained"]
    print("\n| workers | client CPU per request | fixed CPU per run | TTFT excess p50 / p99 | sustained, 1 worker"
          " | 2 workers |")
    print("|---|---|---|---|---|---|")
    for where in ("local", "ray"):
        print(f"| {where} | {o[where]['cpu_us_per_request']} µs | {o[where]['fixed_cpu_s']} s | "
              f"+{t[where]['excess_p50_ms']} / "
              f"+{t[where]['excess_p99_ms']} ms | {s[f'{where} x1']['sustained']} req/s | "
              f"{s[f'{where} x2']['sustained']} req/s |")  # fmt: skip
    print(f"\nRay adds {o['ray_extra_us_per_request']} µs of client CPU per request; JSON in {args.json}")


if __name__ == "__main__":
    main()
