"""Rules read from the serving side: its CPU, GPU compute and memory bandwidth, KV capacity, admission
queue and disk. GPU utilisation alone never decides: SM/DRAM activity or power must agree."""

from __future__ import annotations

import math
import statistics
from typing import Any

from servewise.analysis.diagnosis.findings import (
    CPU_BUSY,
    CPU_SATURATED,
    DISK_BUSY,
    DRAM_ACTIVE_BUSY,
    DRAM_ACTIVE_SATURATED,
    GPU_ACTIVE_BUSY,
    GPU_ACTIVE_SATURATED,
    HELD_FOR_KV,
    HOST_CPU_SATURATED,
    KV_FULL,
    KV_HIGH,
    MIN_HELD_TICKS,
    POWER_SATURATED,
    QUEUE_SHARE,
    TENSOR_ACTIVE_BUSY,
    WAITING_OFTEN,
    Finding,
    Resource,
)
from servewise.analysis.diagnosis.signals import (
    SERVER,
    Place,
    Series,
    Signals,
    known,
    number,
    remote_and_unread,
)
from servewise.analysis.diagnosis.step import StepScaling
from servewise.format import byte_rate, ms_text, percent
from servewise.results import RunResult
from servewise.results.diagnosis import FindingStatus
from servewise.telemetry.gpu import CLOCK_EVENTS_LIMITING

REMOTE_HOST_UNREAD = (
    "the serving host is another machine and its node_exporter was not read: give --node-exporter URL"
    " (this machine's counters describe the client)"
)


def server_cpu(sig: Signals, host: tuple[str, Place] | None) -> Finding:
    tree = sig.series("process", "cpu_percent")
    cores = sig.series("process", "cpu_cores_available").max
    source, place = host if host is not None else ("", None)
    host_total = sig.series(source, "cpu_percent_total") if host else Series([], [])
    host_cores = sig.series(source, "cpu_count").max if host else math.nan
    if not tree and not host_total:
        evidence = REMOTE_HOST_UNREAD if remote_and_unread(sig) else "no process or host CPU samples"
        return Finding(Resource.SERVER_CPU, FindingStatus.NO_DATA, evidence)
    where = Place(SERVER, "psutil, the server's process tree") if tree else place
    host_p50 = host_total.quantile(0.5) if host_total else math.nan
    numbers: dict[str, float] = {"host_cpu_percent_p50": host_p50}
    if not tree and source == "node":
        # the serving host on its own: no client shares it, so a saturated host is the server's limit
        evidence = f"serving host CPU {host_p50:.0f}%" + (
            f" of {host_cores:.0f} cores" if known(host_cores) else ""
        )
        common_node: dict[str, Any] = {
            "utilisation": f"host {host_p50:.0f}%",
            "numbers": numbers,
            **_at(where),
        }
        if host_p50 >= HOST_CPU_SATURATED:
            return Finding(Resource.SERVER_CPU, FindingStatus.BOTTLENECK, evidence, score=0.7, **common_node)
        if host_p50 >= 100 * CPU_BUSY:
            return Finding(
                Resource.SERVER_CPU, FindingStatus.CONTRIBUTING, evidence, score=0.4, **common_node
            )
        return Finding(Resource.SERVER_CPU, FindingStatus.RULED_OUT, evidence, **common_node)
    client_cpu = sig.series("client", "cpu_percent")
    if not tree:
        client_cores = client_cpu.quantile(0.5) / 100 if client_cpu else 0.0
        busy_cores = host_p50 / 100 * (host_cores if known(host_cores) else 1)
        evidence = (
            f"server process not sampled; host CPU {host_p50:.0f}% (client uses {client_cores:.1f} cores)"
        )
        if host_p50 >= HOST_CPU_SATURATED and busy_cores - client_cores >= 0.5 * busy_cores:
            return Finding(
                Resource.SERVER_CPU,
                FindingStatus.CONTRIBUTING,
                evidence,
                utilisation=f"host {host_p50:.0f}%",
                numbers=numbers,
                score=0.4,
                **_at(where),
            )
        return Finding(
            Resource.SERVER_CPU,
            FindingStatus.RULED_OUT,
            evidence,
            utilisation=f"host {host_p50:.0f}%",
            numbers=numbers,
            **_at(where),
        )
    cores = cores if known(cores) else (host_cores if known(host_cores) else 1.0)
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
    evidence = f"server tree {used:.0f}% CPU of {cores:.0f} cores ({percent(share)})"
    if known(single) and single >= 90 and used < 1.5 * single:
        evidence += f", one process at {single:.0f}% of a core"
    if known(host_p50):
        evidence += f", host CPU {host_p50:.0f}%"
    server_share_of_host = (used / 100) / max(host_p50 / 100 * (host_cores if known(host_cores) else 1), 1e-9)
    host_saturated_by_server = (
        known(host_p50) and host_p50 >= HOST_CPU_SATURATED and server_share_of_host >= 0.5
    )
    one_core_bound = known(single) and single >= 90 and used < 1.5 * single and cores > 1.5
    common: dict[str, Any] = {
        "utilisation": percent(share),
        "numbers": numbers,
        "saturation": f"{ctx:.0f} involuntary switches/s" if known(ctx) else None,
        **_at(where),
    }
    if share >= CPU_SATURATED or host_saturated_by_server or one_core_bound:
        return Finding(
            Resource.SERVER_CPU,
            FindingStatus.BOTTLENECK,
            evidence,
            score=0.6 + 0.4 * min(1.0, share),
            **common,
        )
    host_saturated = known(host_p50) and host_p50 >= HOST_CPU_SATURATED
    if share >= CPU_BUSY or (host_saturated and server_share_of_host >= 0.3):
        return Finding(Resource.SERVER_CPU, FindingStatus.CONTRIBUTING, evidence, score=0.4, **common)
    if host_saturated:
        evidence += (
            f" (the server uses {percent(server_share_of_host)} of it: other processes keep the host busy)"
        )
    return Finding(Resource.SERVER_CPU, FindingStatus.RULED_OUT, evidence, **common)


_GPU_SOURCES = ("dcgm", "gpu")


def _at(place: Place | None) -> dict[str, Any]:
    return {"read_on": place.read_on, "source": place.source} if place else {}


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


def gpu_compute(sig: Signals) -> Finding:
    util = sig.series(_GPU_SOURCES, "utilization_percent", combine="max")
    sm = sig.series(_GPU_SOURCES, "sm_active", combine="max")
    if not util and not sm:
        return Finding(Resource.GPU_COMPUTE, FindingStatus.NO_DATA, "no GPU samples (no NVML GPU, no --dcgm)")
    ctx = _gpu_context(sig)
    numbers = dict(ctx)
    power, util_p50 = ctx["power_ratio_p50"], ctx["utilization_percent_p50"]
    parts = [f"GPU utilisation {util_p50:.0f}%"] if known(util_p50) else []
    if known(power):
        parts.append(f"power {percent(power)} of limit")
    if known(ctx["throttled_fraction"]) and ctx["throttled_fraction"] > 0:
        parts.append(f"clocks held down (power/thermal) {percent(ctx['throttled_fraction'])} of the time")
    saturation = (
        f"throttled {percent(ctx['throttled_fraction'])} of samples"
        if known(ctx["throttled_fraction"])
        else None
    )
    if sm:
        active = sm.quantile(0.5)
        numbers["sm_active_p50"] = active
        evidence = ", ".join([f"SM active {percent(active)}", *parts])
        common: dict[str, Any] = {
            "utilisation": f"SM active {percent(active)}",
            "saturation": saturation,
            "numbers": numbers,
        }
        # SM activity is necessary, not sufficient: a decode kernel keeps its SMs "active" while they wait on
        # memory. Compute-bound needs the tensor pipes busy, or at least DRAM not saturated.
        tensor = sig.series(_GPU_SOURCES, "tensor_active", combine="max")
        dram = sig.series(_GPU_SOURCES, "dram_active", combine="max")
        tensor_p50 = tensor.quantile(0.5) if tensor else math.nan
        dram_p50 = dram.quantile(0.5) if dram else math.nan
        if known(tensor_p50):
            numbers["tensor_active_p50"] = tensor_p50
            evidence += f", tensor pipes active {percent(tensor_p50)}"
        waiting_on_memory = (
            known(dram_p50)
            and dram_p50 >= DRAM_ACTIVE_SATURATED
            and not (known(tensor_p50) and tensor_p50 >= TENSOR_ACTIVE_BUSY)
        )
        if active >= GPU_ACTIVE_SATURATED and waiting_on_memory:
            evidence += f": the SMs wait on memory (DRAM active {percent(dram_p50)}), not on arithmetic"
            return Finding(Resource.GPU_COMPUTE, FindingStatus.CONTRIBUTING, evidence, score=0.35, **common)
        if active >= GPU_ACTIVE_SATURATED:
            return Finding(
                Resource.GPU_COMPUTE, FindingStatus.BOTTLENECK, evidence, score=0.5 + 0.5 * active, **common
            )
        if active >= GPU_ACTIVE_BUSY:
            return Finding(Resource.GPU_COMPUTE, FindingStatus.CONTRIBUTING, evidence, score=0.4, **common)
        if known(util_p50) and util_p50 >= 90:
            evidence += (
                ": a kernel is always running but the SMs are mostly idle (small or launch-bound kernels)"
            )
        return Finding(Resource.GPU_COMPUTE, FindingStatus.RULED_OUT, evidence, **common)
    # Without SM activity, power draw must confirm utilisation (a tiny kernel reads 100% at idle power).
    evidence = ", ".join([*parts, "no SM-activity counter (GPM/DCGM)"])
    common = {
        "utilisation": f"util {util_p50:.0f}% (duty cycle)",
        "saturation": saturation,
        "numbers": numbers,
    }
    if util_p50 >= 90 and known(power) and power >= POWER_SATURATED:
        return Finding(Resource.GPU_COMPUTE, FindingStatus.BOTTLENECK, evidence, score=0.65, **common)
    if util_p50 >= 90 and known(power) and power >= GPU_ACTIVE_BUSY:
        return Finding(Resource.GPU_COMPUTE, FindingStatus.CONTRIBUTING, evidence, score=0.35, **common)
    if util_p50 >= 90 and not known(power):
        return Finding(
            Resource.GPU_COMPUTE,
            FindingStatus.CONTRIBUTING,
            evidence + ": utilisation alone cannot confirm saturation",
            score=0.2,
            **common,
        )
    if util_p50 >= 90:
        evidence += ": busy duty cycle at low power, so kernels are small; not compute-bound"
    return Finding(Resource.GPU_COMPUTE, FindingStatus.RULED_OUT, evidence, **common)


def gpu_bandwidth(sig: Signals) -> Finding:
    dram = sig.series(_GPU_SOURCES, "dram_active", combine="max")
    mem_util = sig.series(_GPU_SOURCES, "memory_utilization_percent", combine="max")
    if not dram and not mem_util:
        return Finding(Resource.GPU_MEMORY_BANDWIDTH, FindingStatus.NO_DATA, "no GPU memory-activity samples")
    ctx = _gpu_context(sig)
    power = ctx["power_ratio_p50"]
    numbers = {"power_ratio_p50": power}
    if dram:
        active = dram.quantile(0.5)
        numbers["dram_active_p50"] = active
        evidence = f"DRAM active {percent(active)}" + (
            f", power {percent(power)} of limit" if known(power) else ""
        )
        common: dict[str, Any] = {"utilisation": f"DRAM active {percent(active)}", "numbers": numbers}
        if active >= DRAM_ACTIVE_SATURATED:
            return Finding(
                Resource.GPU_MEMORY_BANDWIDTH,
                FindingStatus.BOTTLENECK,
                evidence,
                score=0.5 + 0.5 * active,
                **common,
            )
        if active >= DRAM_ACTIVE_BUSY:
            return Finding(
                Resource.GPU_MEMORY_BANDWIDTH, FindingStatus.CONTRIBUTING, evidence, score=0.4, **common
            )
        return Finding(Resource.GPU_MEMORY_BANDWIDTH, FindingStatus.RULED_OUT, evidence, **common)
    busy = mem_util.quantile(0.5)
    numbers["memory_utilization_percent_p50"] = busy
    evidence = (
        f"memory controller busy {busy:.0f}% of the time (NVML)"
        + (f", power {percent(power)} of limit" if known(power) else "")
        + ", no DRAM-activity counter (GPM/DCGM)"
    )
    common = {"utilisation": f"memory busy {busy:.0f}% (duty cycle)", "numbers": numbers}
    if busy >= 85 and known(power) and power >= 0.6:
        return Finding(Resource.GPU_MEMORY_BANDWIDTH, FindingStatus.BOTTLENECK, evidence, score=0.6, **common)
    if busy >= 60:
        return Finding(
            Resource.GPU_MEMORY_BANDWIDTH, FindingStatus.CONTRIBUTING, evidence, score=0.35, **common
        )
    return Finding(Resource.GPU_MEMORY_BANDWIDTH, FindingStatus.RULED_OUT, evidence, **common)


def kv_capacity(sig: Signals) -> Finding:
    kv = sig.series("metrics", "kv_cache_usage", combine="max")
    waiting = sig.series("metrics", "requests_waiting")
    preempt = sig.series("metrics", "preemptions_total")
    swapped = sig.series("metrics", "requests_swapped")
    vram_used = sig.series(_GPU_SOURCES, "memory_used_bytes", combine="max")
    vram_total = sig.series(_GPU_SOURCES, "memory_total_bytes", combine="max")
    if not kv and not preempt and not vram_used:
        return Finding(
            Resource.KV_CAPACITY, FindingStatus.NO_DATA, "the server exposes no KV-cache or preemption metric"
        )
    numbers: dict[str, float] = {}
    parts: list[str] = []
    kv_p90 = kv.quantile(0.9) if kv else math.nan
    if kv:
        numbers.update({"kv_cache_usage_p90": kv_p90, "kv_cache_usage_max": kv.max})
        parts.append(f"KV cache {percent(kv_p90)} (p90, max {percent(kv.max)})")
    waiting_frac = waiting.frac(lambda v: v > 0) if waiting else math.nan
    if known(waiting_frac):
        numbers["waiting_fraction"] = waiting_frac
        parts.append(f"requests waiting {percent(waiting_frac)} of the time")
    preempt_rate = preempt.rate() if preempt else math.nan
    if known(preempt_rate):
        numbers["preemptions_per_s"] = preempt_rate
        parts.append(f"{preempt_rate:.2g} preemptions/s")
    held, room = _held_for_kv(kv, sig.series("metrics", "requests_running"), waiting)
    if known(held):
        numbers.update({"waiting_held_for_kv": held, "kv_room_requests": room})
        parts.append(
            f"free KV under one running request's share in {percent(held)} of the waiting ticks"
            f" (room for {room:.1f} requests)"
        )
    if swapped and swapped.max > 0:
        numbers["swapped_max"] = swapped.max
        parts.append(f"up to {swapped.max:.0f} requests swapped out")
    vram_ratio = vram_used.quantile(0.5) / vram_total.max if vram_used and vram_total else math.nan
    if known(vram_ratio):
        numbers["vram_used_ratio_p50"] = vram_ratio
        parts.append(
            f"VRAM {percent(vram_ratio)} used"
            + (" (engines preallocate KV, so this alone is no signal)" if vram_ratio >= 0.8 else "")
        )
    evidence = ", ".join(parts)
    preempting = known(preempt_rate) and preempt_rate > 0
    common: dict[str, Any] = {
        "utilisation": f"KV {percent(kv_p90)}" if kv else None,
        "saturation": ", ".join(p for p in parts[1:3]) or None,
        "numbers": numbers,
    }
    waits_often = known(waiting_frac) and waiting_frac >= WAITING_OFTEN
    held_back = waits_often and known(held) and held >= HELD_FOR_KV
    full = kv and kv_p90 >= KV_FULL and (waits_often or preempting)
    if full or (preempting and preempt_rate >= 0.5) or held_back:
        return Finding(
            Resource.KV_CAPACITY,
            FindingStatus.BOTTLENECK,
            evidence,
            # preempting, or holding requests back while the free KV is smaller than a running request's, is
            # the engine saying its KV cache ran out: as sure as a full gauge, and more specific than a busy
            # CPU, which a CPU engine's threads keep busy whenever it serves at all
            score=1.0
            if preempt_rate >= 0.5 or held_back
            else 0.7 + 0.3 * (min(1.0, kv_p90) if known(kv_p90) else 0.5),
            **common,
        )
    if (kv and kv.max >= KV_HIGH) or preempting or (not kv and known(vram_ratio) and vram_ratio >= 0.98):
        return Finding(Resource.KV_CAPACITY, FindingStatus.CONTRIBUTING, evidence, score=0.4, **common)
    return Finding(Resource.KV_CAPACITY, FindingStatus.RULED_OUT, evidence, **common)


def _held_for_kv(kv: Series, running: Series, waiting: Series) -> tuple[float, float]:
    """Of the ticks where requests waited beside running ones, the share where the free part of the KV cache
    was smaller than one running request's part of it; and how many such requests the cache holds (median).
    An engine that admits a request only once its prompt fits (vLLM's default since its full-prompt admission
    gate) shows a cache too small for the load as a queue beside a cache 60% used, without preempting: a
    vLLM CPU run here held one 7-block request in 11 blocks while seven waited."""
    used, busy = dict(zip(kv.times, kv.values, strict=True)), dict(zip(running.times, running.values, strict=True))
    shares = [
        (1.0 - used[t], used[t] / busy[t])
        for t, queued in zip(waiting.times, waiting.values, strict=True)
        if queued > 0 and busy.get(t, 0.0) > 0 and used.get(t, 0.0) > 0
    ]
    if len(shares) < MIN_HELD_TICKS:
        return math.nan, math.nan
    held = sum(1 for free, one in shares if free < one) / len(shares)
    return held, statistics.median(1.0 / one for _, one in shares)


def admission_queue(result: RunResult | None, sig: Signals, step: StepScaling | None) -> Finding:
    waiting = sig.series("metrics", "requests_waiting")
    running = sig.series("metrics", "requests_running")
    if not waiting:
        return Finding(
            Resource.ADMISSION_QUEUE, FindingStatus.NO_DATA, "the server exposes no waiting/queued metric"
        )
    waiting_frac = waiting.frac(lambda v: v > 0)
    numbers = {"waiting_fraction": waiting_frac, "waiting_mean": waiting.mean, "waiting_max": waiting.max}
    parts = [
        f"requests waiting {percent(waiting_frac)} of the time (mean {waiting.mean:.1f}, max {waiting.max:.0f})"
    ]
    if running:
        numbers.update({"running_p50": running.quantile(0.5), "running_max": running.max})
        parts.append(f"running p50 {running.quantile(0.5):.0f}, max {running.max:.0f}")
    q_sum, q_count = (
        sig.series("metrics", "queue_time_seconds_sum"),
        sig.series("metrics", "queue_time_seconds_count"),
    )
    e2e_ms = number(result.metrics.e2e_ms.mean if result else None)
    queue_share = math.nan
    if q_sum and q_count and q_count.increase() > 0:
        queue_ms = 1000 * q_sum.increase() / q_count.increase()
        numbers["queue_time_ms_mean"] = queue_ms
        parts.append(f"mean queue time {ms_text(queue_ms)}")
        if known(e2e_ms) and e2e_ms > 0:
            queue_share = queue_ms / e2e_ms
            numbers["queue_share_of_e2e"] = queue_share
            parts.append(f"{percent(queue_share)} of end-to-end latency")
    if step is not None:
        numbers.update(step.numbers())
        parts.append(step.text())
    evidence = ", ".join(parts)
    common: dict[str, Any] = {
        "utilisation": f"running {running.quantile(0.5):.0f}" if running else None,
        "saturation": f"waiting {percent(waiting_frac)} of the time",
        "numbers": numbers,
    }
    queued_long = (not known(queue_share)) or queue_share >= QUEUE_SHARE
    if waiting_frac >= 2 * WAITING_OFTEN and queued_long:
        return Finding(
            Resource.ADMISSION_QUEUE,
            FindingStatus.BOTTLENECK,
            evidence,
            score=0.55 + 0.3 * waiting_frac,
            **common,
        )
    if waiting_frac >= 0.1:
        return Finding(Resource.ADMISSION_QUEUE, FindingStatus.CONTRIBUTING, evidence, score=0.3, **common)
    return Finding(Resource.ADMISSION_QUEUE, FindingStatus.RULED_OUT, evidence, **common)


def disk_io(sig: Signals, host: tuple[str, Place] | None) -> Finding:
    if host is None:
        evidence = REMOTE_HOST_UNREAD if remote_and_unread(sig) else "no disk counters on this host"
        return Finding(Resource.DISK_IO, FindingStatus.NO_DATA, evidence)
    source, place = host
    busy = sig.series(source, "disk_busy_percent")
    iowait = sig.series(source, "cpu_iowait_percent")
    reads = sig.series("process", "read_bytes_per_s")
    if not busy and not iowait:
        return Finding(Resource.DISK_IO, FindingStatus.NO_DATA, "no disk counters on the serving host")
    busy_p50 = busy.quantile(0.5) if busy else math.nan
    iowait_p50 = iowait.quantile(0.5) if iowait else math.nan
    reads_p50 = reads.quantile(0.5) if reads else math.nan
    numbers = {
        "disk_busy_percent_p50": busy_p50,
        "iowait_percent_p50": iowait_p50,
        "server_read_bytes_per_s_p50": reads_p50,
    }
    parts = []
    if known(busy_p50):
        parts.append(f"busiest disk {busy_p50:.0f}% busy")
    if known(iowait_p50):
        parts.append(f"iowait {iowait_p50:.0f}%")
    if known(reads_p50):
        parts.append(f"server reads {byte_rate(reads_p50)}")
    evidence = ", ".join(parts)
    server_io = (known(reads_p50) and reads_p50 >= 10e6) or (known(iowait_p50) and iowait_p50 >= 10)
    common: dict[str, Any] = {
        "utilisation": f"{busy_p50:.0f}% busy" if known(busy_p50) else None,
        "saturation": f"iowait {iowait_p50:.0f}%" if known(iowait_p50) else None,
        "numbers": numbers,
        **_at(place),
    }
    if known(busy_p50) and busy_p50 >= DISK_BUSY and server_io:
        return Finding(Resource.DISK_IO, FindingStatus.BOTTLENECK, evidence, score=0.7, **common)
    if (known(busy_p50) and busy_p50 >= 50) or (known(iowait_p50) and iowait_p50 >= 10):
        return Finding(Resource.DISK_IO, FindingStatus.CONTRIBUTING, evidence, score=0.3, **common)
    return Finding(Resource.DISK_IO, FindingStatus.RULED_OUT, evidence, **common)
