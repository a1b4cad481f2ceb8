"""Name the bottleneck of a run from its summary and telemetry (Brendan Gregg's USE method).

For every resource: utilisation, saturation and errors, the numbers behind them, and a verdict
(bottleneck / contributing / ruled out / no data). Then one primary bottleneck with a confidence and the
next steps for that class. Pure functions over plain data: ``servewise diagnose RUN`` recomputes the same
answer from the store.

Two rules hold throughout. GPU utilisation alone never decides a verdict: NVML's figure is the share of
time *any* kernel ran, 100% for one tiny kernel; SM/DRAM activity (GPM, DCGM) or power draw must agree. And
the load generator is judged first: when the client itself fell behind, every other number of the run is
a measurement of the client, so it is the primary whatever else is busy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from servewise.records import Sample
from servewise.telemetry.exposition import RawSeries, detect_engine
from servewise.telemetry.gpu import CLOCK_EVENTS_LIMITING


class Verdict(StrEnum):
    BOTTLENECK = "bottleneck"
    CONTRIBUTING = "contributing"
    RULED_OUT = "ruled out"
    NO_DATA = "no data"


class Resource(StrEnum):
    LOAD_GENERATOR = "load_generator"
    NETWORK = "network"
    SERVER_CPU = "server_cpu"
    GPU_COMPUTE = "gpu_compute"
    GPU_MEMORY_BANDWIDTH = "gpu_memory_bandwidth"
    KV_CAPACITY = "vram_kv"
    ADMISSION_QUEUE = "admission_queue"
    DISK_IO = "disk_io"
    ERRORS = "errors"


RESOURCE_LABELS: dict[str, str] = {
    Resource.LOAD_GENERATOR: "load generator",
    Resource.NETWORK: "network",
    Resource.SERVER_CPU: "server CPU",
    Resource.GPU_COMPUTE: "GPU compute",
    Resource.GPU_MEMORY_BANDWIDTH: "GPU memory bandwidth",
    Resource.KV_CAPACITY: "VRAM / KV capacity",
    Resource.ADMISSION_QUEUE: "admission queue",
    Resource.DISK_IO: "disk I/O",
    Resource.ERRORS: "errors",
    "none": "none",
}

NO_BOTTLENECK = "none"

# Thresholds, in one place so the evidence strings and the tests read the same numbers.
CLIENT_LAG_MS = 50.0  # schedule lag p99 beyond which the client did not send on time
CLIENT_LAG_SHARE = 0.05  # ... and at least this share of the median end-to-end latency
CLIENT_CPU_BUSY = 85.0  # % of one core for a single-threaded asyncio worker
CPU_SATURATED = 0.85  # share of the cores the server may use
CPU_BUSY = 0.60
HOST_CPU_SATURATED = 90.0
GPU_ACTIVE_SATURATED = 0.80
GPU_ACTIVE_BUSY = 0.50
DRAM_ACTIVE_SATURATED = 0.70
DRAM_ACTIVE_BUSY = 0.40
POWER_SATURATED = 0.80
KV_FULL = 0.90
KV_HIGH = 0.80
WAITING_OFTEN = 0.20
QUEUE_SHARE = 0.30
DISK_BUSY = 80.0
ERROR_RATE_BOTTLENECK = 0.05
ERROR_RATE_CONTRIBUTING = 0.005
NET_LINK_SATURATED = 0.80
NET_PLATEAU_CV = 0.25  # a tbf-shaped link sampled at 1 Hz on a busy host reads 0.1-0.2
NET_PLATEAU_MIN_BYTES = 64_000.0


@dataclass
class Finding:
    """One resource's USE reading. ``score`` (0..1) ranks bottlenecks against each other."""

    resource: str
    verdict: Verdict
    evidence: str
    utilisation: str | None = None
    saturation: str | None = None
    errors: str | None = None
    numbers: dict[str, float] = field(default_factory=dict)
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "verdict": str(self.verdict),
            "evidence": self.evidence,
            "utilisation": self.utilisation,
            "saturation": self.saturation,
            "errors": self.errors,
            "numbers": {k: round(v, 4) for k, v in self.numbers.items() if math.isfinite(v)},
        }


@dataclass
class Diagnosis:
    primary: str
    confidence: str  # high | medium | low
    findings: list[Finding]
    next_steps: list[str]
    engine: str | None = None

    def finding(self, resource: str) -> Finding:
        return next(f for f in self.findings if f.resource == resource)

    def to_dict(self) -> dict[str, Any]:
        return {
            "primary": self.primary,
            "confidence": self.confidence,
            "engine": self.engine,
            "findings": [f.to_dict() for f in self.findings],
            "next_steps": list(self.next_steps),
        }


# -- reading samples ------------------------------------------------------------------------------


@dataclass
class Series:
    """One signal over time, label sets merged per tick (sum or max)."""

    times: list[float]
    values: list[float]

    def __bool__(self) -> bool:
        return bool(self.values)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.values)
        if not ordered:
            return math.nan
        pos = q * (len(ordered) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan

    @property
    def max(self) -> float:
        return max(self.values) if self.values else math.nan

    def frac(self, predicate: Callable[[float], bool]) -> float:
        return sum(1 for v in self.values if predicate(v)) / len(self.values) if self.values else math.nan

    def rate(self) -> float:
        """Per-second increase of a cumulative counter (resets skipped)."""
        if len(self.values) < 2 or self.times[-1] <= self.times[0]:
            return math.nan
        increase = sum(max(0.0, b - a) for a, b in zip(self.values, self.values[1:], strict=False))
        return increase / (self.times[-1] - self.times[0])

    @property
    def cv(self) -> float:
        m = self.mean
        if not self.values or m <= 0:
            return math.nan
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / len(self.values)) / m


class Signals:
    """Samples indexed by (source, name)."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self._by: dict[tuple[str, str], list[Sample]] = {}
        for s in samples:
            self._by.setdefault((s.source, s.name), []).append(s)

    def has(self, source: str, name: str) -> bool:
        return (source, name) in self._by

    def raw_names(self) -> list[str]:
        return [name[4:] for source, name in self._by if source == "metrics" and name.startswith("raw:")]

    def series(
        self,
        sources: str | Sequence[str],
        name: str,
        *,
        combine: str = "sum",
        where: Callable[[dict[str, str]], bool] | None = None,
    ) -> Series:
        """The first of ``sources`` that has ``name`` (so DCGM wins over NVML when both are given)."""
        for source in (sources,) if isinstance(sources, str) else sources:
            rows = [s for s in self._by.get((source, name), ()) if where is None or where(dict(s.labels))]
            if not rows:
                continue
            ticks: dict[float, list[float]] = {}
            for s in rows:
                ticks.setdefault(round(s.t, 3), []).append(s.value)
            times = sorted(ticks)
            merge = max if combine == "max" else sum
            return Series(times, [merge(ticks[t]) for t in times])
        return Series([], [])

    def by_label(self, source: str, name: str, label: str) -> dict[str, Series]:
        keys = {dict(s.labels).get(label) for s in self._by.get((source, name), ())}
        return {
            key: self.series(source, name, where=lambda lab, key=key: lab.get(label) == key)
            for key in keys
            if key is not None
        }


def _metric(summary: dict[str, Any], *path: str) -> float:
    node: Any = summary
    for key in path:
        if not isinstance(node, dict) or key not in node or node[key] is None:
            return math.nan
        node = node[key]
    try:
        return float(node)
    except (TypeError, ValueError):
        return math.nan


def _known(*values: float) -> bool:
    return all(not math.isnan(v) for v in values)


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _ms(x: float) -> str:
    return f"{x:.0f} ms" if x >= 10 else f"{x:.1f} ms"


def _rate(x: float) -> str:
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x:.0f} B/s"


# -- rules, one per resource ----------------------------------------------------------------------


def _load_generator(summary: dict[str, Any], sig: Signals) -> Finding:
    client = summary.get("client") or {}
    lag_p99 = _metric(client, "schedule_lag_ms", "p99")
    if math.isnan(lag_p99) and (lag := sig.series("client", "schedule_lag_ms", combine="max")):
        lag_p99 = lag.quantile(0.99)
    loop_lag = sig.series("client", "loop_lag_ms", combine="max")
    loop_lag_p90 = loop_lag.quantile(0.9) if loop_lag else math.nan
    workers = {
        w: s for w, s in sig.by_label("client", "cpu_percent", "worker").items() if w != "parent"
    } or sig.by_label("client", "cpu_percent", "worker")
    busiest = max((s.quantile(0.5) for s in workers.values()), default=math.nan)
    if math.isnan(busiest):
        busiest = _metric(client, "cpu_percent")
    limited = bool(client.get("limited"))
    if not client and not workers and not loop_lag:
        return Finding(Resource.LOAD_GENERATOR, Verdict.NO_DATA, "no client self-measurement in this run")
    numbers = {
        "schedule_lag_p99_ms": lag_p99,
        "busiest_worker_cpu_percent": busiest,
        "loop_lag_p90_ms": loop_lag_p90,
    }
    # Lag matters when it is large in itself and against the latency being measured: 22 ms of lag on
    # 5-second requests changes no conclusion, 200 ms on 30 ms requests changes all of them.
    e2e_p50 = _metric(summary, "metrics", "e2e_ms", "p50")
    worst_lag = max((v for v in (lag_p99, loop_lag_p90) if _known(v)), default=math.nan)
    lagging = (limited and not _known(worst_lag)) or (
        _known(worst_lag)
        and worst_lag >= CLIENT_LAG_MS
        and (not _known(e2e_p50) or worst_lag >= CLIENT_LAG_SHARE * e2e_p50)
    )
    busy = _known(busiest) and busiest >= CLIENT_CPU_BUSY
    parts = []
    if _known(lag_p99):
        parts.append(f"schedule lag p99 {_ms(lag_p99)}")
    if _known(loop_lag_p90):
        parts.append(f"event-loop lag p90 {_ms(loop_lag_p90)}")
    if _known(busiest):
        parts.append(f"busiest worker CPU {busiest:.0f}% of a core")
    if limited and client.get("reason"):
        parts.append(f"bench flagged the run client-limited ({client['reason']})")
    evidence = ", ".join(parts) or "client flagged limited"
    common = {
        "utilisation": f"{busiest:.0f}% of a core" if _known(busiest) else None,
        "saturation": f"lag p99 {_ms(lag_p99)}" if _known(lag_p99) else None,
        "numbers": numbers,
    }
    if lagging and busy:
        return Finding(Resource.LOAD_GENERATOR, Verdict.BOTTLENECK, evidence, score=0.95, **common)
    loop_on_time = _known(loop_lag_p90) and loop_lag_p90 < min(CLIENT_LAG_MS, worst_lag / 4)
    if lagging and loop_on_time and not busy:
        # The event loop ran on time and the CPU idled, yet sends went out late: the wait was outside the
        # client (connection setup or back-pressure from a slow link or a full accept backlog).
        evidence += ": sends waited outside the client (connect / back-pressure), not on its CPU"
        return Finding(Resource.LOAD_GENERATOR, Verdict.CONTRIBUTING, evidence, score=0.2, **common)
    if lagging:
        # Behind schedule with CPU to spare and a late loop: starved by a busy host (decided in _cross_check)
        # or a client problem we cannot see; a bottleneck until something else explains it.
        return Finding(Resource.LOAD_GENERATOR, Verdict.BOTTLENECK, evidence, score=0.6, **common)
    if busy:
        return Finding(
            Resource.LOAD_GENERATOR, Verdict.CONTRIBUTING, evidence + ": near its limit", score=0.4, **common
        )
    return Finding(
        Resource.LOAD_GENERATOR, Verdict.RULED_OUT, evidence + ": kept up with the schedule", **common
    )


def _server_cpu(summary: dict[str, Any], sig: Signals) -> Finding:
    tree = sig.series("process", "cpu_percent")
    cores = sig.series("process", "cpu_cores_available").max
    host_total = sig.series("host", "cpu_percent_total")
    host_cores = sig.series("host", "cpu_count").max
    client_cpu = sig.series("client", "cpu_percent")
    if not tree and not host_total:
        return Finding(Resource.SERVER_CPU, Verdict.NO_DATA, "no process or host CPU samples")
    host_p50 = host_total.quantile(0.5) if host_total else math.nan
    numbers: dict[str, float] = {"host_cpu_percent_p50": host_p50}
    if not tree:
        client_cores = client_cpu.quantile(0.5) / 100 if client_cpu else 0.0
        busy_cores = host_p50 / 100 * (host_cores if _known(host_cores) else 1)
        evidence = (
            f"server process not sampled; host CPU {host_p50:.0f}% (client uses {client_cores:.1f} cores)"
        )
        if host_p50 >= HOST_CPU_SATURATED and busy_cores - client_cores >= 0.5 * busy_cores:
            return Finding(
                Resource.SERVER_CPU,
                Verdict.CONTRIBUTING,
                evidence,
                utilisation=f"host {host_p50:.0f}%",
                numbers=numbers,
                score=0.4,
            )
        return Finding(
            Resource.SERVER_CPU,
            Verdict.RULED_OUT,
            evidence,
            utilisation=f"host {host_p50:.0f}%",
            numbers=numbers,
        )
    cores = cores if _known(cores) else (host_cores if _known(host_cores) else 1.0)
    used = tree.quantile(0.5)
    share = used / (100 * cores)
    single = sig.series("process", "cpu_percent_max_proc").quantile(0.5)
    ctx = sig.series("process", "involuntary_ctx_switches_per_s").quantile(0.5)
    numbers.update(
        {
            "server_cpu_percent_p50": used,
            "server_cores": cores,
            "server_cpu_share": share,
            "busiest_process_cpu_percent": single,
            "involuntary_ctx_switches_per_s": ctx,
        }
    )
    evidence = f"server tree {used:.0f}% CPU of {cores:.0f} cores ({_pct(share)})"
    if _known(single) and single >= 90 and used < 1.5 * single:
        evidence += f", one process at {single:.0f}% of a core"
    if _known(host_p50):
        evidence += f", host CPU {host_p50:.0f}%"
    server_share_of_host = (used / 100) / max(
        host_p50 / 100 * (host_cores if _known(host_cores) else 1), 1e-9
    )
    host_saturated_by_server = (
        _known(host_p50) and host_p50 >= HOST_CPU_SATURATED and server_share_of_host >= 0.5
    )
    one_core_bound = _known(single) and single >= 90 and used < 1.5 * single and cores > 1.5
    common = {
        "utilisation": _pct(share),
        "numbers": numbers,
        "saturation": f"{ctx:.0f} involuntary switches/s" if _known(ctx) else None,
    }
    if share >= CPU_SATURATED or host_saturated_by_server or one_core_bound:
        return Finding(
            Resource.SERVER_CPU, Verdict.BOTTLENECK, evidence, score=0.6 + 0.4 * min(1.0, share), **common
        )
    host_saturated = _known(host_p50) and host_p50 >= HOST_CPU_SATURATED
    if share >= CPU_BUSY or (host_saturated and server_share_of_host >= 0.3):
        return Finding(Resource.SERVER_CPU, Verdict.CONTRIBUTING, evidence, score=0.4, **common)
    if host_saturated:
        evidence += (
            f" (the server uses {_pct(server_share_of_host)} of it: other processes keep the host busy)"
        )
    return Finding(Resource.SERVER_CPU, Verdict.RULED_OUT, evidence, **common)


_GPU_SOURCES = ("dcgm", "gpu")


def _gpu_context(sig: Signals) -> dict[str, float]:
    """Per-GPU medians, busiest GPU taken: what both GPU rules need."""
    power = sig.series(_GPU_SOURCES, "power_watts", combine="max")
    limit = sig.series(_GPU_SOURCES, "power_limit_watts", combine="max")
    clock = sig.series(_GPU_SOURCES, "sm_clock_mhz", combine="max")
    max_clock = sig.series(_GPU_SOURCES, "sm_clock_max_mhz", combine="max")
    reasons = sig.series(_GPU_SOURCES, "clock_event_reasons", combine="max")
    return {
        "utilization_percent_p50": sig.series(_GPU_SOURCES, "utilization_percent", combine="max").quantile(
            0.5
        ),
        "power_ratio_p50": power.quantile(0.5) / limit.max if power and limit else math.nan,
        "sm_clock_ratio_p50": clock.quantile(0.5) / max_clock.max if clock and max_clock else math.nan,
        "throttled_fraction": reasons.frac(lambda v: int(v) & CLOCK_EVENTS_LIMITING != 0)
        if reasons
        else math.nan,
    }


def _gpu_compute(sig: Signals) -> Finding:
    util = sig.series(_GPU_SOURCES, "utilization_percent", combine="max")
    sm = sig.series(_GPU_SOURCES, "sm_active", combine="max")
    if not util and not sm:
        return Finding(Resource.GPU_COMPUTE, Verdict.NO_DATA, "no GPU samples (no NVML GPU, no --dcgm)")
    ctx = _gpu_context(sig)
    numbers = dict(ctx)
    power, util_p50 = ctx["power_ratio_p50"], ctx["utilization_percent_p50"]
    parts = [f"GPU utilisation {util_p50:.0f}%"] if _known(util_p50) else []
    if _known(power):
        parts.append(f"power {_pct(power)} of limit")
    if _known(ctx["throttled_fraction"]) and ctx["throttled_fraction"] > 0:
        parts.append(f"clocks held down (power/thermal) {_pct(ctx['throttled_fraction'])} of the time")
    saturation = (
        f"throttled {_pct(ctx['throttled_fraction'])} of samples"
        if _known(ctx["throttled_fraction"])
        else None
    )
    if sm:
        active = sm.quantile(0.5)
        numbers["sm_active_p50"] = active
        evidence = ", ".join([f"SM active {_pct(active)}", *parts])
        common = {"utilisation": f"SM active {_pct(active)}", "saturation": saturation, "numbers": numbers}
        if active >= GPU_ACTIVE_SATURATED:
            return Finding(
                Resource.GPU_COMPUTE, Verdict.BOTTLENECK, evidence, score=0.5 + 0.5 * active, **common
            )
        if active >= GPU_ACTIVE_BUSY:
            return Finding(Resource.GPU_COMPUTE, Verdict.CONTRIBUTING, evidence, score=0.4, **common)
        if _known(util_p50) and util_p50 >= 90:
            evidence += (
                ": a kernel is always running but the SMs are mostly idle (small or launch-bound kernels)"
            )
        return Finding(Resource.GPU_COMPUTE, Verdict.RULED_OUT, evidence, **common)
    # Without SM activity, power draw must confirm utilisation (a tiny kernel reads 100% at idle power).
    evidence = ", ".join([*parts, "no SM-activity counter (GPM/DCGM)"])
    common = {
        "utilisation": f"util {util_p50:.0f}% (duty cycle)",
        "saturation": saturation,
        "numbers": numbers,
    }
    if util_p50 >= 90 and _known(power) and power >= POWER_SATURATED:
        return Finding(Resource.GPU_COMPUTE, Verdict.BOTTLENECK, evidence, score=0.65, **common)
    if util_p50 >= 90 and _known(power) and power >= GPU_ACTIVE_BUSY:
        return Finding(Resource.GPU_COMPUTE, Verdict.CONTRIBUTING, evidence, score=0.35, **common)
    if util_p50 >= 90 and not _known(power):
        return Finding(
            Resource.GPU_COMPUTE,
            Verdict.CONTRIBUTING,
            evidence + ": utilisation alone cannot confirm saturation",
            score=0.2,
            **common,
        )
    if util_p50 >= 90:
        evidence += ": busy duty cycle at low power, so kernels are small; not compute-bound"
    return Finding(Resource.GPU_COMPUTE, Verdict.RULED_OUT, evidence, **common)


def _gpu_bandwidth(sig: Signals) -> Finding:
    dram = sig.series(_GPU_SOURCES, "dram_active", combine="max")
    mem_util = sig.series(_GPU_SOURCES, "memory_utilization_percent", combine="max")
    if not dram and not mem_util:
        return Finding(Resource.GPU_MEMORY_BANDWIDTH, Verdict.NO_DATA, "no GPU memory-activity samples")
    ctx = _gpu_context(sig)
    power = ctx["power_ratio_p50"]
    numbers = {"power_ratio_p50": power}
    if dram:
        active = dram.quantile(0.5)
        numbers["dram_active_p50"] = active
        evidence = f"DRAM active {_pct(active)}" + (
            f", power {_pct(power)} of limit" if _known(power) else ""
        )
        common = {"utilisation": f"DRAM active {_pct(active)}", "numbers": numbers}
        if active >= DRAM_ACTIVE_SATURATED:
            return Finding(
                Resource.GPU_MEMORY_BANDWIDTH,
                Verdict.BOTTLENECK,
                evidence,
                score=0.5 + 0.5 * active,
                **common,
            )
        if active >= DRAM_ACTIVE_BUSY:
            return Finding(Resource.GPU_MEMORY_BANDWIDTH, Verdict.CONTRIBUTING, evidence, score=0.4, **common)
        return Finding(Resource.GPU_MEMORY_BANDWIDTH, Verdict.RULED_OUT, evidence, **common)
    busy = mem_util.quantile(0.5)
    numbers["memory_utilization_percent_p50"] = busy
    evidence = (
        f"memory controller busy {busy:.0f}% of the time (NVML)"
        + (f", power {_pct(power)} of limit" if _known(power) else "")
        + ", no DRAM-activity counter (GPM/DCGM)"
    )
    common = {"utilisation": f"memory busy {busy:.0f}% (duty cycle)", "numbers": numbers}
    if busy >= 85 and _known(power) and power >= 0.6:
        return Finding(Resource.GPU_MEMORY_BANDWIDTH, Verdict.BOTTLENECK, evidence, score=0.6, **common)
    if busy >= 60:
        return Finding(Resource.GPU_MEMORY_BANDWIDTH, Verdict.CONTRIBUTING, evidence, score=0.35, **common)
    return Finding(Resource.GPU_MEMORY_BANDWIDTH, Verdict.RULED_OUT, evidence, **common)


def _kv_capacity(sig: Signals) -> Finding:
    kv = sig.series("metrics", "kv_cache_usage", combine="max")
    waiting = sig.series("metrics", "requests_waiting")
    preempt = sig.series("metrics", "preemptions_total")
    swapped = sig.series("metrics", "requests_swapped")
    vram_used = sig.series(_GPU_SOURCES, "memory_used_bytes", combine="max")
    vram_total = sig.series(_GPU_SOURCES, "memory_total_bytes", combine="max")
    if not kv and not preempt and not vram_used:
        return Finding(
            Resource.KV_CAPACITY, Verdict.NO_DATA, "the server exposes no KV-cache or preemption metric"
        )
    numbers: dict[str, float] = {}
    parts: list[str] = []
    kv_p90 = kv.quantile(0.9) if kv else math.nan
    if kv:
        numbers.update({"kv_cache_usage_p90": kv_p90, "kv_cache_usage_max": kv.max})
        parts.append(f"KV cache {_pct(kv_p90)} (p90, max {_pct(kv.max)})")
    waiting_frac = waiting.frac(lambda v: v > 0) if waiting else math.nan
    if _known(waiting_frac):
        numbers["waiting_fraction"] = waiting_frac
        parts.append(f"requests waiting {_pct(waiting_frac)} of the time")
    preempt_rate = preempt.rate() if preempt else math.nan
    if _known(preempt_rate):
        numbers["preemptions_per_s"] = preempt_rate
        parts.append(f"{preempt_rate:.2g} preemptions/s")
    if swapped and swapped.max > 0:
        numbers["swapped_max"] = swapped.max
        parts.append(f"up to {swapped.max:.0f} requests swapped out")
    vram_ratio = vram_used.quantile(0.5) / vram_total.max if vram_used and vram_total else math.nan
    if _known(vram_ratio):
        numbers["vram_used_ratio_p50"] = vram_ratio
        parts.append(
            f"VRAM {_pct(vram_ratio)} used"
            + (" (engines preallocate KV, so this alone is no signal)" if vram_ratio >= 0.8 else "")
        )
    evidence = ", ".join(parts)
    preempting = _known(preempt_rate) and preempt_rate > 0
    common = {
        "utilisation": f"KV {_pct(kv_p90)}" if kv else None,
        "saturation": ", ".join(p for p in parts[1:3]) or None,
        "numbers": numbers,
    }
    if (
        kv and kv_p90 >= KV_FULL and ((_known(waiting_frac) and waiting_frac >= WAITING_OFTEN) or preempting)
    ) or (preempting and preempt_rate >= 0.5):
        return Finding(
            Resource.KV_CAPACITY,
            Verdict.BOTTLENECK,
            evidence,
            score=0.7 + 0.3 * (min(1.0, kv_p90) if _known(kv_p90) else 0.5),
            **common,
        )
    if (kv and kv.max >= KV_HIGH) or preempting or (not kv and _known(vram_ratio) and vram_ratio >= 0.98):
        return Finding(Resource.KV_CAPACITY, Verdict.CONTRIBUTING, evidence, score=0.4, **common)
    return Finding(Resource.KV_CAPACITY, Verdict.RULED_OUT, evidence, **common)


def _admission_queue(summary: dict[str, Any], sig: Signals) -> Finding:
    waiting = sig.series("metrics", "requests_waiting")
    running = sig.series("metrics", "requests_running")
    if not waiting:
        return Finding(
            Resource.ADMISSION_QUEUE, Verdict.NO_DATA, "the server exposes no waiting/queued metric"
        )
    waiting_frac = waiting.frac(lambda v: v > 0)
    numbers = {"waiting_fraction": waiting_frac, "waiting_mean": waiting.mean, "waiting_max": waiting.max}
    parts = [
        f"requests waiting {_pct(waiting_frac)} of the time (mean {waiting.mean:.1f}, max {waiting.max:.0f})"
    ]
    if running:
        numbers.update({"running_p50": running.quantile(0.5), "running_max": running.max})
        parts.append(f"running p50 {running.quantile(0.5):.0f}, max {running.max:.0f}")
    q_sum, q_count = (
        sig.series("metrics", "queue_time_seconds_sum"),
        sig.series("metrics", "queue_time_seconds_count"),
    )
    e2e_ms = _metric(summary, "metrics", "e2e_ms", "mean")
    queue_share = math.nan
    if q_sum and q_count and q_count.values[-1] > q_count.values[0]:
        queue_ms = 1000 * (q_sum.values[-1] - q_sum.values[0]) / (q_count.values[-1] - q_count.values[0])
        numbers["queue_time_ms_mean"] = queue_ms
        parts.append(f"mean queue time {_ms(queue_ms)}")
        if _known(e2e_ms) and e2e_ms > 0:
            queue_share = queue_ms / e2e_ms
            numbers["queue_share_of_e2e"] = queue_share
            parts.append(f"{_pct(queue_share)} of end-to-end latency")
    evidence = ", ".join(parts)
    common = {
        "utilisation": f"running {running.quantile(0.5):.0f}" if running else None,
        "saturation": f"waiting {_pct(waiting_frac)} of the time",
        "numbers": numbers,
    }
    queued_long = (not _known(queue_share)) or queue_share >= QUEUE_SHARE
    if waiting_frac >= 2 * WAITING_OFTEN and queued_long:
        return Finding(
            Resource.ADMISSION_QUEUE, Verdict.BOTTLENECK, evidence, score=0.55 + 0.3 * waiting_frac, **common
        )
    if waiting_frac >= 0.1:
        return Finding(Resource.ADMISSION_QUEUE, Verdict.CONTRIBUTING, evidence, score=0.3, **common)
    return Finding(Resource.ADMISSION_QUEUE, Verdict.RULED_OUT, evidence, **common)


def _disk_io(sig: Signals) -> Finding:
    busy = sig.series("host", "disk_busy_percent")
    iowait = sig.series("host", "cpu_iowait_percent")
    reads = sig.series("process", "read_bytes_per_s")
    if not busy and not iowait:
        return Finding(Resource.DISK_IO, Verdict.NO_DATA, "no disk counters on this host")
    busy_p50 = busy.quantile(0.5) if busy else math.nan
    iowait_p50 = iowait.quantile(0.5) if iowait else math.nan
    reads_p50 = reads.quantile(0.5) if reads else math.nan
    numbers = {
        "disk_busy_percent_p50": busy_p50,
        "iowait_percent_p50": iowait_p50,
        "server_read_bytes_per_s_p50": reads_p50,
    }
    parts = []
    if _known(busy_p50):
        parts.append(f"busiest disk {busy_p50:.0f}% busy")
    if _known(iowait_p50):
        parts.append(f"iowait {iowait_p50:.0f}%")
    if _known(reads_p50):
        parts.append(f"server reads {_rate(reads_p50)}")
    evidence = ", ".join(parts)
    server_io = (_known(reads_p50) and reads_p50 >= 10e6) or (_known(iowait_p50) and iowait_p50 >= 10)
    common = {
        "utilisation": f"{busy_p50:.0f}% busy" if _known(busy_p50) else None,
        "saturation": f"iowait {iowait_p50:.0f}%" if _known(iowait_p50) else None,
        "numbers": numbers,
    }
    if _known(busy_p50) and busy_p50 >= DISK_BUSY and server_io:
        return Finding(Resource.DISK_IO, Verdict.BOTTLENECK, evidence, score=0.7, **common)
    if (_known(busy_p50) and busy_p50 >= 50) or (_known(iowait_p50) and iowait_p50 >= 10):
        return Finding(Resource.DISK_IO, Verdict.CONTRIBUTING, evidence, score=0.3, **common)
    return Finding(Resource.DISK_IO, Verdict.RULED_OUT, evidence, **common)


def _network(summary: dict[str, Any], sig: Signals) -> tuple[Finding, bool]:
    """The finding, and whether the traffic sat on a flat ceiling (a shaped or slow link, decided later)."""
    rx = sig.by_label("host", "net_rx_bytes_per_s", "iface")
    tx = sig.by_label("host", "net_tx_bytes_per_s", "iface")
    if not rx and not tx:
        return Finding(Resource.NETWORK, Verdict.NO_DATA, "no network counters"), False

    def busiest(s: Series) -> float:
        return s.quantile(0.9) if s else 0.0

    candidates = [(i, d, s) for d, table in (("rx", rx), ("tx", tx)) for i, s in table.items()]
    # The target's own interface when the sampler knew it; else the busiest non-loopback link that
    # carries real traffic (loopback also carries package mirrors, local databases ...), else loopback.
    target = set(sig.by_label("host", "net_target_iface", "iface"))
    preferred = [c for c in candidates if c[0] in target] or [
        c for c in candidates if c[0] != "lo" and busiest(c[2]) >= NET_PLATEAU_MIN_BYTES
    ]
    iface, direction, traffic = max(preferred or candidates, key=lambda x: busiest(x[2]))
    speed = sig.by_label("host", "net_speed_bytes_per_s", "iface").get(iface, Series([], [])).max
    drops = sig.by_label("host", "net_drops_per_s", "iface").get(iface, Series([], []))
    retrans = sig.series("host", "tcp_retrans_ratio")
    p90 = traffic.quantile(0.9)
    active = Series(traffic.times, [v for v in traffic.values if v >= 0.2 * traffic.max])
    numbers = {
        "busiest_bytes_per_s_p90": p90,
        "link_bytes_per_s": speed,
        "plateau_cv": active.cv,
        "drops_per_s_p50": drops.quantile(0.5) if drops else math.nan,
        "tcp_retrans_ratio_p50": retrans.quantile(0.5) if retrans else math.nan,
    }
    util = p90 / speed if _known(speed) and speed > 0 else math.nan
    numbers["link_utilisation"] = util
    parts = [f"{iface} {direction} {_rate(p90)} (p90)"]
    if _known(util):
        parts.append(f"{_pct(util)} of the {_rate(speed)} link")
    if numbers["drops_per_s_p50"] > 0:
        parts.append(f"{numbers['drops_per_s_p50']:.0f} drops/s")
    if _known(numbers["tcp_retrans_ratio_p50"]):
        parts.append(f"TCP retransmits {numbers['tcp_retrans_ratio_p50'] * 100:.2f}% of segments")
    evidence = ", ".join(parts)
    common = {
        "utilisation": _pct(util) if _known(util) else _rate(p90),
        "errors": f"{numbers['drops_per_s_p50']:.0f} drops/s" if drops else None,
        "numbers": numbers,
    }
    retrans_bad = _known(numbers["tcp_retrans_ratio_p50"]) and numbers["tcp_retrans_ratio_p50"] >= 0.02
    if (_known(util) and util >= NET_LINK_SATURATED) or (retrans_bad and iface != "lo"):
        return Finding(Resource.NETWORK, Verdict.BOTTLENECK, evidence, score=0.75, **common), False
    plateau = (
        iface != "lo"
        and len(active.values) >= 3
        and p90 >= NET_PLATEAU_MIN_BYTES
        and _known(active.cv)
        and active.cv <= NET_PLATEAU_CV
    )
    # Retransmits are counted host-wide; on loopback they come from full accept queues, not from a link.
    if (_known(util) and util >= 0.5) or (
        iface != "lo"
        and _known(numbers["tcp_retrans_ratio_p50"])
        and numbers["tcp_retrans_ratio_p50"] >= 0.005
    ):
        return Finding(Resource.NETWORK, Verdict.CONTRIBUTING, evidence, score=0.35, **common), plateau
    return Finding(Resource.NETWORK, Verdict.RULED_OUT, evidence, **common), plateau


def _errors(summary: dict[str, Any], sig: Signals) -> Finding:
    total = _metric(summary, "metrics", "requests_total")
    failed = _metric(summary, "metrics", "requests_failed")
    by_class = (summary.get("metrics") or {}).get("errors_by_class") or {}
    server_failed = sig.series("metrics", "requests_failed_total")
    if not _known(total) or total <= 0:
        return Finding(Resource.ERRORS, Verdict.NO_DATA, "no request counts in the summary")
    failed = 0.0 if math.isnan(failed) else failed
    rate = failed / total
    numbers = {"requests_total": total, "requests_failed": failed, "error_rate": rate}
    evidence = f"{failed:.0f} of {total:.0f} requests failed ({rate * 100:.1f}%)"
    if by_class:
        evidence += ": " + ", ".join(
            f"{cls} {n}" for cls, n in sorted(by_class.items(), key=lambda kv: -kv[1])
        )
    example = str(((summary.get("metrics") or {}).get("error_examples") or {}).get("http_status", ""))
    if status := re.match(r"HTTP (\d{3})", example):
        evidence += f" (e.g. HTTP {status.group(1)})"
    if server_failed:
        numbers["server_failed_per_s"] = server_failed.rate()
    common = {"errors": f"{rate * 100:.1f}% failed", "numbers": numbers}
    if rate >= ERROR_RATE_BOTTLENECK:
        return Finding(
            Resource.ERRORS, Verdict.BOTTLENECK, evidence, score=0.7 + 0.3 * min(1.0, rate * 2), **common
        )
    if rate >= ERROR_RATE_CONTRIBUTING:
        return Finding(Resource.ERRORS, Verdict.CONTRIBUTING, evidence, score=0.3, **common)
    return Finding(Resource.ERRORS, Verdict.RULED_OUT, evidence, **common)


# -- putting it together --------------------------------------------------------------------------

_HARDWARE = (
    Resource.KV_CAPACITY,
    Resource.SERVER_CPU,
    Resource.GPU_MEMORY_BANDWIDTH,
    Resource.GPU_COMPUTE,
    Resource.DISK_IO,
    Resource.NETWORK,
)


def _cross_check(findings: dict[str, Finding], plateau: bool) -> None:
    """Verdicts that depend on each other: symptoms are demoted, and a flat network ceiling is promoted
    only when nothing else explains the limit."""
    client, cpu = findings[Resource.LOAD_GENERATOR], findings[Resource.SERVER_CPU]
    if client.verdict is Verdict.BOTTLENECK and client.score < 0.9 and cpu.verdict is Verdict.BOTTLENECK:
        client.verdict = Verdict.CONTRIBUTING
        client.evidence += (
            "; the client is starved by the server's CPU load on the same host, not busy itself"
        )
        client.score = 0.3
    host_cpu = cpu.numbers.get("host_cpu_percent_p50", math.nan)
    if client.verdict is Verdict.BOTTLENECK and client.score < 0.9 and _known(host_cpu) and host_cpu >= 90:
        client.evidence += f"; starved: the host CPU is {host_cpu:.0f}% busy with other processes"
        client.numbers["host_cpu_percent_p50"] = host_cpu
    hardware_bottleneck = any(findings[r].verdict is Verdict.BOTTLENECK for r in _HARDWARE)
    queue = findings[Resource.ADMISSION_QUEUE]
    if queue.verdict is Verdict.BOTTLENECK and hardware_bottleneck:
        queue.verdict = Verdict.CONTRIBUTING
        queue.evidence += "; a symptom of the saturated resource, not a limit of its own"
    kv = findings[Resource.KV_CAPACITY]
    if queue.verdict is Verdict.BOTTLENECK and kv.verdict is Verdict.BOTTLENECK:
        queue.verdict = Verdict.CONTRIBUTING
    net = findings[Resource.NETWORK]
    others_busy = client.verdict is Verdict.BOTTLENECK or any(
        f.verdict in (Verdict.BOTTLENECK, Verdict.CONTRIBUTING)
        for r, f in findings.items()
        if r not in (Resource.NETWORK, Resource.ERRORS, Resource.LOAD_GENERATOR)
    )
    if plateau and net.verdict is not Verdict.BOTTLENECK and not others_busy:
        net.verdict = Verdict.BOTTLENECK
        net.evidence += (
            f"; throughput flat at its ceiling (variation {_pct(net.numbers['plateau_cv'])}) while"
            " server CPU, GPU,"
            " queue and the client's CPU all had headroom: a link slower than the interface reports"
        )
        net.score = 0.6


def _next_steps(primary: Finding, engine: str | None, summary: dict[str, Any]) -> list[str]:
    n = primary.numbers
    if primary.resource == Resource.LOAD_GENERATOR:
        if "starved" in primary.evidence:
            return [
                f"The client fell behind its schedule ({primary.evidence}): this run measured a busy host,"
                " not the server.",
                "Run the load generator on a quiet machine or cores of its own (taskset), then bench again.",
            ]
        return [
            f"The client, not the server, is the limit ({primary.evidence}): this run understates"
            " the server.",
            "Add load workers (`--workers N`), give the client more cores or its own machine,"
            " or lower the rate.",
        ]
    if primary.resource == Resource.ERRORS:
        classes = (summary.get("metrics") or {}).get("errors_by_class") or {}
        steps = [f"{primary.evidence}: the numbers of this run describe failures as much as service."]
        if classes.get("http_status"):
            steps.append(
                "HTTP errors under load (429/503) mean the server sheds load: lower the rate to its"
                " sustainable maximum (`servewise bench --load sweep`), raise its queue or concurrency limit,"
                " or add replicas."
            )
        if classes.get("timeout"):
            steps.append(
                "Timeouts: the server cannot finish in time at this load; lower the rate or add capacity."
            )
        if classes.get("connect"):
            steps.append(
                "Connection errors: check the server's listen backlog, worker count and"
                " file-descriptor limit."
            )
        return steps
    if primary.resource == Resource.KV_CAPACITY:
        head = primary.evidence.split(", VRAM")[0]
        advice = {
            "vllm": "lower max_model_len, raise gpu_memory_utilization, or move to a 48 GB+ tier — "
            "`servewise plan` shows which",
            "sglang": "raise --mem-fraction-static, lower --context-length or --max-running-requests,"
            " or move to a larger-memory tier — `servewise plan` shows which",
            "llamacpp": "raise the context (-c; each of -np slots gets c/np tokens) or lower -np,"
            " quantise the KV cache (--cache-type-k q8_0), or move to a larger-memory tier",
            "tgi": "lower --max-total-tokens / --max-batch-total-tokens or move to a larger-memory tier",
        }.get(
            engine or "",
            "give the KV cache more memory (shorter max context, larger memory fraction, quantised"
            " KV) or move to a larger-memory tier — `servewise plan` shows which",
        )
        return [f"{head}: {advice}."]
    if primary.resource == Resource.SERVER_CPU:
        advice = {
            "llamacpp": "set -t to the physical cores the server may use, pin it away from the client,"
            " or serve on a GPU build",
            "vllm": "on GPU, vLLM's API process (tokenisation, detokenisation, streaming) is CPU-bound:"
            " add API server processes (--api-server-count), use a faster CPU; on CPU, add cores",
        }.get(engine or "", "give the server more cores or more worker processes, or move the model to a GPU")
        return [f"Server CPU saturated ({primary.evidence}): {advice}."]
    if primary.resource == Resource.GPU_COMPUTE:
        return [
            f"GPU compute-bound ({primary.evidence}): typical of prefill-heavy load. Enable prefix"
            " caching and chunked prefill, quantise to FP8/INT8, shorten prompts, or move to a faster"
            " tier — `servewise plan` shows which.",
        ]
    if primary.resource == Resource.GPU_MEMORY_BANDWIDTH:
        return [
            f"GPU memory-bandwidth-bound ({primary.evidence}): typical of decode. Quantise weights and"
            " KV (FP8, AWQ/GPTQ), try speculative decoding, or move to a higher-bandwidth tier"
            " (e.g. H100 → H200) — `servewise plan` shows which.",
        ]
    if primary.resource == Resource.ADMISSION_QUEUE:
        advice = {
            "vllm": "raise --max-num-seqs / --max-num-batched-tokens",
            "sglang": "raise --max-running-requests",
            "llamacpp": "raise -np (parallel slots)",
            "tgi": "raise --max-concurrent-requests and --max-batch-prefill-tokens",
            "triton": "raise the model's dynamic-batching max batch size or instance count",
        }.get(engine or "", "raise the server's concurrency limit")
        running = n.get("running_max")
        cap = f" (running capped at {running:.0f})" if running is not None and _known(running) else ""
        return [f"Requests queue while the hardware has headroom{cap}: {advice}, or add replicas."]
    if primary.resource == Resource.DISK_IO:
        return [
            f"Disk-bound ({primary.evidence}): move weights/caches to faster local NVMe, add page"
            " cache (RAM), or preload the model; check for swapping or logging on the hot path."
        ]
    if primary.resource == Resource.NETWORK:
        return [
            f"Network-bound ({primary.evidence}): co-locate client and server, use a faster link, or shrink"
            " responses (compression, float16/base64 embeddings, fewer streamed chunks)."
        ]
    load = summary.get("load") or "this load"
    return [
        f"No resource saturated at {load}: the server has headroom. Raise the load"
        " (`servewise bench --load sweep`) to find where it bends."
    ]


def infer_engine(samples: Sequence[Sample]) -> str | None:
    """The engine, from the raw /metrics series stored with the run."""
    names = {s.name[4:] for s in samples if s.source == "metrics" and s.name.startswith("raw:")}
    return detect_engine(RawSeries(name, (), 0.0) for name in names)


def diagnose(
    summary: dict[str, Any], samples: Sequence[Sample], *, server_engine: str | None = None
) -> Diagnosis:
    """Every resource's finding, the primary bottleneck, its confidence and next steps."""
    summary = summary or {}
    sig = Signals(samples)
    engine = server_engine or infer_engine(samples)
    network, plateau = _network(summary, sig)
    ordered = [
        _load_generator(summary, sig),
        network,
        _server_cpu(summary, sig),
        _gpu_compute(sig),
        _gpu_bandwidth(sig),
        _kv_capacity(sig),
        _admission_queue(summary, sig),
        _disk_io(sig),
        _errors(summary, sig),
    ]
    findings = {f.resource: f for f in ordered}
    _cross_check(findings, plateau)
    bottlenecks = [f for f in ordered if f.verdict is Verdict.BOTTLENECK]
    client, errors = findings[Resource.LOAD_GENERATOR], findings[Resource.ERRORS]
    if client.verdict is Verdict.BOTTLENECK:
        primary: Finding | None = client
    elif errors.verdict is Verdict.BOTTLENECK:
        primary = errors
    else:
        primary = max(bottlenecks, key=lambda f: f.score, default=None)
    if primary is None:
        missing = [f for f in ordered if f.verdict is Verdict.NO_DATA]
        confidence = "medium" if len(missing) <= 4 else "low"
        none = Finding(NO_BOTTLENECK, Verdict.RULED_OUT, "no resource saturated")
        return Diagnosis(NO_BOTTLENECK, confidence, ordered, _next_steps(none, engine, summary), engine)
    rivals = [f for f in bottlenecks if f is not primary]
    if primary.score >= 0.8 and not rivals:
        confidence = "high"
    elif primary.score >= 0.6 and all(f.score < primary.score - 0.1 for f in rivals):
        confidence = "medium"
    else:
        confidence = "low"
    return Diagnosis(
        str(primary.resource), confidence, ordered, _next_steps(primary, engine, summary), engine
    )
