"""A real "remote" serving host on this one machine: a Linux network namespace reached over a veth pair.

    with RemoteHost() as host:                 # or the `remote_host` fixture (tests/conftest.py)
        host.address                           # "10.2xx.x.2": the serving host's own address (namespace side)
        host.host_address                      # "10.2xx.x.1": this machine's end of the link
        proc = host.run(["/usr/bin/prometheus-node-exporter", ...])   # runs inside the namespace
        proc.pid                               # the real PID of that program (see run())
        host.shape(rate="4mbit", delay="50ms") # shape the link (see shape())
        host.cpu_hog(cores=1)                  # busy loops "on the serving host"
    # on exit: every started process killed by PID, qdiscs/rules, the veth and the namespace deleted

Topology: one /30 out of 10.200.0.0-10.223.255.255 per host (unused by any address or route here, chosen
under a lock so concurrent pytest sessions don't clash). This machine's end is ``swh<pid>x<n>``; the
namespace end is called ``eth0`` inside the namespace. Names: namespace ``servewise-<pid>-<n>``.

What a node_exporter started inside the namespace sees (it is what makes this a *remote host* for
diagnosis, and where it is not):

* network (``/proc/net/dev``, ``/sys/class/net``): only the namespace's own devices, ``lo`` and ``eth0``
  (the serving host's NIC: exactly the traffic between servewise outside and the server), never this
  side's devices;
* CPU (``/proc/stat``), memory (``/proc/meminfo``), disks (``/proc/diskstats``), load, pressure: the
  whole machine's, because a network namespace virtualises none of them. In this topology that *is* the
  serving host's CPU/memory/disks (the server runs on this machine); a busy loop from ``cpu_hog`` shows
  up there, and so does anything else running on the machine (servewise itself included).

Observed here (node_exporter 1.5.0, Debian ``prometheus-node-exporter`` 1.5.0-1+b6, collectors
cpu, meminfo, diskstats, netdev, loadavg, pressure; see tests/test_remote_host.py which checks them):

* build ``node_exporter_build_info{branch="debian/sid",goarch="amd64",goos="linux",goversion="go1.19.8",
  revision="1.5.0-1+b6",version="1.5.0"} 1``.
* CPU   ``node_cpu_seconds_total{cpu="0",mode="idle"}`` counter, seconds; one series per cpu ("0", "1")
  and mode in idle, iowait, irq, nice, softirq, steal, system, user (guest time is a separate metric,
  ``node_cpu_guest_seconds_total{cpu,mode="nice"|"user"}``, already included in user/nice).
* network ``node_network_receive_bytes_total{device="eth0"}`` / ``node_network_transmit_bytes_total
  {device="eth0"}`` counters (also ``..._packets_total``, ``..._drop_total``, ``..._errs_total``,
  ``..._fifo_total``, ...), label ``device`` only, one series per device of the *namespace*: "eth0" (its
  veth end) only, because netdev's default ``--collector.netdev.device-exclude`` is ``^lo$``.
  receive = requests arriving at the server, transmit = its responses. (No link speed: that is the
  netclass collector, not enabled, and a veth has none.)
* disk  ``node_disk_io_time_seconds_total{device="vda"}`` counter (also ``node_disk_read_bytes_total``,
  ``node_disk_written_bytes_total``, ``node_disk_reads_completed_total``, ``node_disk_writes_completed_
  total``, ``node_disk_io_time_weighted_seconds_total``, ``node_disk_io_now``), label ``device`` only;
  here "vda" (virtio disk) and "zram0" (size 0, all zeros). The default device exclude,
  ``^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\\d+n\\d+p)\\d+$``, drops ram/loop devices and partitions.
  ``node_disk_info{device,major,minor,model,path,revision,serial,wwn} 1`` (empty strings here: no udev).
* memory ``node_memory_MemAvailable_bytes``, ``node_memory_MemTotal_bytes`` gauges, no labels
  (one gauge per /proc/meminfo line, ``node_memory_<Field>_bytes``).
* load  ``node_load1``/``node_load5``/``node_load15`` gauges, no labels;
  pressure ``node_pressure_cpu_waiting_seconds_total`` (no labels), ``node_pressure_memory_
  {waiting,stalled}_seconds_total``, ``node_pressure_io_{waiting,stalled}_seconds_total``.

Link shaping: ``shape(rate=...)`` is a ``tbf`` qdisc. ``shape(delay=...)`` is a ``netem`` qdisc where the
kernel has netem; this machine's kernel has none (``CONFIG_NET_SCH_NETEM`` unset), so the delay falls
back to an NFQUEUE rule (iptables, inside the namespace only) and a small delayer process (this file run
as a script, ``_nfqueue_delay``) that holds each queued packet for the delay before accepting it:
``host.delay_backend`` says which one is in use. (The netem path, alone and as tbf's child qdisc, has not
run on this machine; the NFQUEUE path is what the tests here exercise. The delayer is a Python process
inside the namespace: a few ms of the machine's CPU per thousand packets, which node_exporter counts too.)
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines.servers import LlamaServer

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
NODE_EXPORTER_COLLECTORS = ("cpu", "meminfo", "diskstats", "netdev", "loadavg", "pressure")
NS_IF = "eth0"
_FIRST_SUBNET = int(ipaddress.ip_address("10.200.0.0")) // 4
_N_SUBNETS = (int(ipaddress.ip_address("10.224.0.0")) - int(ipaddress.ip_address("10.200.0.0"))) // 4
_LOCK = Path("/run/lock/servewise-remote-host.lock")
_NS_RE = re.compile(r"^servewise-(\d+)-(\d+)$")
_QUEUE = 7

_counter = 0
_LIVE: set[RemoteHost] = set()


class RemoteHostUnavailable(RuntimeError):
    """Why a RemoteHost cannot be made here (not root, no `ip netns`, ...): the fixture skips with it."""


def unavailable_reason() -> str | None:
    """None when a RemoteHost can be made here, else why not (without making one)."""
    if os.geteuid() != 0:
        return "remote host: needs root (network namespaces, veth, tc)"
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            return f"remote host: `{tool}` not found (apt-get install iproute2)"
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if res.returncode != 0:
        return f"remote host: `ip netns` unavailable: {res.stderr.strip()}"
    return None


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(argv), capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({res.returncode}): {res.stderr.strip()}")
    return res


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_pid(pid: int, grace: float = 5.0) -> None:
    """SIGTERM ``pid``, SIGKILL it if still there after ``grace`` seconds (a PID we started, never a name)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _pid_alive(pid):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for line in _sh("ip", "-4", "-o", "addr", "show").stdout.splitlines():
        m = re.search(r"\binet (\S+)", line)
        if m:
            nets.append(ipaddress.ip_interface(m.group(1)).network)
    for line in _sh("ip", "-4", "route", "show", "table", "all", check=False).stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest in ("broadcast", "local", "unicast", "multicast") and len(line.split()) > 1:
            dest = line.split()[1]
        with contextlib.suppress(ValueError):
            if dest != "default":
                nets.append(ipaddress.ip_network(dest, strict=False))
    return nets


def _free_subnet(seed: int) -> ipaddress.IPv4Network:
    used = _used_networks()
    for k in range(_N_SUBNETS):
        base = (_FIRST_SUBNET + (seed + k) % _N_SUBNETS) * 4
        net = ipaddress.ip_network(f"{ipaddress.ip_address(base)}/30")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /30 left in 10.200.0.0-10.223.255.255")


def sweep_stale() -> list[str]:
    """Delete namespaces ``servewise-<pid>-<n>`` left by a test process that is gone (crashed or killed):
    kill what still runs inside them by PID, then delete them. Returns their names."""
    gone = []
    for line in _sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        for pid in _sh("ip", "netns", "pids", name, check=False).stdout.split():
            _kill_pid(int(pid), grace=2)
        _sh("ip", "netns", "del", name, check=False)
        gone.append(name)
    return gone


class NsProcess:
    """A program started inside the namespace. ``ip netns exec NAME argv...`` enters the namespace and
    *execs* argv (it does not fork), so ``pid`` is the program's own PID; it leads its own process group
    (``start_new_session``), and ``stop()`` signals that group by that PID."""

    def __init__(self, argv: Sequence[str], popen: subprocess.Popen, log_path: Path | None):
        self.argv = list(argv)
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 5.0) -> int | None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # whatever of its group is left
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        return self.popen.returncode

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        return "".join(self.log_path.read_text(errors="replace").splitlines(keepends=True)[-n:])

    def __repr__(self) -> str:
        return f"<NsProcess pid={self.pid} {' '.join(self.argv)[:60]!r}>"


class RemoteHost:
    """A network namespace with its own address on a veth pair; see the module docstring."""

    def __init__(self, log_dir: str | os.PathLike | None = None):
        global _counter
        _counter += 1
        self.n = _counter
        self.name = f"servewise-{os.getpid()}-{self.n}"
        self.host_if = f"swh{os.getpid()}x{self.n}"[:15]
        self.ns_if = NS_IF
        self.address = ""
        self.host_address = ""
        self.subnet: ipaddress.IPv4Network | None = None
        self.processes: list[NsProcess] = []
        self.delay_backend: str | None = None
        self._shaped: list[str] = []  # devices with a root qdisc we added: "host" / "ns"
        self._nfqueue_rules: list[list[str]] = []
        self._delayer: NsProcess | None = None
        self._log_dir = Path(log_dir) if log_dir else None
        self._created = False

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> RemoteHost:
        reason = unavailable_reason()
        if reason:
            raise RemoteHostUnavailable(reason)
        sweep_stale()
        _LIVE.add(self)
        try:
            res = _sh("ip", "netns", "add", self.name, check=False)
            if res.returncode != 0:
                raise RemoteHostUnavailable(f"remote host: `ip netns add` failed: {res.stderr.strip()}")
            self._created = True
            _LOCK.parent.mkdir(parents=True, exist_ok=True)
            with open(_LOCK, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # choose + assign the /30 atomically across test sessions
                self.subnet = _free_subnet(os.getpid() * 16 + self.n)
                hosts = list(self.subnet.hosts())
                self.host_address, self.address = str(hosts[0]), str(hosts[1])
                _sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
                    "netns", self.name)  # fmt: skip
                _sh("ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_if)
            _sh("ip", "-n", self.name, "addr", "add", f"{self.address}/30", "dev", self.ns_if)
            _sh("ip", "link", "set", self.host_if, "up")
            _sh("ip", "-n", self.name, "link", "set", self.ns_if, "up")
            _sh("ip", "-n", self.name, "link", "set", "lo", "up")
            self._wait_link()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_link(self, timeout: float = 10.0) -> None:
        """Until the namespace answers on its address (a refused TCP connect is an answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.address, 9), timeout=0.5):
                    return
            except ConnectionRefusedError:
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name}: {self.address} does not answer over {self.host_if}")

    def close(self) -> None:
        """Kill every process started inside (by PID, then any other PID still in the namespace),
        remove the shaping, the veth and the namespace. Safe to call twice."""
        _LIVE.discard(self)
        with contextlib.suppress(Exception):
            self.unshape()
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()
        for proc in self.processes:
            with contextlib.suppress(OSError):
                if proc.log_path and proc.log_path.stat().st_size == 0:
                    proc.log_path.unlink()
        self.processes.clear()
        if self._created:
            for pid in _sh("ip", "netns", "pids", self.name, check=False).stdout.split():
                _kill_pid(int(pid), grace=2)
            _sh("ip", "link", "del", self.host_if, check=False)  # takes its peer with it
            _sh("ip", "netns", "del", self.name, check=False)
            self._created = False

    def __enter__(self) -> RemoteHost:
        return self if self._created else self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- processes ----------------------------------------------------------------------------
    def exec_prefix(self) -> list[str]:
        """argv prefix that runs a command inside the namespace (it execs: the PID stays the command's)."""
        return ["ip", "netns", "exec", self.name]

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, log_name: str | None = None,
        **popen,
    ) -> NsProcess:  # fmt: skip
        """Start ``argv`` inside the namespace, in its own process group; stopped by PID on close().
        Returns once the program runs inside the namespace under ``proc.pid`` (``ip netns exec`` has exec'd
        it). stdout+stderr go to a log file (``log_name`` or the program's name) unless ``popen`` says
        otherwise."""
        log_path = None
        if "stdout" not in popen:
            log_dir = self._log_dir or Path(
                os.environ.get("SERVEWISE_ENGINE_LOG_DIR") or os.environ.get("TMPDIR") or "/tmp"
            )
            log_path = log_dir / f"{self.name}-{log_name or Path(argv[0]).name}-{len(self.processes)}.log"
            popen["stdout"] = open(log_path, "w")  # noqa: SIM115 (closed below, the child keeps its copy)
            popen.setdefault("stderr", subprocess.STDOUT)
        popen.setdefault("stdin", subprocess.DEVNULL)
        popen.setdefault("start_new_session", True)
        full_env = None
        if env is not None:
            full_env = dict(os.environ)
            full_env.update(env)
        try:
            p = subprocess.Popen([*self.exec_prefix(), *argv], env=full_env, **popen)
        finally:
            if log_path is not None:
                popen["stdout"].close()
        proc = NsProcess(argv, p, log_path)
        self.processes.append(proc)
        self._wait_exec(proc)
        return proc

    def _wait_exec(self, proc: NsProcess, timeout: float = 10.0) -> None:
        """Until ``ip netns exec`` has entered the namespace and exec'd the program (so ``proc.pid`` is the
        program inside the namespace), or the program has already exited."""
        ip_bin = os.path.realpath(shutil.which("ip") or "ip")
        target = os.path.realpath(shutil.which(proc.argv[0]) or proc.argv[0])
        deadline = time.monotonic() + timeout
        while proc.running():
            with contextlib.suppress(OSError):
                exe = os.path.realpath(f"/proc/{proc.pid}/exe")
                if self.pid_in_namespace(proc.pid) and (exe != ip_bin or target == ip_bin):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc}: not running inside {self.name} after {timeout:.0f}s")
            time.sleep(0.005)

    def netns_inode(self) -> int:
        return os.stat(f"/run/netns/{self.name}").st_ino

    def pid_in_namespace(self, pid: int) -> bool:
        """True when ``pid`` runs inside this namespace (its /proc/PID/ns/net is the namespace's)."""
        try:
            return os.stat(f"/proc/{pid}/ns/net").st_ino == self.netns_inode()
        except OSError:
            return False

    def namespace_pids(self) -> list[int]:
        return [int(p) for p in _sh("ip", "netns", "pids", self.name, check=False).stdout.split()]

    def cpu_hog(self, cores: int = 1) -> list[NsProcess]:
        """``cores`` busy loops inside the namespace, each its own process (stop them with ``.stop()``, or
        they go on close()). A namespace shares the machine's CPUs: what saturates is the machine's CPU,
        which in this topology is the serving host's CPU, and that is what a node_exporter inside reports
        (``node_cpu_seconds_total`` is the whole machine's /proc/stat)."""
        return [self.run(["/bin/sh", "-c", "while :; do :; done"], log_name="cpu-hog") for _ in range(cores)]

    # -- link shaping -------------------------------------------------------------------------
    def _tc(self, side: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if side == "host":
            return _sh("tc", *args[:3], self.host_if, *args[3:], check=check)
        return _sh("tc", "-n", self.name, *args[:3], self.ns_if, *args[3:], check=check)

    def shape(self, rate: str | None = None, delay: str | None = None, side: str = "host") -> None:
        """Shape the link; replaces any earlier shaping. ``rate`` like "4mbit" (tc units: bit, kbit, mbit,
        gbit, bps = bytes/s ...; a tbf with a burst of 1/250 s of the rate, at least 8 KB, 1 s of queue);
        ``delay`` like "50ms", added once per packet in the shaped direction, so it adds that much to
        every round trip (TCP connect RTT, time to first byte).

        ``side``: "host" shapes what flows *to* the server (requests; this machine's veth end egress),
        "ns" what flows *from* it (responses; the namespace end egress), "both" both directions (a
        delay then counts twice per round trip)."""
        if side not in ("host", "ns", "both"):
            raise ValueError(f"side must be host, ns or both, not {side!r}")
        if delay is not None:
            _parse_duration(delay)
        if rate is not None:
            _rate_bits(rate)
        self.unshape()
        sides = ["host", "ns"] if side == "both" else [side]
        use_netem = delay is not None and self._netem_available()
        try:
            for s in sides:
                if rate:
                    self._shaped.append(s)
                    self._tc(s, "qdisc", "add", "dev", "root", "handle", "1:", *_tbf(rate))
                if delay is not None and use_netem:
                    if not rate:
                        self._shaped.append(s)
                    parent = ["parent", "1:1"] if rate else ["root"]
                    self._tc(s, "qdisc", "add", "dev", *parent, "handle", "10:", "netem", "delay", delay)
            if delay is not None:
                if not use_netem:
                    self._nfqueue_delay(delay, sides)
                self.delay_backend = "netem" if use_netem else "nfqueue"
        except BaseException:
            self.unshape()
            raise

    def unshape(self) -> None:
        """Remove every qdisc, rule and delayer that shape() added."""
        iptables = _iptables()
        for rule in self._nfqueue_rules:
            _sh("ip", "netns", "exec", self.name, iptables, "-D", *rule, check=False)
        self._nfqueue_rules.clear()
        if self._delayer is not None:
            self._delayer.stop(grace=2)
            with contextlib.suppress(ValueError):
                self.processes.remove(self._delayer)
            self._delayer = None
        for s in self._shaped:
            self._tc(s, "qdisc", "del", "dev", "root", check=False)
        self._shaped.clear()
        self.delay_backend = None

    def qdiscs(self) -> dict[str, str]:
        """``tc qdisc show`` of both ends, for checks and failure messages."""
        return {s: self._tc(s, "qdisc", "show", "dev", check=False).stdout.strip() for s in ("host", "ns")}

    def _netem_available(self) -> bool:
        if os.environ.get("SERVEWISE_REMOTE_HOST_NO_NETEM", "0") not in ("", "0"):
            return False
        res = self._tc("host", "qdisc", "add", "dev", "root", "handle", "ffee:", "netem", "delay", "1ms",
                       check=False)  # fmt: skip
        if res.returncode == 0:
            self._tc("host", "qdisc", "del", "dev", "root", check=False)
            return True
        return False

    def _nfqueue_delay(self, delay: str, sides: list[str]) -> None:
        iptables = _iptables()
        if not shutil.which(iptables):
            raise RemoteHostUnavailable(
                "remote host: a delay needs the kernel's netem qdisc or else iptables (make system-deps)"
            )
        delay_s = _parse_duration(delay)
        self._delayer = self.run(
            [sys.executable, str(Path(__file__).resolve()), "_nfqueue_delay", str(_QUEUE), repr(delay_s)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        line = self._delayer.popen.stdout.readline()
        if line.strip() != "ready":
            rest = line + (self._delayer.popen.stdout.read() if not self._delayer.running() else "")
            self.unshape()
            raise RuntimeError(f"nfqueue delayer did not start: {rest.strip()}")
        # inside the namespace: packets arriving on eth0 (= host side egress) / leaving on eth0 (= ns side)
        chains = {"host": ["INPUT", "-i"], "ns": ["OUTPUT", "-o"]}
        for s in sides:
            chain, flag = chains[s]
            rule = [chain, flag, self.ns_if, "-j", "NFQUEUE", "--queue-num", str(_QUEUE), "--queue-bypass"]
            _sh("ip", "netns", "exec", self.name, iptables, "-I", *rule)
            self._nfqueue_rules.append(rule)

    def __repr__(self) -> str:
        return f"<RemoteHost {self.name} {self.address} via {self.host_if}>"


def _iptables() -> str:
    return "iptables-legacy" if shutil.which("iptables-legacy") else "iptables"


_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
               "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12}  # fmt: skip


def _rate_bits(rate: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-z]*)\s*", rate.lower())
    if not m or (m.group(2) or "bit") not in _RATE_UNITS:
        raise ValueError(f"not a rate: {rate!r} (like 4mbit)")
    return float(m.group(1)) * _RATE_UNITS[m.group(2) or "bit"]


def _tbf(rate: str) -> list[str]:
    burst = max(8192, int(_rate_bits(rate) / 8 / 250))
    return ["tbf", "rate", rate, "burst", str(burst), "latency", "1s"]


def _parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s)?\s*", text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (like 50ms)")
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1e-6}[m.group(2)]  # tc: bare = usec


def start_node_exporter(
    host: RemoteHost, port: int = 9100, collectors: Sequence[str] = NODE_EXPORTER_COLLECTORS,
    extra_args: Sequence[str] = (), ready_timeout: float = 30.0,
) -> tuple[NsProcess, str]:  # fmt: skip
    """node_exporter inside ``host`` on ``host.address:port`` with only ``collectors`` (and none of its own
    go_/promhttp_ metrics); returns (process, "http://ADDR:PORT/metrics") once it answers."""
    if not os.access(NODE_EXPORTER, os.X_OK):
        raise RemoteHostUnavailable(f"{NODE_EXPORTER} not installed (make system-deps)")
    argv = [
        NODE_EXPORTER, f"--web.listen-address={host.address}:{port}", "--web.disable-exporter-metrics",
        "--collector.disable-defaults", *(f"--collector.{c}" for c in collectors), *extra_args,
    ]  # fmt: skip
    proc = host.run(argv, log_name="node-exporter")
    url = f"http://{host.address}:{port}/metrics"
    deadline = time.monotonic() + ready_timeout
    while True:
        if not proc.running():
            raise RuntimeError(f"node_exporter exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and b"node_" in r.read():
                    return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(
                f"node_exporter not answering at {url} after {ready_timeout:.0f}s:\n{proc.log_tail()}"
            )
        time.sleep(0.1)


class RemoteLlamaServer(LlamaServer):
    """The `llama_server` fixture's llama-server + tiny model (same command line: ``LlamaServer.command``),
    run inside ``remote``'s namespace and listening on ``remote.address:port``. Started and stopped like
    every EngineServer (own process group, stopped by PID: ``ip netns exec`` execs llama-server, so
    ``pid`` is llama-server's)."""

    def __init__(self, remote: RemoteHost, port: int = 8080, **kwargs):
        super().__init__(**kwargs)
        self.remote = remote
        self.host, self.port = remote.address, port
        self.base_url = f"http://{self.host}:{self.port}"
        self.api_base = self.base_url + "/v1"

    def command(self) -> list[str]:
        return [*self.remote.exec_prefix(), *super().command()]


@atexit.register
def _close_all_at_exit() -> None:
    for host in list(_LIVE):
        with contextlib.suppress(Exception):
            host.close()


# -- NFQUEUE delayer (run inside the namespace as a script) --------------------------------------
_NETLINK_NETFILTER = 12
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLMSG_ERROR = 2
_NFNL_SUBSYS_QUEUE = 3
_NFQNL_MSG_PACKET, _NFQNL_MSG_CONFIG, _NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
_NFQA_PACKET_HDR, _NFQA_VERDICT_HDR = 1, 2
_NFQA_CFG_CMD, _NFQA_CFG_PARAMS, _NFQA_CFG_QUEUE_MAXLEN, _NFQA_CFG_MASK, _NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
_NFQNL_CFG_CMD_BIND, _NFQNL_COPY_META, _NFQA_CFG_F_FAIL_OPEN, _NF_ACCEPT = 1, 1, 1, 1


def _nla(kind: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\0" * (-len(data) % 4)


def _nfq_msg(msg_type: int, queue: int, attrs: bytes, flags: int, seq: int) -> bytes:
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", queue) + attrs
    return struct.pack("=IHHII", 16 + len(body), (_NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0) + body


def _nfqueue_delay_main(queue: int, delay_s: float) -> None:
    """Bind NFQUEUE ``queue`` in this network namespace; accept every queued packet ``delay_s`` after it
    was queued, in order. Verdicts are batch verdicts ("all ids up to N"), so a packet whose message was
    lost to a full socket buffer is still released with the next one."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE (root)
    sock.bind((0, 0))
    seq = 0

    def request(msg_type: int, attrs: bytes) -> None:
        nonlocal seq
        seq += 1
        sock.send(_nfq_msg(msg_type, queue, attrs, _NLM_F_REQUEST | _NLM_F_ACK, seq))
        data = sock.recv(65536)
        kind = struct.unpack_from("=H", data, 4)[0]
        err = struct.unpack_from("=i", data, 16)[0] if kind == _NLMSG_ERROR else 0
        if err:
            raise OSError(-err, f"nfqueue config {msg_type}: {os.strerror(-err)}")

    request(_NFQNL_MSG_CONFIG, _nla(_NFQA_CFG_CMD, struct.pack("!BxH", _NFQNL_CFG_CMD_BIND, socket.AF_INET)))
    request(_NFQNL_MSG_CONFIG, _nla(_NFQA_CFG_PARAMS, struct.pack("!IB", 0, _NFQNL_COPY_META)))
    request(_NFQNL_MSG_CONFIG, _nla(_NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 65536)))
    request(_NFQNL_MSG_CONFIG, _nla(_NFQA_CFG_MASK, struct.pack("!I", _NFQA_CFG_F_FAIL_OPEN))
            + _nla(_NFQA_CFG_FLAGS, struct.pack("!I", _NFQA_CFG_F_FAIL_OPEN)))  # fmt: skip
    print("ready", flush=True)
    pending: deque[tuple[float, int]] = deque()
    while True:
        now = time.monotonic()
        release = None
        while pending and pending[0][0] <= now:
            release = pending.popleft()[1]
        if release is not None:
            seq += 1
            sock.send(_nfq_msg(_NFQNL_MSG_VERDICT_BATCH, queue,
                               _nla(_NFQA_VERDICT_HDR, struct.pack("!II", _NF_ACCEPT, release)),
                               _NLM_F_REQUEST, seq))  # fmt: skip
        timeout = max(0.0, pending[0][0] - now) if pending else None
        if not select.select([sock], [], [], timeout)[0]:
            continue
        while True:
            try:
                data = sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: messages lost; the batch verdict releases their packets anyway
                continue
            arrived = time.monotonic()
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if length < 16:
                    break
                if kind == (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_PACKET:
                    a = off + 20  # nlmsghdr (16) + nfgenmsg (4)
                    while a + 4 <= off + length:
                        alen, atype = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        if atype & 0x3FFF == _NFQA_PACKET_HDR:
                            pending.append((arrived + delay_s, struct.unpack_from("!I", data, a + 4)[0]))
                            break
                        a += (alen + 3) & ~3
                off += (length + 3) & ~3


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "_nfqueue_delay":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _nfqueue_delay_main(int(sys.argv[2]), float(sys.argv[3]))
