"""Host and process samplers (psutil). Synchronous and cheap; the session runs them off the event loop.

Rates (bytes/s, switches/s) are deltas between two ticks divided by the measured gap, so a late tick
does not inflate them. A sampler's first tick only primes its counters and returns nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from servewise.records import Sample

if TYPE_CHECKING:
    from psutil._ntuples import sdiskio, snetio

log = logging.getLogger("servewise.telemetry")

_SKIP_DISKS = ("loop", "ram", "zram", "sr", "fd")


def _read_tcp_counters() -> tuple[int, int] | None:
    """(OutSegs, RetransSegs) from /proc/net/snmp; None off Linux."""
    try:
        lines = Path("/proc/net/snmp").read_text().splitlines()
    except OSError:
        return None
    tcp = [line.split()[1:] for line in lines if line.startswith("Tcp:")]
    if len(tcp) < 2:
        return None
    row = dict(zip(tcp[0], tcp[1], strict=False))
    return int(row.get("OutSegs", 0)), int(row.get("RetransSegs", 0))


class HostSampler:
    """Whole machine: CPU per core, load, memory, disk, network per interface, TCP retransmits."""

    source = "host"

    def __init__(self, target_iface: str | None = None) -> None:
        self.target_iface = target_iface
        self._last_t: float | None = None
        self._disk: sdiskio | None = None
        self._disk_busy: dict[str, int] = {}
        self._net: dict[str, snetio] = {}
        self._tcp: tuple[int, int] | None = None

    def collect(self) -> list[Sample]:
        now = time.perf_counter()
        per_core = psutil.cpu_percent(percpu=True)
        times = psutil.cpu_times_percent()
        disk = psutil.disk_io_counters(perdisk=False)
        disks = psutil.disk_io_counters(perdisk=True) or {}
        net = psutil.net_io_counters(pernic=True)
        tcp = _read_tcp_counters()
        gap = None if self._last_t is None else now - self._last_t
        samples: list[Sample] = []
        if gap and gap > 0:
            samples += self._cpu(now, per_core, times)
            samples += self._memory(now)
            samples += self._disks(now, gap, disk, disks)
            samples += self._network(now, gap, net)
            if tcp and self._tcp:
                out, retrans = tcp[0] - self._tcp[0], tcp[1] - self._tcp[1]
                samples.append(Sample(now, self.source, "tcp_retrans_per_s", retrans / gap))
                samples.append(
                    Sample(now, self.source, "tcp_retrans_ratio", retrans / out if out > 0 else 0.0)
                )
        self._last_t, self._disk, self._net, self._tcp = now, disk, net, tcp
        self._disk_busy = {name: getattr(d, "busy_time", 0) for name, d in disks.items()}
        return samples

    def _cpu(self, now: float, per_core: list[float], times: object) -> list[Sample]:
        samples = [
            Sample(now, self.source, "cpu_percent", v, (("cpu", str(i)),)) for i, v in enumerate(per_core)
        ]
        samples.append(Sample(now, self.source, "cpu_percent_total", sum(per_core) / max(len(per_core), 1)))
        samples.append(Sample(now, self.source, "cpu_count", float(len(per_core))))
        samples.append(Sample(now, self.source, "cpu_iowait_percent", float(getattr(times, "iowait", 0.0))))
        samples.append(Sample(now, self.source, "load1", os.getloadavg()[0]))
        return samples

    def _memory(self, now: float) -> list[Sample]:
        mem, swap = psutil.virtual_memory(), psutil.swap_memory()
        return [
            Sample(now, self.source, "mem_total_bytes", float(mem.total)),
            Sample(now, self.source, "mem_used_bytes", float(mem.total - mem.available)),
            Sample(now, self.source, "mem_available_bytes", float(mem.available)),
            Sample(now, self.source, "swap_used_bytes", float(swap.used)),
        ]

    def _disks(
        self, now: float, gap: float, disk: sdiskio | None, disks: dict[str, sdiskio]
    ) -> list[Sample]:
        samples: list[Sample] = []
        if disk is not None and self._disk is not None:
            samples.append(
                Sample(
                    now, self.source, "disk_read_bytes_per_s", (disk.read_bytes - self._disk.read_bytes) / gap
                )
            )
            samples.append(
                Sample(
                    now,
                    self.source,
                    "disk_write_bytes_per_s",
                    (disk.write_bytes - self._disk.write_bytes) / gap,
                )
            )
        busiest = 0.0
        for name, d in disks.items():
            if name.startswith(_SKIP_DISKS) or name not in self._disk_busy:
                continue
            busy_ms = getattr(d, "busy_time", 0) - self._disk_busy[name]
            busiest = max(busiest, min(100.0, busy_ms / 10.0 / gap))
        if self._disk_busy:
            samples.append(Sample(now, self.source, "disk_busy_percent", busiest))
        return samples

    def _network(self, now: float, gap: float, net: dict[str, snetio]) -> list[Sample]:
        samples: list[Sample] = []
        try:
            speeds = {name: st.speed for name, st in psutil.net_if_stats().items() if st.isup}
        except OSError:
            speeds = {}
        for name, cur in net.items():
            prev = self._net.get(name)
            if prev is None or name not in speeds:
                continue
            labels = (("iface", name),)
            samples.append(
                Sample(
                    now, self.source, "net_rx_bytes_per_s", (cur.bytes_recv - prev.bytes_recv) / gap, labels
                )
            )
            samples.append(
                Sample(
                    now, self.source, "net_tx_bytes_per_s", (cur.bytes_sent - prev.bytes_sent) / gap, labels
                )
            )
            drops = (cur.dropin - prev.dropin) + (cur.dropout - prev.dropout)
            errors = (cur.errin - prev.errin) + (cur.errout - prev.errout)
            samples.append(Sample(now, self.source, "net_drops_per_s", drops / gap, labels))
            samples.append(Sample(now, self.source, "net_errors_per_s", errors / gap, labels))
            if speeds[name] > 0:  # Mb/s; 0 = unknown (loopback, some virtual links)
                samples.append(
                    Sample(now, self.source, "net_speed_bytes_per_s", speeds[name] * 125_000.0, labels)
                )
            if name == self.target_iface:  # the interface the target's traffic takes, for diagnosis
                samples.append(Sample(now, self.source, "net_target_iface", 1.0, labels))
        return samples


@dataclass
class _ProcessMeter:
    """One process's counters between ticks (psutil keeps cpu_percent state per Process object)."""

    proc: psutil.Process
    io: tuple[int, int] | None = None
    ctx: int | None = None
    primed: bool = False
    cores: int = field(default=0)

    def read(self, gap: float | None) -> dict[str, float] | None:
        """Current values and rates, or None on the priming tick or when the process is gone."""
        try:
            with self.proc.oneshot():
                cpu = self.proc.cpu_percent()
                rss = self.proc.memory_info().rss
                threads = self.proc.num_threads()
                ctx = self.proc.num_ctx_switches().involuntary
                try:
                    counters = self.proc.io_counters()
                    io: tuple[int, int] | None = (counters.read_bytes, counters.write_bytes)
                except (psutil.AccessDenied, AttributeError):
                    io = None
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None
        values: dict[str, float] | None = None
        if self.primed and gap:
            values = {"cpu_percent": cpu, "rss_bytes": float(rss), "threads": float(threads)}
            if self.ctx is not None:
                values["involuntary_ctx_switches_per_s"] = (ctx - self.ctx) / gap
            if io is not None and self.io is not None:
                values["read_bytes_per_s"] = (io[0] - self.io[0]) / gap
                values["write_bytes_per_s"] = (io[1] - self.io[1]) / gap
        self.io, self.ctx, self.primed = io, ctx, True
        return values


def _cores_of(proc: psutil.Process) -> int:
    try:
        return len(proc.cpu_affinity() or []) or psutil.cpu_count() or 1
    except (psutil.Error, AttributeError):
        return psutil.cpu_count() or 1


class ProcessTreeSampler:
    """The server: its root process and every descendant (vLLM's engine core, uvicorn workers ...).

    Emits the tree's total (``cpu_percent`` where 100 = one core), the busiest single process (a Python
    server pinned by its GIL shows 100 there while the tree total looks modest), and the cores it may use.
    """

    source = "process"

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._meters: dict[int, _ProcessMeter] = {}
        self._last_t: float | None = None
        self._gone_logged = False
        self._cores = 0

    def collect(self) -> list[Sample]:
        now = time.perf_counter()
        gap = None if self._last_t is None else now - self._last_t
        self._last_t = now
        try:
            root = self._meters[self.pid].proc if self.pid in self._meters else psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            if not self._gone_logged:
                log.debug("server process %s not readable; process sampler idle", self.pid)
                self._gone_logged = True
            return []
        if not self._cores:
            self._cores = _cores_of(root)
        alive = {p.pid for p in tree}
        self._meters = {pid: m for pid, m in self._meters.items() if pid in alive}
        totals: dict[str, float] = {}
        busiest = 0.0
        for proc in tree:
            meter = self._meters.setdefault(proc.pid, _ProcessMeter(proc))
            values = meter.read(gap)
            if values is None:
                continue
            busiest = max(busiest, values["cpu_percent"])
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value
        if not totals:
            return []
        samples = [Sample(now, self.source, key, value) for key, value in totals.items()]
        samples.append(Sample(now, self.source, "cpu_percent_max_proc", busiest))
        samples.append(Sample(now, self.source, "procs", float(len(tree))))
        samples.append(Sample(now, self.source, "cpu_cores_available", float(self._cores)))
        return samples


class ClientSampler:
    """The load generator: the bench parent (``worker=parent``) and each worker process (``worker=i``)."""

    source = "client"

    def __init__(self, client_pids: list[int], parent_pid: int | None = None) -> None:
        pids = [(str(i), pid) for i, pid in enumerate(client_pids)]
        if parent_pid is not None:
            pids.append(("parent", parent_pid))
        self._meters: dict[str, _ProcessMeter] = {}
        for worker, pid in pids:
            try:
                self._meters[worker] = _ProcessMeter(psutil.Process(pid))
            except psutil.Error:
                log.debug("client process %s not readable", pid)
        self._last_t: float | None = None
        self._cores = psutil.cpu_count() or 1

    def collect(self) -> list[Sample]:
        now = time.perf_counter()
        gap = None if self._last_t is None else now - self._last_t
        self._last_t = now
        samples: list[Sample] = []
        for worker, meter in self._meters.items():
            values = meter.read(gap)
            if values is None:
                continue
            labels = (("worker", worker),)
            samples.append(Sample(now, self.source, "cpu_percent", values["cpu_percent"], labels))
            samples.append(Sample(now, self.source, "rss_bytes", values["rss_bytes"], labels))
            if "involuntary_ctx_switches_per_s" in values:
                samples.append(
                    Sample(
                        now,
                        self.source,
                        "involuntary_ctx_switches_per_s",
                        values["involuntary_ctx_switches_per_s"],
                        labels,
                    )
                )
            if not meter.cores:
                meter.cores = _cores_of(meter.proc)
            samples.append(Sample(now, self.source, "cpu_cores_available", float(meter.cores), labels))
        return samples


def route_interface(host: str) -> str | None:
    """The local interface traffic to ``host`` leaves by: loopback, a directly attached subnet, else the
    default route (from /proc/net/route). None when the host does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, family=socket.AF_INET)
        target = ipaddress.ip_address(infos[0][4][0])
    except (OSError, IndexError, ValueError):
        return None
    for name, addrs in psutil.net_if_addrs().items():
        for addr in addrs:
            if addr.family != socket.AF_INET or not addr.netmask:
                continue
            if target.is_loopback and ipaddress.ip_address(addr.address).is_loopback:
                return name
            if target in ipaddress.ip_network(f"{addr.address}/{addr.netmask}", strict=False):
                return name
    try:
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 1 and fields[1] == "00000000":
                return fields[0]
    except OSError:
        pass
    return None


def find_listening_pid(port: int) -> int | None:
    """The process that listens on ``port`` locally, topmost when several share the socket (gunicorn)."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        log.debug("cannot list sockets to find the server on port %s", port)
        return None
    pids = {
        c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    }
    for pid in sorted(pids):
        try:
            if psutil.Process(pid).ppid() not in pids:
                return pid
        except psutil.Error:
            continue
    return None
