"""A load-generating worker process: paces its slice of the schedule and streams records back.

The contract with the parent (and with any future remote worker, e.g. a Ray actor): the parent sends a
``Job``; the worker answers with ``("records", rows)`` and ``("samples", rows)`` batches forty times
a second and ends with ``("done", stats)``. A ``"stop"`` message from the parent cancels what is in
flight. Nothing else is shared: each worker rebuilds its requests from the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from time import perf_counter
from typing import Protocol

import numpy as np

from servewise.engine.loop import run as run_loop
from servewise.engine.transport import ConnectionPool
from servewise.protocols import ResponseReader, adapter_for
from servewise.records import Phase, RequestRecord, record_to_row
from servewise.spec.models import LoadSpec, RunSpec
from servewise.workload.arrivals import arrival_times
from servewise.workload.plan import PlannedRequest, WorkloadPlan

# Records go to the parent in batches this often. The parent stores a batch in one go, and where it shares
# the worker's core (one-core runs, real-time priority) the worker waits that long: 100 ms batches made
# 5-7 ms of schedule lag p99 at 6,000 req/s, 25 ms batches 1.4-1.8 ms (benchmarks/RESULTS.md).
FLUSH_INTERVAL_S = 0.025
SAMPLE_INTERVAL_S = 0.5
LOOP_PROBE_S = 0.05
MAX_SENDS_WITHOUT_YIELD = 32


class Sink(Protocol):
    """Where a worker's messages go: a pipe to the parent process, or a Ray actor's queue."""

    def send(self, obj: object) -> None: ...


@dataclass(frozen=True)
class Job:
    """One run (or one sweep step) for one worker; its start time ``t0`` follows once every worker is ready."""

    spec: dict
    model: str
    api_key: str | None = field(repr=False)
    worker_id: int
    workers: int
    load: dict
    duration_s: float | None
    max_requests: int | None
    collect_text: bool = False


@dataclass
class WorkerStats:
    worker_id: int
    cpu_s: float = 0.0
    wall_s: float = 0.0
    sent: int = 0
    connections_opened: int = 0
    cap_waits: int = 0
    loop_lag_max_ms: float = 0.0
    stopped: bool = False


class _Worker:
    def __init__(
        self, job: Job, t0: float, commands: Connection, data: Sink, plan: WorkloadPlan
    ) -> None:
        self.job = job
        self.t0 = t0
        self.commands = commands
        self.data = data
        self.spec = RunSpec.model_validate(job.spec)
        self.load = LoadSpec.model_validate(job.load)
        self.plan = plan
        self.adapter = adapter_for(self.spec.target, job.model, job.api_key)
        self.out: list[tuple] = []
        self.samples: list[tuple] = []
        self.stats = WorkerStats(job.worker_id)
        self.stopping = False
        self.idle = asyncio.Event()
        self.loop_lag_window = 0.0
        self.end_at = t0 + job.duration_s if job.duration_s is not None else float("inf")
        # no window given means none: a timer waking a hair before t0 must not make a request warm-up
        warmup, cooldown = self.spec.warmup_s, self.spec.cooldown_s
        self.steady_from = t0 + warmup if warmup > 0 else float("-inf")
        has_cooldown = job.duration_s is not None and cooldown > 0
        self.steady_to = self.end_at - cooldown if has_cooldown else float("inf")

    def phase(self, t: float) -> Phase:
        if t < self.steady_from:
            return Phase.WARMUP
        if t >= self.steady_to:
            return Phase.COOLDOWN
        return Phase.STEADY

    def record(self, index: int, t_sched: float, max_tokens: int) -> RequestRecord:
        return RequestRecord(
            index=index,
            t_sched=t_sched,
            max_tokens=max_tokens,
            worker=self.job.worker_id,
            phase=self.phase(t_sched),
        )

    def on_complete(self, record: RequestRecord) -> None:
        self.out.append(record_to_row(record))
        if self.pool.in_flight == 0:
            self.idle.set()

    async def run(self) -> WorkerStats:
        loop = asyncio.get_running_loop()
        target = self.adapter
        self.pool = ConnectionPool(
            target.host,
            target.port,
            tls=target.tls,
            timeout_s=self.spec.target.timeout_s,
            on_complete=self.on_complete,
            max_connections=self.load.max_concurrency if self.load.kind != "concurrency" else None,
        )
        loop.add_reader(self.commands.fileno(), self._on_parent_message)
        # the loop makes watched descriptors non-blocking; a command must still be read whole
        os.set_blocking(self.commands.fileno(), True)
        cpu0, wall0 = time.process_time(), perf_counter()
        flusher = loop.create_task(self._flush_forever())
        prober = loop.create_task(self._probe_loop())
        if self.load.kind == "sessions":
            self.sender = loop.create_task(_Sessions(self).run())
        elif self.load.kind == "concurrency":
            self.sender = loop.create_task(self._closed_loop())
        else:
            self.sender = loop.create_task(self._open_loop())
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self.sender
            if not self.stopping and self.pool.in_flight:
                self.idle.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.idle.wait(), self.spec.target.timeout_s + 1)
        finally:
            self.pool.close("run stopped" if self.stopping else "run ended")
            loop.remove_reader(self.commands.fileno())
            os.set_blocking(self.commands.fileno(), True)
            flusher.cancel()
            prober.cancel()
            self.stats.cpu_s = time.process_time() - cpu0
            self.stats.wall_s = perf_counter() - wall0
            self.stats.connections_opened = self.pool.opened
            self.stats.cap_waits = self.pool.waited
            self.stats.stopped = self.stopping
            self._flush()
        return self.stats

    def _on_parent_message(self) -> None:
        try:
            while self.commands.poll():
                if self.commands.recv() == "stop":
                    self._stop()
        except (EOFError, OSError):  # the parent is gone: stop rather than spin on a closed pipe
            asyncio.get_running_loop().remove_reader(self.commands.fileno())
            self._stop()

    def _stop(self) -> None:
        self.stopping = True
        self.sender.cancel()
        self.idle.set()

    async def _open_loop(self) -> None:
        job = self.job
        offsets = self.offsets()
        trace = self.plan.trace
        in_a_row = 0
        for index in range(job.worker_id, len(offsets), job.workers):
            t_sched = self.t0 + float(offsets[index])
            planned = self.plan.request(index)
            request = self.adapter.request_bytes(planned)
            delay = t_sched - perf_counter()
            if delay > 0:
                in_a_row = 0
                await asyncio.sleep(delay)
            elif in_a_row >= MAX_SENDS_WITHOUT_YIELD:
                in_a_row = 0
                await asyncio.sleep(0)
            self.idle.clear()
            record = self.record(index, t_sched, planned.max_tokens)
            if trace is not None:
                record.session = trace.session_id(index)
            self.pool.submit(record, request, self.adapter.reader(job.collect_text))
            self.stats.sent += 1
            in_a_row += 1

    def offsets(self) -> np.ndarray:
        return send_offsets(self.job, self.spec, self.load, self.plan)

    async def _closed_loop(self) -> None:
        """Each of this worker's users sends its next request the moment its last one completes."""
        job = self.job
        users = len(range(job.worker_id, self.load.concurrency or 1, job.workers))
        next_index = job.worker_id
        finished = asyncio.Event()

        def issue() -> None:
            nonlocal next_index
            now = perf_counter()
            out_of_requests = job.max_requests is not None and next_index >= job.max_requests
            if now >= self.end_at or out_of_requests:
                if self.pool.in_flight == 0:
                    finished.set()
                return
            planned = self.plan.request(next_index)
            record = self.record(next_index, now, planned.max_tokens)
            next_index += job.workers
            self.stats.sent += 1
            self.pool.submit(
                record, self.adapter.request_bytes(planned), self.adapter.reader(job.collect_text)
            )

        def on_complete(record: RequestRecord) -> None:
            self.out.append(record_to_row(record))
            if not self.stopping:
                issue()

        self.pool._on_complete = on_complete
        await asyncio.sleep(max(0.0, self.t0 - perf_counter()))
        for _ in range(users):
            issue()
        if users:
            await finished.wait()

    async def _flush_forever(self) -> None:
        """Small batches often: a big pickle (or the parent's insert of it) would stall the pacer."""
        labels = (("worker", str(self.job.worker_id)),)
        next_sample = perf_counter()
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            now = perf_counter()
            if now >= next_sample:
                next_sample = now + SAMPLE_INTERVAL_S
                self.samples.append((now, "client", "in_flight", float(self.pool.in_flight), labels))
                self.samples.append((now, "client", "loop_lag_ms", self.loop_lag_window * 1000, labels))
                self.samples.append((now, "client", "connections", float(self.pool.connections), labels))
                self.loop_lag_window = 0.0
            self._flush()

    async def _probe_loop(self) -> None:
        """Event-loop lag: how late a timer fires. A busy client shows it before anything else does."""
        while True:
            expected = perf_counter() + LOOP_PROBE_S
            await asyncio.sleep(LOOP_PROBE_S)
            lag = max(0.0, perf_counter() - expected)
            self.loop_lag_window = max(self.loop_lag_window, lag)
            self.stats.loop_lag_max_ms = max(self.stats.loop_lag_max_ms, lag * 1000)

    def _flush(self) -> None:
        if self.out:
            rows, self.out = self.out, []
            self.data.send(("records", rows))
        if self.samples:
            samples, self.samples = self.samples, []
            self.data.send(("samples", samples))


def send_offsets(job: Job, spec: RunSpec, load: LoadSpec, plan: WorkloadPlan) -> np.ndarray:
    """Send offsets from the run's start: a trace's own times, else the seeded arrival process. The parent
    recomputes them too, to account for the requests of a worker it lost."""
    if load.kind == "trace":
        offsets = plan.trace_offsets()
        if job.duration_s is not None:
            offsets = offsets[offsets < job.duration_s]
        return offsets[: job.max_requests] if job.max_requests is not None else offsets
    rng = np.random.default_rng([spec.workload.seed, 1])
    return arrival_times(load, rng, duration_s=job.duration_s, max_requests=job.max_requests)


@dataclass
class _Conversation:
    """One conversation in flight: its history is built from the answers the server actually streamed."""

    id: int
    turns: int
    user: int | None  # the closed-loop user holding it (None: an open-loop arrival)
    history: list[dict[str, str]] = field(default_factory=list)
    sent: int = 0


class _Sessions:
    """Multi-turn conversations: each turn carries the history so far and goes out ``think`` seconds after
    the previous answer ended. Closed (``users=N``): each user starts a new conversation when one ends.
    Open (``rate=R``): conversations arrive at R per second. A turn whose answer failed ends its
    conversation: no turn is ever built from a broken history."""

    def __init__(self, worker: _Worker) -> None:
        self.w = worker
        self.load = worker.load
        assert self.load.turns is not None
        self.turns = self.load.turns
        self.sent_local = 0
        self.active = 0
        self.begun: dict[int, int] = {}  # conversations each closed-loop user has begun (their ids)
        self.pending: dict[int, tuple[_Conversation, str, ResponseReader]] = {}
        self.finished = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def _open(self, conversation_id: int, user: int | None) -> None:
        plan = self.w.plan
        conversation = _Conversation(conversation_id, plan.conversation_turns(conversation_id, self.turns), user)
        self.active += 1
        self._send(conversation, perf_counter())

    def _open_for(self, user: int, users: int) -> None:
        """User u's k-th conversation is u + k * users: unique over workers, the same in every run."""
        k = self.begun.get(user, 0)
        self.begun[user] = k + 1
        self._open(user + k * users, user)

    def _next_index(self) -> int | None:
        job = self.w.job
        index = job.worker_id + job.workers * self.sent_local
        if job.max_requests is not None and index >= job.max_requests:
            return None
        self.sent_local += 1
        return index

    def _send(self, conversation: _Conversation, t_sched: float) -> None:
        w = self.w
        index = None if perf_counter() >= w.end_at or w.stopping else self._next_index()
        if index is None:
            self._close(conversation, start_next=False)
            return
        conversation.sent += 1
        turn = w.plan.turn(conversation.id, conversation.sent)
        messages = [*w.plan.opening(conversation.id), *conversation.history, {"role": "user", "content": turn.text}]
        planned = PlannedRequest(index=index, prompt=None, messages=messages, input_tokens=None,
                                 max_tokens=turn.max_tokens, session=conversation.id)  # fmt: skip
        record = w.record(index, t_sched, turn.max_tokens)
        record.session, record.turn = conversation.id, conversation.sent
        reader = w.adapter.reader(collect_text=True)
        self.pending[index] = (conversation, turn.text, reader)
        w.idle.clear()
        w.pool.submit(record, w.adapter.request_bytes(planned), reader)
        w.stats.sent += 1

    def on_complete(self, record: RequestRecord) -> None:
        self.w.out.append(record_to_row(record))
        conversation, question, reader = self.pending.pop(record.index)
        answer = reader.text
        if not record.ok or answer is None or conversation.sent >= conversation.turns or self.w.stopping:
            self._close(conversation, start_next=not self.w.stopping)
            return
        conversation.history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        due = perf_counter() + self.load.think_s
        self.loop.call_at(self.loop.time() + self.load.think_s, self._send, conversation, due)

    def _close(self, conversation: _Conversation, *, start_next: bool) -> None:
        self.active -= 1
        users = self.load.users
        if start_next and conversation.user is not None and users and perf_counter() < self.w.end_at:
            self._open_for(conversation.user, users)
            return
        if self.active == 0 and self.arrivals_done:
            self.finished.set()

    async def run(self) -> None:
        w, job = self.w, self.w.job
        w.pool._on_complete = self.on_complete
        self.arrivals_done = False
        await asyncio.sleep(max(0.0, w.t0 - perf_counter()))
        if self.load.users:
            for user in range(job.worker_id, self.load.users, job.workers):
                self._open_for(user, self.load.users)
        else:
            for number, offset in enumerate(w.offsets()):
                if number % job.workers != job.worker_id:
                    continue
                delay = w.t0 + float(offset) - perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if perf_counter() >= w.end_at or w.stopping:
                    break
                self._open(number, None)
        self.arrivals_done = True
        if self.active:
            await self.finished.wait()


def worker_main(commands: Connection, data: Connection) -> None:
    """Entry point of a worker process: the parent decides what Ctrl-C means."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve_jobs(commands, data)


def serve_jobs(commands: Connection, data: Sink) -> None:
    """Run jobs until the parent sends None or goes away (a worker process, or a Ray actor's thread).

    Two one-way pipes: commands in (small, read whole), records and samples out (the parent reads them on
    a thread of its own, so a large batch never meets a non-blocking descriptor half-way). Each job is
    two-phase: the worker builds its plan and adapter, answers ``ready``, and only then gets the shared
    start time, so no worker starts late because another was still importing.
    """
    plans: dict[str, WorkloadPlan] = {}
    while True:
        try:
            job = commands.recv()
        except EOFError:
            return
        if job is None:
            return
        if not isinstance(job, Job):
            continue
        try:
            spec = RunSpec.model_validate(job.spec)
            key = spec.workload.model_dump_json()
            plan = plans.get(key) or plans.setdefault(key, WorkloadPlan(spec.workload))
            # everything built so far lives for the whole run: keep the collector from rescanning it
            gc.collect()
            gc.freeze()
            data.send(("ready", None))
            go = commands.recv()
            if not (isinstance(go, tuple) and go[0] == "go"):
                data.send(("done", WorkerStats(job.worker_id, stopped=True)))
                continue
            stats = run_loop(_Worker(job, go[1], commands, data, plan).run())
            data.send(("done", stats))
        except Exception as exc:  # reported to the parent, which owns the message to the user
            data.send(("failed", f"{type(exc).__name__}: {exc}"))
