"""Rules read from the run itself: did the client keep time, did the link carry it, did requests fail."""

from __future__ import annotations

import math
import re
from typing import Any

from servewise.analysis.client import CPU_BUSY, LAG_LIMIT_MS, late
from servewise.analysis.diagnosis.findings import (
    ERROR_RATE_BOTTLENECK,
    ERROR_RATE_CONTRIBUTING,
    NET_DROPS_PER_S,
    NET_LINK_SATURATED,
    NET_MIN_BYTES,
    NET_RTT_GROWTH_MS,
    Finding,
    Resource,
)
from servewise.analysis.diagnosis.signals import CLIENT, Series, Signals, known, number
from servewise.format import byte_rate, ms_text, percent
from servewise.results import RunResult
from servewise.results.diagnosis import FindingStatus


def load_generator(result: RunResult | None, sig: Signals) -> Finding:
    client = result.client if result is not None else None
    lag_p99 = number(client.schedule_lag_ms.p99 if client else None)
    if math.isnan(lag_p99) and (lag := sig.series("client", "schedule_lag_ms", combine="max")):
        lag_p99 = lag.quantile(0.99)
    loop_lag = sig.series("client", "loop_lag_ms", combine="max")
    loop_lag_p90 = loop_lag.quantile(0.9) if loop_lag else math.nan
    workers = {
        w: s for w, s in sig.by_label("client", "cpu_percent", "worker").items() if w != "parent"
    } or sig.by_label("client", "cpu_percent", "worker")
    busiest = max((s.quantile(0.5) for s in workers.values()), default=math.nan)
    if math.isnan(busiest):
        busiest = number(client.cpu_percent if client else None)
    limited = bool(client and client.limited)
    if client is None and not workers and not loop_lag:
        return Finding(
            Resource.LOAD_GENERATOR, FindingStatus.NO_DATA, "no client self-measurement in this run"
        )
    numbers = {
        "schedule_lag_p99_ms": lag_p99,
        "busiest_worker_cpu_percent": busiest,
        "loop_lag_p90_ms": loop_lag_p90,
    }
    # the one rule bench's summary, the sweep and the gate use too (servewise.analysis.client)
    e2e_p50 = result.metrics.e2e_ms.p50 if result else None
    worst_lag = max((v for v in (lag_p99, loop_lag_p90) if known(v)), default=math.nan)
    lagging = (limited and not known(worst_lag)) or (known(worst_lag) and late(worst_lag, e2e_p50))
    busy = known(busiest) and busiest >= CPU_BUSY
    parts = []
    if known(lag_p99):
        parts.append(f"schedule lag p99 {ms_text(lag_p99)}")
    if known(loop_lag_p90):
        parts.append(f"event-loop lag p90 {ms_text(loop_lag_p90)}")
    if known(busiest):
        parts.append(f"busiest worker CPU {busiest:.0f}% of a core")
    if client is not None and client.limited and client.reason:
        parts.append(f"bench flagged the run client-limited ({client.reason})")
    evidence = ", ".join(parts) or "client flagged limited"
    common: dict[str, Any] = {
        "utilisation": f"{busiest:.0f}% of a core" if known(busiest) else None,
        "saturation": f"lag p99 {ms_text(lag_p99)}" if known(lag_p99) else None,
        "numbers": numbers,
    }
    if lagging and busy:
        return Finding(
            Resource.LOAD_GENERATOR, FindingStatus.BOTTLENECK, evidence, score=0.95, cause="cpu", **common
        )
    loop_on_time = known(loop_lag_p90) and loop_lag_p90 < min(LAG_LIMIT_MS, worst_lag / 4)
    if lagging and loop_on_time and not busy:
        # The event loop ran on time and the CPU idled, yet sends went out late: the wait was outside the
        # client (connection setup or back-pressure from a slow link or a full accept backlog).
        evidence += ": sends waited outside the client (connect / back-pressure), not on its CPU"
        return Finding(
            Resource.LOAD_GENERATOR,
            FindingStatus.CONTRIBUTING,
            evidence,
            score=0.2,
            cause="outside",
            **common,
        )
    if lagging:
        # Behind schedule with CPU to spare and a late loop: starved by a busy host (decided in cross_check)
        # or a client problem we cannot see; a bottleneck until something else explains it.
        return Finding(
            Resource.LOAD_GENERATOR, FindingStatus.BOTTLENECK, evidence, score=0.6, cause="cpu", **common
        )
    if busy:
        return Finding(
            Resource.LOAD_GENERATOR,
            FindingStatus.CONTRIBUTING,
            evidence + ": near its limit",
            score=0.4,
            cause="cpu",
            **common,
        )
    return Finding(
        Resource.LOAD_GENERATOR, FindingStatus.RULED_OUT, evidence + ": kept up with the schedule", **common
    )


def network(sig: Signals) -> Finding:
    """Named only on positive evidence: the link's utilisation against its known speed, drops, TCP
    retransmits, or the connect round trip growing under load. A steady stream of traffic is not evidence
    (a Poisson count per second varies by less than 25% from 16 req/s up)."""
    rx = sig.by_label("host", "net_rx_bytes_per_s", "iface")
    tx = sig.by_label("host", "net_tx_bytes_per_s", "iface")
    rtt = sig.series("client", "connect_rtt_ms")
    if not rx and not tx and len(rtt.values) + (rtt.before is not None) < 2:
        return Finding(Resource.NETWORK, FindingStatus.NO_DATA, "no network counters")

    def busiest(s: Series) -> float:
        return s.quantile(0.9) if s else 0.0

    candidates = [(i, d, s) for d, table in (("rx", rx), ("tx", tx)) for i, s in table.items()]
    # The target's own interface when the sampler knew it; else the busiest non-loopback link that
    # carries real traffic (loopback also carries package mirrors, local databases ...), else loopback.
    target = set(sig.by_label("host", "net_target_iface", "iface"))
    preferred = [c for c in candidates if c[0] in target] or [
        c for c in candidates if c[0] != "lo" and busiest(c[2]) >= NET_MIN_BYTES
    ]
    numbers: dict[str, float] = {}
    parts: list[str] = []
    iface = ""
    util = math.nan
    drops = Series([], [])
    if candidates:
        iface, direction, traffic = max(preferred or candidates, key=lambda x: busiest(x[2]))
        speed = sig.by_label("host", "net_speed_bytes_per_s", "iface").get(iface, Series([], [])).max
        drops = sig.by_label("host", "net_drops_per_s", "iface").get(iface, Series([], []))
        p90 = traffic.quantile(0.9)
        util = p90 / speed if known(speed) and speed > 0 else math.nan
        numbers.update({"busiest_bytes_per_s_p90": p90, "link_bytes_per_s": speed, "link_utilisation": util})
        numbers["drops_per_s_p50"] = drops.quantile(0.5) if drops else math.nan
        parts.append(f"{iface} {direction} {byte_rate(p90)} (p90)")
        if known(util):
            parts.append(f"{percent(util)} of the {byte_rate(speed)} link")
        if numbers["drops_per_s_p50"] > 0:
            parts.append(f"{numbers['drops_per_s_p50']:.0f} drops/s")
    retrans = sig.series("host", "tcp_retrans_ratio")
    retrans_p50 = retrans.quantile(0.5) if retrans else math.nan
    numbers["tcp_retrans_ratio_p50"] = retrans_p50
    if known(retrans_p50):
        parts.append(f"TCP retransmits {retrans_p50 * 100:.2f}% of segments")
    idle_rtt, loaded_rtt = math.nan, math.nan
    if rtt.before is not None and rtt:
        idle_rtt, loaded_rtt = rtt.before[1], rtt.quantile(0.5)
    elif len(rtt.values) >= 2:  # read whole: the session's first probe went out before the load
        idle_rtt, loaded_rtt = rtt.values[0], Series(rtt.times[1:], rtt.values[1:]).quantile(0.5)
    growth = loaded_rtt - idle_rtt
    if known(growth):
        numbers.update({"connect_rtt_idle_ms": idle_rtt, "connect_rtt_p50_ms": loaded_rtt})
        parts.append(f"connect round trip {ms_text(idle_rtt)} idle, {ms_text(loaded_rtt)} under load (p50)")
    evidence = ", ".join(parts)
    common: dict[str, Any] = {
        "utilisation": percent(util) if known(util) else None,
        "saturation": f"round trip +{ms_text(growth)} under load" if known(growth) and growth > 0 else None,
        "errors": f"{numbers['drops_per_s_p50']:.0f} drops/s" if drops else None,
        "numbers": numbers,
        "read_on": CLIENT,
        "source": "psutil NIC counters and a TCP connect probe on this machine"
        if candidates
        else "a TCP connect probe from this machine",
    }
    # Retransmits are counted host-wide; on loopback they come from full accept queues, not from a link.
    on_link = iface != "lo"
    queueing = known(growth) and growth >= NET_RTT_GROWTH_MS and loaded_rtt >= 2 * idle_rtt
    drops_p50 = numbers.get("drops_per_s_p50", math.nan)
    dropping = on_link and known(drops_p50) and drops_p50 > 0
    if (
        (known(util) and util >= NET_LINK_SATURATED)
        or (on_link and known(retrans_p50) and retrans_p50 >= 0.02)
        or (dropping and drops_p50 >= NET_DROPS_PER_S)
    ):
        return Finding(Resource.NETWORK, FindingStatus.BOTTLENECK, evidence, score=0.75, **common)
    if queueing:
        evidence += ": packets queue on the path as the load rises (a slow or shaped link)"
        return Finding(Resource.NETWORK, FindingStatus.BOTTLENECK, evidence, score=0.65, **common)
    slower = known(growth) and growth >= NET_RTT_GROWTH_MS / 4 and loaded_rtt >= 2 * idle_rtt
    busy_link = (known(util) and util >= 0.5) or (on_link and known(retrans_p50) and retrans_p50 >= 0.005)
    if busy_link or slower or dropping:
        return Finding(Resource.NETWORK, FindingStatus.CONTRIBUTING, evidence, score=0.35, **common)
    return Finding(Resource.NETWORK, FindingStatus.RULED_OUT, evidence, **common)


def errors(result: RunResult | None, sig: Signals) -> Finding:
    metrics = result.metrics if result is not None else None
    total = number(metrics.requests_total if metrics else None)
    failed = number(metrics.requests_failed if metrics else None)
    by_class = metrics.errors_by_class if metrics else {}
    server_failed = sig.series("metrics", "requests_failed_total")
    if not known(total) or total <= 0:
        return Finding(Resource.ERRORS, FindingStatus.NO_DATA, "no request counts in the summary")
    failed = 0.0 if math.isnan(failed) else failed
    rate = failed / total
    numbers = {"requests_total": total, "requests_failed": failed, "error_rate": rate}
    evidence = f"{failed:.0f} of {total:.0f} requests failed ({rate * 100:.1f}%)"
    if by_class:
        evidence += ": " + ", ".join(
            f"{cls} {n}" for cls, n in sorted(by_class.items(), key=lambda kv: -kv[1])
        )
    example = metrics.error_examples.get("http_status", "") if metrics else ""
    if status := re.match(r"HTTP (\d{3})", example):
        evidence += f" (e.g. HTTP {status.group(1)})"
    if server_failed:
        numbers["server_failed_per_s"] = server_failed.rate()
    common: dict[str, Any] = {"errors": f"{rate * 100:.1f}% failed", "numbers": numbers}
    if rate >= ERROR_RATE_BOTTLENECK:
        return Finding(
            Resource.ERRORS,
            FindingStatus.BOTTLENECK,
            evidence,
            score=0.7 + 0.3 * min(1.0, rate * 2),
            **common,
        )
    if rate >= ERROR_RATE_CONTRIBUTING:
        return Finding(Resource.ERRORS, FindingStatus.CONTRIBUTING, evidence, score=0.3, **common)
    return Finding(Resource.ERRORS, FindingStatus.RULED_OUT, evidence, **common)
