"""The parent side of a run: start workers, hand them the schedule, store what streams back.

The parent never sits on the measured path: it stores record batches, samples telemetry and draws
progress while the workers keep time. Records are committed as they arrive, so memory stays flat and
Ctrl-C or a crash loses at most the batch in hand.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from time import perf_counter
from typing import Any

import servewise
from servewise.analysis.metrics import MetricsAccumulator
from servewise.analysis.summary import build_summary
from servewise.engine.target import TargetInfo
from servewise.engine.worker import Job, WorkerStats, worker_main
from servewise.records import Sample, record_from_row
from servewise.spec.models import LoadSpec, RunSpec
from servewise.store import RunStore

START_DELAY_S = 0.3


class WorkerFailure(RuntimeError):
    """A worker process raised; the message says what it was."""


class WorkerGroup:
    """Load-generating processes, started once and reused for every step of a sweep."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs = []
        for _ in range(count):
            parent, child = context.Pipe()
            proc = context.Process(target=worker_main, args=(child,), daemon=True, name="servewise-worker")
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def __len__(self) -> int:
        return len(self._procs)

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

        def settle(future: asyncio.Future, value: object = None, error: BaseException | None = None) -> None:
            if not future.done():
                future.set_exception(error) if error else future.set_result(value)

        def reader(i: int, conn: Connection) -> Callable[[], None]:
            def on_readable() -> None:
                try:
                    while conn.poll():
                        kind, payload = conn.recv()
                        if kind == "records":
                            on_records(payload)
                        elif kind == "samples":
                            on_samples(payload)
                        elif kind == "ready":
                            settle(ready[i])
                        elif kind == "done":
                            settle(ready[i])
                            settle(results[i], payload)
                        elif kind == "failed":
                            settle(ready[i], error=WorkerFailure(payload))
                            settle(results[i], error=WorkerFailure(payload))
                except (EOFError, OSError):
                    loop.remove_reader(conn.fileno())
                    settle(ready[i], error=WorkerFailure("a worker process died"))
                    settle(results[i], error=WorkerFailure("a worker process died"))

            return on_readable

        for i, (conn, job) in enumerate(zip(self._conns, jobs, strict=True)):
            conn.send(job)
            loop.add_reader(conn.fileno(), reader(i, conn))
        try:
            await asyncio.gather(*ready)
            t0 = perf_counter() + START_DELAY_S
            if on_start is not None:
                on_start(t0)
            for conn in self._conns:
                conn.send(("go", t0))
            return list(await asyncio.gather(*results))
        finally:
            for conn in self._conns:
                loop.remove_reader(conn.fileno())
                os.set_blocking(conn.fileno(), True)

    def stop(self) -> None:
        for conn in self._conns:
            try:
                conn.send("stop")
            except (BrokenPipeError, OSError):
                continue

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                continue
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


@dataclass
class RunContext:
    """What every run of one invocation shares: the store, the target, the workers, the hooks."""

    store: RunStore
    target: TargetInfo
    api_key: str | None
    environment: dict[str, Any]
    workers: WorkerGroup
    on_record: Callable[[Any], None] | None = None
    on_samples: Callable[[list[Sample]], None] | None = None
    interrupted: bool = False

    def interrupt(self) -> None:
        """Ctrl-C: stop sending, cancel what is in flight, keep everything already measured."""
        self.interrupted = True
        self.workers.stop()


def install_interrupt_handler(context: RunContext) -> None:
    """First Ctrl-C stops the run cleanly; a second one aborts at once."""
    loop = asyncio.get_running_loop()

    def first() -> None:
        context.interrupt()
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, first)


async def execute_run(
    context: RunContext,
    spec: RunSpec,
    *,
    kind: str = "bench",
    parent_id: str | None = None,
    load: LoadSpec | None = None,
    duration_s: float | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """One measured run (a bench, or one step of a sweep); returns its stored summary."""
    load = load or spec.load
    duration = duration_s if duration_s is not None else spec.duration_s
    store = context.store
    spec_data = spec.model_dump(mode="json")
    run_id = store.create_run(
        kind=kind,
        spec=spec_data | {"load": load.model_dump(mode="json"), "duration_s": duration},
        labels=spec.labels,
        tool_version=servewise.__version__,
        target=context.target.to_dict(),
        environment=context.environment,
        parent_id=parent_id,
        run_id=run_id,
    )
    accumulator = MetricsAccumulator(spec.slo)

    def on_records(rows: list[tuple]) -> None:
        records = [record_from_row(row) for row in rows]
        store.append_records(run_id, records)
        if context.on_record is not None:
            for record in records:
                context.on_record(record)

    def on_samples(rows: list[tuple]) -> None:
        samples = [
            Sample(t=t, source=source, name=name, value=value, labels=labels)
            for t, source, name, value, labels in rows
        ]
        store.append_samples(run_id, samples)
        if context.on_samples is not None:
            context.on_samples(samples)

    count = len(context.workers)
    jobs = [
        Job(
            spec=spec_data,
            model=context.target.model,
            api_key=context.api_key,
            worker_id=i,
            workers=count,
            load=load.model_dump(mode="json"),
            duration_s=duration,
            max_requests=spec.requests,
        )
        for i in range(count)
    ]
    stats: list[WorkerStats] = []
    started: list[float] = []
    try:
        stats = await context.workers.run(jobs, on_records, on_samples, on_start=started.append)
    finally:
        accumulator.add_all(store.iter_records(run_id))
        effective = spec.model_copy(update={"load": load, "duration_s": duration})
        summary = build_summary(
            run_id=run_id,
            spec=effective,
            target=context.target.to_dict(),
            accumulator=accumulator,
            window_start=started[0] + spec.warmup_s if spec.warmup_s and started else None,
            worker_cpu_percent=[100 * s.cpu_s / s.wall_s for s in stats if s.wall_s > 0],
            loop_lag_max_ms=max((s.loop_lag_max_ms for s in stats), default=0.0),
            interrupted=context.interrupted or any(s.stopped for s in stats),
            load_description=load.describe(),
        )
        summary["workers"] = {
            "count": count,
            "connections_opened": sum(s.connections_opened for s in stats),
            "cap_waits": sum(s.cap_waits for s in stats),
        }
        store.finish_run(run_id, summary["status"], summary)
    return summary
