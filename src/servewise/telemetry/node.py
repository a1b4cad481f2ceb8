"""The serving host's own CPU, memory, disk and network, from its Prometheus node_exporter.

When the engine runs on another machine, this machine's psutil counters describe the client. node_exporter
is what teams already run on a GPU box (port 9100); its counters become the same signals the host sampler
writes (``cpu_percent_total``, ``disk_busy_percent``, ``net_rx_bytes_per_s`` ...) under source ``node``, so
the diagnosis reads one set of names wherever the host was read.

Metric names are node_exporter's stable ones (1.x; Debian's 1.5.0 checked): ``node_cpu_seconds_total{cpu,
mode}``, ``node_memory_MemTotal_bytes`` / ``MemAvailable_bytes`` / ``SwapTotal_bytes`` / ``SwapFree_bytes``,
``node_disk_io_time_seconds_total{device}`` / ``read_bytes_total`` / ``written_bytes_total``,
``node_network_receive_bytes_total{device}`` / ``transmit_*`` / ``*_drop_total`` / ``*_errs_total``,
``node_network_speed_bytes{device}``, ``node_netstat_Tcp_RetransSegs`` / ``Tcp_OutSegs``, ``node_load1``.
Counters become rates between two scrapes, so the first scrape of a run only primes them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from servewise.records import Sample
from servewise.telemetry.exposition import RawSeries

SOURCE = "node"
_VIRTUAL_DISKS = re.compile(r"^(loop|ram|zram|dm-|md|sr|fd)")  # node_exporter's own default exclusions
Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class NodeCounters:
    """The previous scrape's counters, so the next one can turn them into rates."""

    t: float | None = None
    values: dict[Key, float] = field(default_factory=dict)


def node_samples(series: list[RawSeries], now: float, previous: NodeCounters, url: str) -> list[Sample]:
    """One scrape of node_exporter as host signals (source ``node``); ``previous`` is updated in place."""
    current = {(s.name, s.labels): s.value for s in series}
    gap = now - previous.t if previous.t is not None else None
    old = previous.values
    previous.t, previous.values = now, current
    samples = [Sample(now, SOURCE, "up", 1.0, (("url", url),))]

    def gauge(name: str) -> float | None:
        return next((v for (n, _), v in current.items() if n == name), None)

    for signal, name in (
        ("mem_total_bytes", "node_memory_MemTotal_bytes"),
        ("mem_available_bytes", "node_memory_MemAvailable_bytes"),
        ("load1", "node_load1"),
    ):
        value = gauge(name)
        if value is not None:
            samples.append(Sample(now, SOURCE, signal, value))
    total, available = gauge("node_memory_MemTotal_bytes"), gauge("node_memory_MemAvailable_bytes")
    if total is not None and available is not None:
        samples.append(Sample(now, SOURCE, "mem_used_bytes", total - available))
    swap_total, swap_free = gauge("node_memory_SwapTotal_bytes"), gauge("node_memory_SwapFree_bytes")
    if swap_total is not None and swap_free is not None:
        samples.append(Sample(now, SOURCE, "swap_used_bytes", swap_total - swap_free))
    cpus = {dict(labels).get("cpu") for (name, labels) in current if name == "node_cpu_seconds_total"}
    if cpus:
        samples.append(Sample(now, SOURCE, "cpu_count", float(len(cpus))))
    for (name, labels), speed in current.items():
        if name == "node_network_speed_bytes" and speed > 0:
            samples.append(
                Sample(now, SOURCE, "net_speed_bytes_per_s", speed, (("iface", dict(labels)["device"]),))
            )
    if gap is None or gap <= 0:
        return samples

    def delta(key: Key) -> float | None:
        before = old.get(key)
        return None if before is None or current[key] < before else current[key] - before

    samples += _cpu(current, delta, now)
    by_disk: dict[str, dict[str, float]] = defaultdict(dict)
    by_iface: dict[str, dict[str, float]] = defaultdict(dict)
    for key in current:
        name, labels = key
        device = dict(labels).get("device")
        moved = delta(key)
        if device is None or moved is None:
            continue
        if name.startswith("node_disk_") and not _VIRTUAL_DISKS.match(device):
            by_disk[device][name] = moved / gap
        elif name.startswith("node_network_"):
            by_iface[device][name] = moved / gap
    busiest = max((d.get("node_disk_io_time_seconds_total", 0.0) for d in by_disk.values()), default=None)
    if busiest is not None:
        samples.append(Sample(now, SOURCE, "disk_busy_percent", min(100.0, 100 * busiest)))
        reads = sum(d.get("node_disk_read_bytes_total", 0.0) for d in by_disk.values())
        writes = sum(d.get("node_disk_written_bytes_total", 0.0) for d in by_disk.values())
        samples.append(Sample(now, SOURCE, "disk_read_bytes_per_s", reads))
        samples.append(Sample(now, SOURCE, "disk_write_bytes_per_s", writes))
    for iface, rates in by_iface.items():
        labels = (("iface", iface),)
        for signal, names in (
            ("net_rx_bytes_per_s", ("node_network_receive_bytes_total",)),
            ("net_tx_bytes_per_s", ("node_network_transmit_bytes_total",)),
            ("net_drops_per_s", ("node_network_receive_drop_total", "node_network_transmit_drop_total")),
            ("net_errors_per_s", ("node_network_receive_errs_total", "node_network_transmit_errs_total")),
        ):
            if any(n in rates for n in names):
                samples.append(Sample(now, SOURCE, signal, sum(rates.get(n, 0.0) for n in names), labels))
    retrans, out = delta(("node_netstat_Tcp_RetransSegs", ())), delta(("node_netstat_Tcp_OutSegs", ()))
    if retrans is not None and out is not None:
        samples.append(Sample(now, SOURCE, "tcp_retrans_per_s", retrans / gap))
        samples.append(Sample(now, SOURCE, "tcp_retrans_ratio", retrans / out if out > 0 else 0.0))
    return samples


def _cpu(current: dict[Key, float], delta: Callable[[Key], float | None], now: float) -> list[Sample]:
    """Busy share of every CPU second the host had since the last scrape, and the iowait share."""
    spent: dict[str, float] = defaultdict(float)
    for key in current:
        name, labels = key
        if name == "node_cpu_seconds_total":
            moved = delta(key)
            if moved is not None:
                spent[dict(labels).get("mode", "")] += moved
    total = sum(spent.values())
    if total <= 0:
        return []
    idle = spent.get("idle", 0.0) + spent.get("iowait", 0.0)
    return [
        Sample(now, SOURCE, "cpu_percent_total", 100 * (1 - idle / total)),
        Sample(now, SOURCE, "cpu_iowait_percent", 100 * spent.get("iowait", 0.0) / total),
    ]
