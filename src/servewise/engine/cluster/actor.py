"""The Ray actor that hosts one load worker: the worker loop runs on a thread of its own, exactly as in a
local worker process, and the actor relays its messages to the driver as a streaming generator.

Times cross machines here: the driver says when the run starts on its own wall clock (corrected by this
node's estimated offset), and every time in a record is moved onto the driver's run clock before it
leaves, so the driver stores and summarises remote records as it does local ones.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from time import perf_counter

from servewise.engine.worker import Job, serve_jobs
from servewise.records import shift_row


@dataclass(frozen=True)
class Place:
    """Where a worker runs: its Ray node, that node's address, its process."""

    node_id: str
    address: str
    pid: int


class _QueueSink:
    """The worker's outbox: what the local worker would write to its pipe, kept for ``run_job``."""

    def __init__(self) -> None:
        self.messages: queue.SimpleQueue[tuple] = queue.SimpleQueue()

    def send(self, obj: object) -> None:
        assert isinstance(obj, tuple)
        self.messages.put(obj)


class LoadActor:
    """One worker (decorated with ``ray.remote`` by the group, so this module needs no Ray to import)."""

    def __init__(self) -> None:
        commands_in, self._commands = multiprocessing.Pipe(duplex=False)
        self._sink = _QueueSink()
        self._delta = 0.0  # driver run clock minus this process's perf_counter
        threading.Thread(target=serve_jobs, args=(commands_in, self._sink), daemon=True, name="worker").start()

    def place(self) -> Place:
        import ray

        node = ray.get_runtime_context().get_node_id()
        return Place(node_id=node, address=ray.util.get_node_ip_address() or socket.gethostname(), pid=os.getpid())

    def clock(self) -> float:
        return time.time()

    def run_job(self, job: Job) -> Iterator[tuple]:
        """The worker's messages for one job, ``ready`` first and ``done`` (or ``failed``) last."""
        self._commands.send(job)
        while True:
            kind, payload = message = self._sink.messages.get()
            if kind == "records":
                yield kind, [shift_row(row, self._delta) for row in payload]
            elif kind == "samples":
                yield kind, [(t + self._delta, *rest) for t, *rest in payload]
            else:
                yield message
            if kind in ("done", "failed"):
                return

    def go(self, t0_wall: float, t0_driver: float) -> None:
        """Start at ``t0_wall`` on this node's wall clock; the driver calls that instant ``t0_driver``."""
        t0 = perf_counter() + (t0_wall - time.time())
        self._delta = t0_driver - t0
        self._commands.send(("go", t0))

    def stop(self) -> None:
        self._commands.send("stop")
