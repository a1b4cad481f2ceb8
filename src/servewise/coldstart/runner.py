"""One cold start: make caches cold if asked, launch (or attach), watch the log and the endpoint until a
first streamed response, measure warm requests, stop the server (``flows.coldstart`` repeats and stores).

The server is stopped in a ``finally`` on every path out of a run: success, crash, timeout, a
failure of ours, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from servewise.coldstart import caches, verdicts
from servewise.coldstart.markers import (
    BUILTIN_PATTERNS,
    MarkerPattern,
    engine_from_log,
    find_marks,
    match_line,
)
from servewise.coldstart.probe import Endpoint, get_status, port_open, stream_request
from servewise.coldstart.process import (
    FollowedLog,
    LaunchedServer,
    LaunchError,
    ProcessSampler,
    StampedLines,
    process_started_at,
)
from servewise.errors import UsageError
from servewise.protocols.endpoint import listed_models, model_ids
from servewise.records import RequestRecord, Sample
from servewise.results.coldstart import (
    CacheFolder,
    CacheState,
    ColdStart,
    FirstRequest,
    LoadIoRecord,
    StartEvent,
    StartResources,
    StartStatus,
    WarmRequests,
)
from servewise.signals import HELD, held_signals

POLL_S = 0.05
RETRY_S = 0.2


@dataclass(frozen=True)
class ColdstartConfig:
    """Everything one ``servewise coldstart`` invocation needs; ``command`` is empty with ``attach_pid``
    (whose log, if any, is followed from ``attach_log``)."""

    endpoint: Endpoint
    command: tuple[str, ...] = ()
    attach_pid: int | None = None
    attach_log: Path | None = None
    runs: int = 3
    timeout_s: float = 600.0
    warm_requests: int = 5
    user_phases: tuple[MarkerPattern, ...] = ()
    clear_dirs: tuple[Path, ...] = ()
    drop_caches: bool = False
    compile_cache: Path | None = None
    model_path: Path | None = None
    sample_interval_s: float = 0.1
    grace_s: float = 10.0
    log_dir: Path = Path(".")
    env: dict[str, str] | None = field(default=None, repr=False)
    tail_lines: int = 20

    def spec(self) -> dict[str, Any]:
        """The stored spec: what was asked, minus the environment and secrets."""
        return {
            "command": list(self.command),
            "attach_pid": self.attach_pid,
            "attach_log": str(self.attach_log) if self.attach_log else None,
            "runs": self.runs,
            "timeout_s": self.timeout_s,
            "warm_requests": self.warm_requests,
            "ready_url": self.endpoint.ready_url,
            "url": self.endpoint.base_url,
            "api": self.endpoint.api,
            "model": self.endpoint.model,
            "max_tokens": self.endpoint.max_tokens,
            "phases": {p.name: p.regex.pattern for p in self.user_phases},
            "clear": [str(p) for p in self.clear_dirs],
            "drop_caches": self.drop_caches,
            "compile_cache": str(self.compile_cache) if self.compile_cache else None,
            "model_path": str(self.model_path) if self.model_path else None,
            "sample_interval_s": self.sample_interval_s,
        }


@dataclass(frozen=True, slots=True)
class Progress:
    """What the terminal shows while a start is under way."""

    run: int
    runs: int
    stage: str  # what we wait for: port, health, models, first request, warm requests, stopping
    last_marker: str | None  # the latest phase marker the server logged
    elapsed_s: float


ProgressFn = Callable[[Progress], None]


class _LastMark:
    """The latest phase marker in the log so far, read incrementally (the terminal shows it)."""

    def __init__(self, log: StampedLines, patterns: tuple[MarkerPattern, ...]) -> None:
        self.log = log
        self.patterns = patterns
        self.seen = 0
        self.last: str | None = None

    def __call__(self) -> str | None:
        new = self.log.lines_since(self.seen)
        self.seen += len(new)
        for t, line in new:
            for mark in match_line(t, line, self.patterns):
                self.last = mark.name
        return self.last


class ColdstartError(UsageError):
    """A problem found before any server started (bad setup); nothing was launched."""


@dataclass
class _Watch:
    """Mutable state of one start while it is watched."""

    t0: float
    events: list[verdicts.Event] = field(default_factory=list)
    model: str | None = None
    first: RequestRecord | None = None
    attempts: int = 0
    last_error: str = ""
    warm: list[RequestRecord] = field(default_factory=list)

    def mark(self, name: str, at: float | None = None) -> None:
        self.events.append(verdicts.Event(name, (at or time.perf_counter()) - self.t0, "probe"))


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt wherever the main thread is, so the server is stopped.

    Also for SIGINT: left at Python's default, ``asyncio.run`` turns it into cancelling the probe task, and
    a cancellation can be lost (``asyncio.wait_for`` before CPython 3.12 drops one that arrives as its
    connection completes), leaving the probe running to its timeout: seen once in a test run as a
    Ctrl-C ignored for 30 s. Only the main thread can set handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, _raise) for sig in HELD}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def preflight(config: ColdstartConfig) -> None:
    """Refuse before launching anything: a port already taken, caches that cannot be made cold."""
    if config.attach_pid is None and not config.command:
        raise ColdstartError("give the server command after `--`, or --attach PID")
    if config.drop_caches:
        try:
            caches.check_drop_caches()
        except caches.CacheError as exc:
            raise ColdstartError(str(exc)) from None
    if config.attach_pid is None:
        host, port = config.endpoint.host_port
        if asyncio.run(port_open(host, port)):
            raise ColdstartError(
                f"{host}:{port} already answers before the server was started: another server runs there; "
                "stop it, use another port, or measure it with --attach PID"
            )
    else:
        process_started_at_or_error(config.attach_pid)


def process_started_at_or_error(pid: int) -> float:
    try:
        return process_started_at(pid)
    except LaunchError as exc:
        raise ColdstartError(str(exc)) from None


def _prepare_caches(config: ColdstartConfig, env: dict[str, str], files: list[Path]) -> CacheState:
    """Make the asked-for caches cold, then record what is warm as the server starts."""
    cleared = []
    for folder in config.clear_dirs:
        if caches.clear_folder(folder):
            cleared.append(str(folder))
    if config.drop_caches:
        caches.drop_page_cache()
    compile_path = config.compile_cache or caches.default_compile_cache(env)
    resident: int | None = None
    share: float | None = None
    if files:
        resident = caches.resident_bytes(files)
        size = caches.total_bytes(files)
        # fincore counts whole pages, so a file's last partial page can push the share past 1
        share = min(1.0, resident / size) if resident is not None and size else None
    return CacheState(
        compile_cache=CacheFolder.model_validate(caches.folder_state(compile_path)),
        inductor_cache=CacheFolder.model_validate(caches.folder_state(caches.default_inductor_cache(env))),
        cleared=cleared,
        page_cache_dropped=config.drop_caches,
        model_resident_bytes=resident,
        model_resident_share=share,
    )


async def _watch_start(
    config: ColdstartConfig,
    watch: _Watch,
    alive: Callable[[], bool],
    progress: Callable[[str, str | None], None],
    stage_of_log: Callable[[], str | None],
) -> str | None:
    """Probe until a first successful streamed response. Returns None on success, else the failure
    status ("crashed", "timeout"); ``watch.last_error`` says why."""
    endpoint = config.endpoint
    host, port = endpoint.host_port
    deadline = watch.t0 + config.timeout_s
    stage = "port"
    async with aiohttp.ClientSession() as session:
        while True:
            now = time.perf_counter()
            if not alive():
                return "crashed"
            if now > deadline:
                return "timeout"
            progress(stage, stage_of_log())
            if stage == "port" and await port_open(host, port):
                watch.mark("port_open")
                stage = "health"
            if stage == "health":
                status, _ = await get_status(session, endpoint.ready_url, endpoint.headers())
                if status is not None and 200 <= status < 300:
                    watch.mark("health_ok")
                    stage = "models"
                else:
                    watch.last_error = f"health: {'HTTP ' + str(status) if status else 'no answer'}"
            if stage == "models":
                status, body = await get_status(session, endpoint.models_url, endpoint.headers())
                ids = model_ids(listed_models(body)) if status == 200 else []
                if ids:
                    watch.mark("models_listed")
                    watch.model = endpoint.model or ids[0]
                    stage = "first request"
                elif status in (404, 405, 501):  # no OpenAI model list: go straight to a request
                    watch.model = endpoint.model
                    stage = "first request"
                else:
                    watch.last_error = f"models: {'HTTP ' + str(status) if status else 'no answer'}"
            if stage == "first request":
                watch.attempts += 1
                left = max(1.0, deadline - time.perf_counter())
                record = await stream_request(endpoint, watch.model, watch.attempts - 1, left)
                if record.ok:
                    watch.first = record
                    watch.mark("first_token", record.t_first)
                    watch.mark("first_ok", record.t_end)
                    break
                watch.last_error = f"first request: {record.error_detail}"
                await asyncio.sleep(RETRY_S)
                continue
            await asyncio.sleep(POLL_S)
        progress("warm requests", stage_of_log())
        for i in range(config.warm_requests):
            if not alive():
                return "crashed"
            watch.warm.append(await stream_request(endpoint, watch.model, index=i + 1))
    return None


def _request_summary(
    first: RequestRecord | None, warm: list[RequestRecord], attempts: int
) -> tuple[FirstRequest, WarmRequests]:
    def ms(value: float | None) -> float | None:
        return None if value is None else value * 1e3

    ok = [r for r in warm if r.ok]
    steady_e2e = statistics.median(r.e2e for r in ok if r.e2e is not None) if ok else None
    steady_ttft = statistics.median(r.ttft for r in ok if r.ttft is not None) if ok else None
    return (
        FirstRequest(
            attempts=attempts,
            ttft_ms=ms(first.ttft) if first else None,
            e2e_ms=ms(first.e2e) if first else None,
            output_tokens=first.output_tokens if first else None,
        ),
        WarmRequests(
            requests=len(warm),
            failed=len(warm) - len(ok),
            steady_ttft_ms=ms(steady_ttft),
            steady_e2e_ms=ms(steady_e2e),
            first_vs_steady_e2e=(first.e2e / steady_e2e) if first and first.e2e and steady_e2e else None,
        ),
    )


def _resources(sampler: ProcessSampler | None) -> StartResources:
    """Peaks over the start; no fields at all (stored as ``{}``) when the process was never sampled."""
    if sampler is None:
        return StartResources()
    peak = sampler.peak
    first: dict[str, float] = {}
    for s in sampler.samples:
        first.setdefault(s.name, s.value)
    return StartResources(
        peak_rss_bytes=peak.get("rss_bytes"),
        peak_cpu_percent=peak.get("cpu_percent"),
        peak_vram_bytes=peak.get("vram_used_bytes"),
        disk_read_bytes=peak.get("disk_read_bytes"),
        host_disk_read_bytes=(peak["host_disk_read_bytes"] - first["host_disk_read_bytes"])
        if "host_disk_read_bytes" in peak
        else None,
        peak_disk_read_rate=peak.get("disk_read_rate"),
        peak_host_disk_read_rate=peak.get("host_disk_read_rate"),
    )


def measure_start(
    config: ColdstartConfig, index: int, on_progress: ProgressFn | None = None
) -> tuple[ColdStart, list[Sample]]:
    """One start, measured, and the process samples taken during it (stored as samples, not in the
    result). Always returns (status says how it went, "interrupted" on Ctrl-C) and always stops the
    server it launched."""
    env = dict(os.environ if config.env is None else config.env)
    model_path = config.model_path or caches.model_path_from_argv(config.command)
    files = caches.model_files(model_path) if model_path and model_path.exists() else []
    cache_state = _prepare_caches(config, env, files)
    patterns = (*config.user_phases, *BUILTIN_PATTERNS)
    server: LaunchedServer | None = None
    followed: FollowedLog | None = None
    sampler: ProcessSampler | None = None
    status: StartStatus = "ok"
    error: str | None = None
    exit_code: int | None = None

    if config.attach_pid is None:
        server = LaunchedServer(config.command, config.log_dir / f"run-{index}.log", env=env)
        t0 = server.start()  # LaunchError propagates: nothing is running
        pid = server.pid

        def alive() -> bool:
            return server.returncode() is None

    else:
        pid = config.attach_pid
        t0 = process_started_at_or_error(pid)
        attached = psutil.Process(pid)
        if config.attach_log is not None:
            followed = FollowedLog(config.attach_log, config.log_dir / f"run-{index}.log")
            followed.start()  # LaunchError propagates: nothing of ours is running

        def alive() -> bool:
            try:
                return attached.is_running() and attached.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                return False

    log: StampedLines | None = server or followed
    stage_of_log = _LastMark(log, patterns) if log is not None else lambda: None

    watch = _Watch(t0=t0)
    if config.attach_pid is not None:
        watch.events.append(verdicts.Event("attached", time.perf_counter() - t0, "process"))
    started = time.perf_counter()

    def progress(stage: str, last_marker: str | None = None) -> None:
        if on_progress is not None:
            on_progress(Progress(index, config.runs, stage, last_marker, time.perf_counter() - started))

    try:
        sampler = ProcessSampler(pid, t0, config.sample_interval_s, launch=index)
        sampler.start()
        failure = asyncio.run(_watch_start(config, watch, alive, progress, stage_of_log))
        if failure == "crashed":
            status = "crashed"
            exit_code = server.returncode() if server else None
            with_code = f" with code {exit_code}" if exit_code is not None else ""
            error = f"the server exited{with_code} before it answered a request"
        elif failure == "timeout":
            status = "timeout"
            error = f"not ready after {config.timeout_s:g} s ({watch.last_error or 'no answer'})"
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted (Ctrl-C or SIGTERM)"
    except Exception as exc:  # our own failure: still stop the server and report what we have
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        with held_signals() as pending:  # a second Ctrl-C must not leave the server running
            if sampler is not None:
                sampler.stop()
            if followed is not None:
                followed.stop()
            if server is not None:
                progress("stopping")
                server.descendants = sampler.processes() if sampler else []
                code = server.stop(config.grace_s)
                exit_code = exit_code if exit_code is not None else code
        if pending:
            status, error = "interrupted", "interrupted (Ctrl-C or SIGTERM)"
    outcome = _Outcome(index, pid, status, error, exit_code, model_path, files, cache_state)
    return _launch_result(config, outcome, watch, log, sampler, patterns)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How one start ended, and what was known about its model and caches before it began."""

    index: int
    pid: int
    status: StartStatus
    error: str | None
    exit_code: int | None
    model_path: Path | None
    files: list[Path]
    cache_state: CacheState


def _launch_result(
    config: ColdstartConfig,
    outcome: _Outcome,
    watch: _Watch,
    log: StampedLines | None,
    sampler: ProcessSampler | None,
    patterns: tuple[MarkerPattern, ...],
) -> tuple[ColdStart, list[Sample]]:
    marks = find_marks(((t - watch.t0, line) for t, line in log.lines), patterns) if log else []
    events = sorted(
        [*watch.events, *(verdicts.Event(m.name, m.t, "log", m.reported_s) for m in marks)], key=lambda e: e.t
    )
    startup = next((e.t for e in events if e.name == "first_ok"), None)
    series = {}
    if sampler is not None:
        for name in ("disk_read_bytes", "host_disk_read_bytes"):
            series[name] = [(s.t, s.value) for s in sampler.samples if s.name == name]
    model_bytes = caches.total_bytes(outcome.files) if outcome.files else None
    load = verdicts.load_window(events)
    load_io = LoadIoRecord(window=None)  # only the window, None, when no loading window was found
    if load is not None:
        counter = "disk_read_bytes" if series.get("disk_read_bytes") else "host_disk_read_bytes"
        read = verdicts.counter_delta(series.get(counter, []), load[1], load[3])
        load_io = LoadIoRecord(
            window=(load[0], load[2]), load_s=load[3] - load[1], read_bytes=read, counter=counter
        )
    line_of = {m.name: m.line for m in marks}
    first_request, warm = _request_summary(watch.first, watch.warm, watch.attempts)
    start = ColdStart(
        index=outcome.index,
        status=outcome.status,
        error=outcome.error,
        pid=outcome.pid,
        exit_code=outcome.exit_code,
        log_path=str(log.log_path) if log else None,
        log_tail=log.tail(config.tail_lines) if log and outcome.status != "ok" else [],
        engine=engine_from_log(marks),
        model=watch.model,
        startup_s=startup,
        events=[
            StartEvent(
                name=e.name,
                t=e.t,
                source=e.source,
                reported_s=e.reported_s,
                line=line_of.get(e.name) if e.source == "log" else None,
            )
            for e in events
        ],
        phases=verdicts.phases(events) if startup is not None else [],
        first_request=first_request,
        warm=warm,
        resources=_resources(sampler),
        load_io=load_io,
        cache=outcome.cache_state,
        model_path=str(outcome.model_path) if outcome.model_path else None,
        model_bytes=model_bytes,
        device=caches.block_device(outcome.files[0]) if outcome.files else None,
    )
    return start, sampler.samples if sampler else []
