"""Release check of the load generator against today's RESULTS, with run.py's own helpers and setup.

Three parts, each against run.py's nginx (static 16-token SSE body, CPU 1), client tree on CPU 0, both
SCHED_FIFO 10 (``--sched``):

* ``single``: two servewise commands (``--old CMD``, ``--new CMD``) at the same Poisson rates, interleaved
  old, new, old, new ... (``--pairs`` pairs per rate; ``--order new,old`` swaps), each step run.py's
  ``Servewise.rate_step`` (10 s, the RESULTS criterion: achieved within 5%, no errors, schedule lag
  p99 <= 10 ms). Medians per rate.
* ``sessions``: the new command with ``--load sessions:...`` (``--no-telemetry -q --json -``): closed
  (``users=N``) runs report achieved req/s and schedule lag per turn (from the run's store: t_send - t_sched
  of steady records); open (``rate=R``, 4R req/s offered with 4 turns) runs go through run.py's
  ``rate_search`` in offered req/s, then the best and first-failed rates are repeated ``--repeat`` times.
* ``trace``: writes a plain JSONL trace (``--trace-requests`` at Poisson ``--trace-rate``), replays it with
  ``bench --trace FILE`` and samples the client's process tree every 0.5 s (RSS per process and summed; each
  process's VmHWM, its kernel-kept peak, read while it lives), under ``/usr/bin/time -v`` for the largest
  single process's peak.

Run: .venv/bin/python benchmarks/loadgen/release_check.py single|sessions|trace [options]
Results are merged into ``--out`` (default benchmarks/loadgen/results-release.json) under the part's name.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # the harness: sched_prefix, timed, Servewise, rate_search, start_servers, ...)

NEW = str(run.SERVEWISE)
_json = json.JSONDecoder()


def servewise(cmd: str, args: argparse.Namespace, workdir: Path) -> run.Servewise:
    """run.py's servewise client running ``cmd``, with its own store (old versions refuse newer stores)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ns = argparse.Namespace(**{**vars(args), "servewise": cmd})
    return run.Servewise(ns, workdir)


def single(args: argparse.Namespace, workdir: Path) -> dict:
    clients = {
        "old": servewise(args.old, args, workdir / "old"),
        "new": servewise(args.new, args, workdir / "new"),
    }
    rates = [float(x) for x in args.rates.split(",")]
    steps: dict[str, dict[str, list[dict]]] = {str(r): {"old": [], "new": []} for r in rates}
    for rate in rates:
        for pair in range(args.pairs):
            for name in args.order.split(","):
                step = clients[name].rate_step(rate, args.step_s)
                step["at"] = time.strftime("%H:%M:%S", time.gmtime())
                step["loadavg"] = os.getloadavg()[0]
                steps[str(rate)][name].append(step)
                print(f"  {name} {rate:.0f} pair {pair + 1}: {json.dumps(step)}", flush=True)
    summary = {}
    for rate, by in steps.items():
        row = {}
        for name, runs in by.items():
            good = [s for s in runs if "achieved" in s]
            row[name] = {
                "lag_p99_ms": run.median([s["lag_p99_ms"] for s in good]),
                "achieved": run.median([s["achieved"] for s in good]),
                "cpu_percent": run.median([s["cpu_percent"] for s in good]),
                "worker_cpu_percent": run.median([s["worker_cpu_percent"] for s in good]),
                "ok": f"{sum(s['ok'] for s in runs)}/{len(runs)}",
                "lag_p99_all": [round(s.get("lag_p99_ms", float("nan")), 2) for s in runs],
            }
        row["lag_ratio_new_old"] = _ratio(row["new"]["lag_p99_ms"], row["old"]["lag_p99_ms"])
        row["worker_cpu_ratio_new_old"] = _ratio(
            row["new"]["worker_cpu_percent"], row["old"]["worker_cpu_percent"]
        )
        summary[rate] = row
        print(f"  {rate}: {json.dumps(row)}", flush=True)
    return {"old": args.old, "new": args.new, "step_s": args.step_s, "steps": steps, "summary": summary}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def bench_json(cmd: list[str], timeout: float = 900) -> tuple[dict, float]:
    """Run a ``--json -`` bench (its terminal report follows the JSON on stdout); the JSON and tree CPU%."""
    proc, cpu = run.timed(cmd, timeout=timeout)
    text = proc.stdout or ""
    start = text.find("{")
    if start < 0:
        return {"error": run.last_lines(proc)}, cpu
    summary, _ = _json.raw_decode(text, start)
    return summary, cpu


def lag_by_turn(store: Path, run_id: str) -> dict[str, dict]:
    """Schedule lag (t_send - t_sched) of the run's steady records, per turn (p50/p99/max, ms)."""
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT turn, (t_send - t_sched) * 1000 FROM records WHERE run_id = ? AND phase = 'steady'",
            (run_id,),
        ).fetchall()
    by: dict[int, list[float]] = {}
    for turn, lag in rows:
        by.setdefault(turn if turn is not None else 0, []).append(lag)
    out = {}
    for turn, lags in sorted(by.items()):
        a = np.asarray(lags)
        out[str(turn)] = {"n": int(a.size), "p50": round(float(np.percentile(a, 50)), 2),
                          "p99": round(float(np.percentile(a, 99)), 2), "max": round(float(a.max()), 2)}  # fmt: skip
    later = np.asarray([x for t, lags in by.items() if t >= 2 for x in lags])
    if later.size:
        out["2+"] = {"n": int(later.size), "p50": round(float(np.percentile(later, 50)), 2),
                     "p99": round(float(np.percentile(later, 99)), 2), "max": round(float(later.max()), 2)}  # fmt: skip
    return out


def sessions_run(args: argparse.Namespace, workdir: Path, load: str) -> dict:
    store = workdir / "sessions.db"
    cmd = [*run.sched_prefix(args.sched, 0), *shlex.split(args.new), "bench", "--target", run.NGINX_URL,
           "--load", load, "--duration", f"{args.step_s}s", "--output-tokens", "16", "--input-tokens", "32",
           "--no-telemetry", "-q", "--json", "-", "--store", str(store)]  # fmt: skip
    s, cpu = bench_json(cmd)
    if "error" in s:
        return {"load": load, "ok": False, "error": s["error"], "cpu_percent": cpu}
    m, c = s["metrics"], s["client"]
    return {"load": load, "achieved": m["requests_per_s"], "errors": m["requests_failed"],
            "lag_p99_ms": c["schedule_lag_ms"]["p99"], "lag_p50_ms": c["schedule_lag_ms"]["p50"],
            "cpu_percent": cpu, "worker_cpu_percent": c["cpu_percent"], "limited": c.get("limited"),
            "ttft_p99_ms": m["ttft_ms"]["p99"], "lag_by_turn": lag_by_turn(store, s["run_id"]),
            "requests_by_turn": {str(r["turn"]): r["requests"] for r in m.get("by_turn") or []},
            "at": time.strftime("%H:%M:%S", time.gmtime()), "loadavg": os.getloadavg()[0]}  # fmt: skip


class OpenSessions:
    """rate_search's client protocol: ``rate`` is offered req/s; conversations arrive at rate / turns."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir, self.name = args, workdir, f"sessions open ({args.turns} turns)"

    def rate_step(self, rate: float, seconds: float) -> dict:
        r = rate / self.args.turns
        step = sessions_run(self.args, self.workdir, f"sessions:rate={r:g},turns={self.args.turns},think=0s")
        step["rate"] = rate
        step["ok"] = ("achieved" in step and step["achieved"] >= 0.95 * rate and step["errors"] == 0
                      and step["lag_p99_ms"] <= run.LAG_LIMIT_MS)  # fmt: skip
        return step


def sessions(args: argparse.Namespace, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict = {"cmd": args.new, "step_s": args.step_s, "closed": [], "open": {}}
    for users in [int(x) for x in args.users.split(",") if x]:
        for _ in range(args.repeat):
            step = sessions_run(args, workdir, f"sessions:users={users},turns={args.turns},think=0s")
            out["closed"].append(step)
            print(f"  closed users={users}: {json.dumps(step)}", flush=True)
    if args.open_rates:
        client = OpenSessions(args, workdir)
        search = run.rate_search(
            client, [float(x) for x in args.open_rates.split(",")], args.step_s, args.bisect
        )
        out["open"]["search"] = search
        for key in ("sustained", "first_failed"):
            rate = search.get(key)
            if rate:
                reps = [client.rate_step(rate, args.step_s) for _ in range(args.repeat)]
                for s in reps:
                    print(f"  open repeat {rate:.0f}: {json.dumps(s)}", flush=True)
                out["open"][f"repeat_{key}"] = {
                    "rate": rate, "ok": f"{sum(s['ok'] for s in reps)}/{len(reps)}",
                    "lag_p99_median": run.median([s.get("lag_p99_ms") for s in reps]),
                    "achieved_median": run.median([s.get("achieved") for s in reps]), "steps": reps,
                }  # fmt: skip
    return out


def write_trace(path: Path, n: int, rate: float, seed: int = 1) -> None:
    gaps = np.random.default_rng(seed).exponential(1 / rate, n)
    t = np.cumsum(gaps) - gaps[0]
    with path.open("w") as f:
        for i in range(0, n, 100_000):
            f.writelines(
                f'{{"timestamp": {x:.6f}, "input_tokens": 64, "output_tokens": 16}}\n'
                for x in t[i : i + 100_000]
            )


def _hwm_kib(pid: int) -> int | None:
    try:
        m = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
        return int(m.group(1)) if m else None
    except OSError:
        return None


def trace(args: argparse.Namespace, workdir: Path, store: str | None = None) -> dict:
    """``store``: where the run goes (a path or URL; default a SQLite file in ``workdir``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = Path(args.trace_file) if args.trace_file else workdir / "trace.jsonl"
    if not path.exists():
        write_trace(path, args.trace_requests, args.trace_rate)
    out_json = workdir / "trace-result.json"
    cmd = [*run.sched_prefix(args.sched, 0), "/usr/bin/time", "-v", *shlex.split(args.new), "bench",
           "--target", run.NGINX_URL, "--trace", str(path), *(["--time-scale", str(args.time_scale)] if args.time_scale else []),
           "--no-telemetry", "-q", "--json", str(out_json), "--store", store or str(workdir / "trace.db")]  # fmt: skip
    print("  " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    root = psutil.Process(proc.pid)
    samples: list[tuple[float, int]] = []
    peak: dict[int, dict] = {}
    while proc.poll() is None:
        total = 0
        for p in [root, *root.children(recursive=True)]:
            try:
                rss, name = p.memory_info().rss, " ".join(p.cmdline()[:4])[-90:]
            except psutil.Error:
                continue
            total += rss
            e = peak.setdefault(p.pid, {"cmd": name, "rss_max_mib": 0.0, "hwm_mib": None})
            e["rss_max_mib"] = max(e["rss_max_mib"], round(rss / 2**20, 1))
            if (hwm := _hwm_kib(p.pid)) is not None:
                e["hwm_mib"] = round(hwm / 1024, 1)
        samples.append((time.perf_counter() - t0, total))
        time.sleep(0.5)
    err = proc.stderr.read()
    wall = time.perf_counter() - t0
    result: dict = {"trace": str(path), "requests": args.trace_requests, "rate": args.trace_rate,
                    "time_scale": args.time_scale, "wall_s": round(wall, 1), "rc": proc.returncode}  # fmt: skip
    if m := re.search(r"Maximum resident set size \(kbytes\): (\d+)", err):
        result["time_v_max_rss_mib"] = round(int(m.group(1)) / 1024, 1)
    if out_json.exists():
        s = json.loads(out_json.read_text())
        m_, c = s["metrics"], s["client"]
        result.update(achieved=m_["requests_per_s"], ok=m_["requests_ok"], failed=m_["requests_failed"],
                      lag_p99_ms=c["schedule_lag_ms"]["p99"], lag_max_ms=c["schedule_lag_ms"]["max"],
                      worker_cpu_percent=c["cpu_percent"], limited=c.get("limited"), reason=c.get("reason"))  # fmt: skip
    else:
        result["error"] = err.strip().splitlines()[-3:]
    mib = [r / 2**20 for _, r in samples]
    result["tree_peak_rss_mib"] = round(max(mib), 1) if mib else None
    result["processes"] = [e for e in peak.values() if e["rss_max_mib"] > 5]
    result["samples_mib"] = [(round(t, 1), round(r / 2**20, 1)) for t, r in samples[::20]]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["single", "sessions", "trace"])
    parser.add_argument("--old", default=None, help="command running the old servewise (single)")
    parser.add_argument("--new", default=NEW, help=f"command running the new servewise (default {NEW})")
    parser.add_argument("--rates", default="3000,3250", help="single: Poisson req/s")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--order", default="old,new", help="single: order within a pair (new,old to swap)")
    parser.add_argument("--step-s", type=float, default=10)
    parser.add_argument("--users", default="64", help="sessions: closed-loop user counts")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--open-rates", default="2000,2500,3000,3500", help="sessions open: offered req/s")
    parser.add_argument("--bisect", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trace-requests", type=int, default=1_000_000)
    parser.add_argument("--trace-rate", type=float, default=3000)
    parser.add_argument("--trace-file", default=None)
    parser.add_argument("--time-scale", type=float, default=None)
    parser.add_argument("--sched", choices=["rt", "nice", "none"], default="rt")
    parser.add_argument("--out", default=str(run.HERE / "results-release.json"))
    args = parser.parse_args()
    if args.part == "single" and not args.old:
        sys.exit("single needs --old CMD")
    workdir = Path(tempfile.mkdtemp(prefix="servewise-release-"))
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    machine = run.machine()
    print(json.dumps(machine), flush=True)
    servers = run.start_servers(args, workdir)
    try:
        result = {"single": single, "sessions": sessions, "trace": trace}[args.part](
            args, workdir / args.part
        )
    finally:
        for s in servers:
            os.killpg(s.pid, signal.SIGTERM)
    machine["loadavg_end"] = os.getloadavg()
    result.update(machine=machine, started=started, ended=time.strftime("%H:%M:%S UTC", time.gmtime()),
                  argv=sys.argv[1:])  # fmt: skip
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data[args.part] = result
    out.write_text(json.dumps(data, indent=1))
    print(
        json.dumps(
            {k: v for k, v in result.items() if k in ("summary", "open", "tree_peak_rss_mib")}, indent=1
        )
    )


if __name__ == "__main__":
    main()
