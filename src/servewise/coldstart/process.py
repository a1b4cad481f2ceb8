"""The server process: launch it in its own process group, timestamp its output, sample it, stop it.

Output is read from a pipe (or, for a server started elsewhere, followed in its log file) by a thread
that stamps each line with ``time.perf_counter()`` the moment it arrives and appends it to a log file,
so phase markers get arrival times rather than the server's own clock, and the whole log survives for
the user.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from servewise.errors import UnreachableError
from servewise.records import Sample

SAMPLE_SOURCE = "coldstart"


class LaunchError(UnreachableError):
    """The server command could not be started at all (not found, not executable)."""


class StampedLines:
    """Log lines stamped with ``time.perf_counter()`` as they arrive, split on newlines and carriage
    returns (progress bars), and copied to ``log_path`` for the user."""

    def __init__(self, log_path: Path, on_line: Callable[[float, str], None] | None = None) -> None:
        self.log_path = log_path
        self.on_line = on_line
        self.lines: list[tuple[float, str]] = []
        self._pending = b""
        self._lock = threading.Lock()

    def _feed(self, chunk: bytes, now: float) -> None:
        self._pending += chunk.replace(b"\r", b"\n")
        *complete, self._pending = self._pending.split(b"\n")
        for raw in complete:
            if raw.strip():
                self._add(now, raw)

    def _flush(self) -> None:
        if self._pending.strip():
            self._add(time.perf_counter(), self._pending)
        self._pending = b""

    def _add(self, now: float, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace")
        with self._lock:
            self.lines.append((now, line))
        if self.on_line is not None:
            self.on_line(now, line)

    def lines_since(self, index: int) -> list[tuple[float, str]]:
        with self._lock:
            return self.lines[index:]

    def tail(self, count: int = 20) -> list[str]:
        with self._lock:
            return [line for _, line in self.lines[-count:]]


class LaunchedServer(StampedLines):
    """A server started by us. ``stop()`` is idempotent and always ends the whole process group."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        on_line: Callable[[float, str], None] | None = None,
    ) -> None:
        super().__init__(log_path, on_line)
        self.argv = list(argv)
        self.env = env
        self.t0 = 0.0
        self.proc: subprocess.Popen[bytes] | None = None
        self.descendants: list[psutil.Process] = []
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> float:
        """Spawn; returns the spawn instant on the perf_counter clock."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.t0 = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start {self.argv[0]!r}: {exc.strerror or exc}") from None
        self._reader = threading.Thread(target=self._read, name="coldstart-log", daemon=True)
        self._reader.start()
        return self.t0

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with open(self.log_path, "wb") as log:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                now = time.perf_counter()
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                self._feed(chunk, now)
            self._flush()

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; then kill by PID any descendant
        we saw that left the group (a server that calls setsid for its workers)."""
        if self.proc is None:
            return None
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        if self.proc.poll() is None or _group_alive(pgid):
            _signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and (self.proc.poll() is None or _group_alive(pgid)):
                time.sleep(0.05)
            _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for proc in self.descendants:  # psutil checks the PID was not reused before signalling
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if self._reader is not None:
            self._reader.join(timeout=5)
        return self.proc.returncode


class FollowedLog(StampedLines):
    """The log file of a server started elsewhere (``coldstart --attach PID --log FILE``), followed like
    ``tail -f`` from where it ends at attach time: lines written earlier cannot be timed, so they are not
    read. Polled every 20 ms, so a line's stamp is at most that late; a truncated file is read again."""

    POLL_S = 0.02

    def __init__(self, source: Path, log_path: Path) -> None:
        super().__init__(log_path)
        self.source = source
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        try:
            offset = self.source.stat().st_size
        except OSError as exc:
            raise LaunchError(f"cannot read the server log {self.source}: {exc.strerror or exc}") from None
        self._reader = threading.Thread(target=self._follow, args=(offset,), name="coldstart-follow", daemon=True)
        self._reader.start()

    def _follow(self, offset: int) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            while not self._stop.wait(self.POLL_S):
                with contextlib.suppress(OSError), open(self.source, "rb") as source:
                    if os.fstat(source.fileno()).st_size < offset:  # truncated or rotated
                        offset = 0
                    source.seek(offset)
                    chunk = source.read()
                    if chunk:
                        offset += len(chunk)
                        log.write(chunk)
                        log.flush()
                        self._feed(chunk, time.perf_counter())
            self._flush()

    def stop(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=5)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # zombies of our own group still answer signal 0; treat a group of zombies as gone
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


@dataclass
class _TreeCounters:
    """Per-PID last-seen counters, so a worker that exits keeps its share of the tree totals."""

    read_bytes: dict[int, int] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)
    procs: dict[int, psutil.Process] = field(default_factory=dict)


class ProcessSampler:
    """Samples the server's process tree, the host disk and (with NVML) VRAM at a fixed rate in a thread.

    Sample times are seconds since spawn; each sample carries the ``launch`` label."""

    def __init__(self, root_pid: int, t0: float, interval_s: float = 0.1, launch: int = 1) -> None:
        self.root_pid = root_pid
        self.t0 = t0
        self.interval_s = interval_s
        self.labels = (("launch", str(launch)),)
        self.samples: list[Sample] = []
        self.peak: dict[str, float] = {}
        self._counters = _TreeCounters()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Any = _open_nvml()
        self._io_available = True
        self._last: tuple[float, float | None, float | None, float] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="coldstart-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.sample_once()
            self._stop.wait(max(0.0, self.interval_s - (time.perf_counter() - started)))

    def processes(self) -> list[psutil.Process]:
        """Every process of the tree seen so far (for killing stragglers that left the group)."""
        return list(self._counters.procs.values())

    def _tree(self) -> list[psutil.Process]:
        counters = self._counters
        try:
            root = counters.procs.get(self.root_pid) or psutil.Process(self.root_pid)
            counters.procs[self.root_pid] = root
            found = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        # keep one Process object per PID so cpu and io deltas are per process, not re-created
        return [counters.procs.setdefault(p.pid, p) for p in found]

    def sample_once(self) -> None:
        now = time.perf_counter()
        t = now - self.t0
        rss = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error), proc.oneshot():
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                self._counters.cpu_s[proc.pid] = times.user + times.system
                if self._io_available:
                    try:
                        self._counters.read_bytes[proc.pid] = proc.io_counters().read_bytes
                    except (psutil.AccessDenied, AttributeError, NotImplementedError):
                        self._io_available = False
        cpu_s = sum(self._counters.cpu_s.values())
        proc_read = float(sum(self._counters.read_bytes.values())) if self._io_available else None
        host = psutil.disk_io_counters()
        host_read = float(host.read_bytes) if host is not None else None
        out = [("rss_bytes", float(rss))]
        if self._last is not None:
            last_t, last_proc, last_host, last_cpu = self._last
            dt = max(now - last_t, 1e-6)
            out.append(("cpu_percent", 100.0 * max(0.0, cpu_s - last_cpu) / dt))
            if proc_read is not None and last_proc is not None:
                out.append(("disk_read_rate", max(0.0, proc_read - last_proc) / dt))
            if host_read is not None and last_host is not None:
                out.append(("host_disk_read_rate", max(0.0, host_read - last_host) / dt))
        if proc_read is not None:
            out.append(("disk_read_bytes", proc_read))
        if host_read is not None:
            out.append(("host_disk_read_bytes", host_read))
        if (vram := _vram_used(self._nvml)) is not None:
            out.append(("vram_used_bytes", vram))
        self._last = (now, proc_read, host_read, cpu_s)
        for name, value in out:
            self.samples.append(Sample(t=t, source=SAMPLE_SOURCE, name=name, value=value, labels=self.labels))
            self.peak[name] = max(self.peak.get(name, value), value)


def _open_nvml() -> Any:
    """pynvml (nvidia-ml-py) if installed and a driver answers; None otherwise."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    return pynvml


def _vram_used(nvml: Any) -> float | None:
    """Used memory summed over all GPUs: a server's workers may sit on any of them."""
    if nvml is None:
        return None
    try:
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        return float(sum(nvml.nvmlDeviceGetMemoryInfo(handle).used for handle in handles))
    except Exception:
        return None


def process_started_at(pid: int) -> float:
    """The perf_counter instant the process was created (for ``--attach``), from its wall-clock start."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        raise LaunchError(f"no process with PID {pid}") from None
    except psutil.Error as exc:
        raise LaunchError(f"cannot read process {pid}: {exc}") from None
    return time.perf_counter() - max(0.0, time.time() - created)
