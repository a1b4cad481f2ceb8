"""Load workers, local processes or remote Ray actors, under one contract (``engine/worker.py``).

A group hands each worker its ``Job``, waits until every worker is ready, fixes one start instant and
collects what streams back. How messages travel (pipes here, Ray in ``engine/cluster``) is the only
difference, so storing and summarising have one code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from time import perf_counter
from typing import Any

from servewise.engine.worker import Job, WorkerStats, worker_main
from servewise.errors import InternalFailure
from servewise.records import RequestRecord
from servewise.results import PartialRun, RunResult
from servewise.spec.models import RunSpec
from servewise.store import Store

START_DELAY_S = 0.3


class WorkerFailure(InternalFailure):
    """A worker raised; the message says what it was."""


@dataclass(frozen=True)
class Loss:
    """A worker gone mid-run (its node or actor died): when the parent noticed, and why."""

    worker: int
    noticed_at: float  # on the run clock (the parent's ``perf_counter``)
    reason: str


class Workers(ABC):
    """The parent's side of the worker contract; subclasses say how jobs, the start and stops travel."""

    start_delay_s = START_DELAY_S  # from the ready handshake to the common start

    def __init__(self) -> None:
        self._handler: Callable[[int, tuple], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.losses: list[Loss] = []  # of the last run; only remote workers can be lost

    @property
    def pids(self) -> list[int]:
        """Worker processes on this machine, for the telemetry to sample."""
        return []

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _hand_out(self, jobs: list[Job]) -> None: ...

    @abstractmethod
    def _start(self, t0: float) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def settle_losses(self, store: Store, run_id: str, spec: RunSpec, t0: float) -> PartialRun | None:
        """After the run: store a record for each request a lost worker took with it. Local workers are
        never lost (a process that dies fails the run)."""
        return None

    def observe(self, records: Iterable[RequestRecord]) -> Iterable[RequestRecord]:
        """The run's records as the runner folds them, once; a cluster reads each node's schedule lag here."""
        return records

    def summarise(
        self, summary: RunResult, stats: list[WorkerStats], partial: PartialRun | None, *, paced: bool
    ) -> RunResult:
        """What the group adds to the run's summary: nothing on one machine, each node's checks on a cluster."""
        return summary

    def _deliver(self, index: int, message: tuple) -> None:
        """From a reader thread: hand one message to the event loop (dropped between runs)."""
        loop, handler = self._loop, self._handler
        if loop is not None and handler is not None and not loop.is_closed():
            loop.call_soon_threadsafe(handler, index, message)

    async def run(
        self,
        jobs: list[Job],
        on_records: Callable[[list[tuple]], None],
        on_samples: Callable[[list[tuple]], None],
        on_start: Callable[[float], None] | None = None,
    ) -> list[WorkerStats]:
        """Hand out the jobs, wait until every worker is ready, fix a common start, collect results."""
        loop = asyncio.get_running_loop()
        ready: list[asyncio.Future[None]] = [loop.create_future() for _ in jobs]
        results: list[asyncio.Future[WorkerStats]] = [loop.create_future() for _ in jobs]
        self.losses = []

        def settle(future: asyncio.Future, value: object = None, error: BaseException | None = None) -> None:
            if not future.done():
                future.set_exception(error) if error else future.set_result(value)

        def dispatch(i: int, message: tuple) -> None:
            kind, payload = message
            if kind == "records":
                on_records(payload)
            elif kind == "samples":
                on_samples(payload)
            elif kind == "ready":
                settle(ready[i])
            elif kind == "done":
                settle(ready[i])
                settle(results[i], payload)
            elif kind == "lost":  # the run goes on without it; the runner accounts for its requests
                if not results[i].done():
                    self.losses.append(Loss(i, perf_counter(), payload))
                settle(ready[i])
                settle(results[i], WorkerStats(i))
            elif kind in ("failed", "died"):
                failure = WorkerFailure(payload or "a worker process died")
                settle(ready[i], error=failure)
                settle(results[i], error=failure)

        self._loop, self._handler = loop, dispatch
        try:
            self._hand_out(jobs)
            await asyncio.gather(*ready)
            t0 = perf_counter() + self.start_delay_s
            if on_start is not None:
                on_start(t0)
            self._start(t0)
            return list(await asyncio.gather(*results))
        finally:
            self._handler = None


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawned workers re-import the parent's main module unless it looks anonymous; the CLI's main
    module pulls in Typer, Rich and the report's plotting, none of which a worker needs."""
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {
        name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__
    }
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)


class WorkerGroup(Workers):
    """Load-generating processes on this machine, started once and reused for every step of a sweep.

    Each worker has a command pipe (parent to worker) and a data pipe (worker to parent). A thread per
    worker reads the data pipe with plain blocking reads and hands each message to the event loop, so a
    batch of any size arrives whole however busy the loop is.
    """

    def __init__(self, count: int) -> None:
        super().__init__()
        context = multiprocessing.get_context("spawn")
        self._commands: list[Connection] = []
        self._procs = []
        for i in range(count):
            command_in, command_out = context.Pipe(duplex=False)
            data_in, data_out = context.Pipe(duplex=False)
            proc = context.Process(
                target=worker_main, args=(command_in, data_out), daemon=True, name="servewise-worker"
            )
            with _main_module_hidden():
                proc.start()
            command_in.close()
            data_out.close()
            self._commands.append(command_out)
            self._procs.append(proc)
            threading.Thread(
                target=self._read, args=(i, data_in), daemon=True, name=f"worker-{i}-reader"
            ).start()

    def _read(self, index: int, data: Connection) -> None:
        while True:
            try:
                message = data.recv()
            except (EOFError, OSError):
                message = ("died", None)
            self._deliver(index, message)
            if message[0] == "died":
                return

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def __len__(self) -> int:
        return len(self._procs)

    def _hand_out(self, jobs: list[Job]) -> None:
        for command, job in zip(self._commands, jobs, strict=True):
            command.send(job)

    def _start(self, t0: float) -> None:
        for command in self._commands:
            command.send(("go", t0))

    def stop(self) -> None:
        for command in self._commands:
            try:
                command.send("stop")
            except (BrokenPipeError, OSError):
                continue

    def close(self) -> None:
        """Ask every worker to exit and wait for it; closing twice is harmless."""
        for command in self._commands:
            try:
                command.send(None)
            except (BrokenPipeError, OSError):
                continue
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
