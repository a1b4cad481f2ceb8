"""The driver's side of a run on Ray: connect, place one actor per CPU over the nodes, time them, relay.

Each actor is pinned to a bundle of one placement group (strategy SPREAD, one CPU a bundle), so the
workers land on as many nodes as the cluster has and no two share a CPU. A thread per worker reads its
streaming generator and hands each message to the event loop, as a local worker's pipe reader does.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from time import perf_counter
from types import ModuleType
from typing import Any

from servewise.engine.cluster.accounting import WorkerLags, store_losses, with_nodes
from servewise.engine.cluster.actor import LoadActor, Place
from servewise.engine.worker import Job, WorkerStats
from servewise.engine.workers import Workers
from servewise.errors import UnreachableError, UsageError
from servewise.records import RequestRecord
from servewise.results import PartialRun, RunResult
from servewise.spec.models import RunSpec
from servewise.store import Store

INSTALL_HINT = "--ray needs Ray: pip install 'servewise[ray]'"
PLACEMENT_TIMEOUT_S = 30.0
ACTOR_START_TIMEOUT_S = 120.0
CLOCK_ROUNDS = 7


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def _reachable(address: str) -> None:
    """Ray waits minutes on an address where nothing listens: refuse it in seconds, in one line."""
    if address.startswith("ray://"):
        raise UsageError(
            f"--ray {address!r}: Ray Client addresses are not supported; run servewise on a node of the cluster"
            " (the head pod on KubeRay) with --ray auto"
        )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray {address!r}: give auto or HOST:PORT (the head's GCS port, 6379 by default)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UnreachableError(f"no Ray cluster at {address}: {exc.strerror or exc}") from None


def connect(ray: ModuleType, address: str) -> None:
    """Join an existing cluster (``auto``: the one on this machine or in RAY_ADDRESS)."""
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, namespace="servewise")
    except ConnectionError as exc:
        raise UnreachableError(f"no Ray cluster for --ray {address}: {str(exc).splitlines()[0]}") from None
    _messages_to_stderr(ray)


def _messages_to_stderr(ray: ModuleType) -> None:
    """Ray prints its raylets' messages ("a worker died ...") on the driver's stdout, where ``--json -``
    writes the result; they belong on stderr. Ray has no setting for it, so its printer is wrapped."""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    printer = getattr(worker, "print_to_stdstream", None)
    if worker is None or printer is None:
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        printer(data | {"is_err": True}, ignore_prefix)

    worker.print_to_stdstream = to_stderr


@dataclass(frozen=True)
class RayOptions:
    """``bench --ray``: the cluster to run the load workers on, and how many (None: one per free CPU)."""

    address: str
    workers: int | None = None


@dataclass(frozen=True)
class Clock:
    """A node's wall clock against the driver's: offset over the fastest of a few round trips."""

    offset_s: float
    rtt_s: float


def estimate_clock(rounds: list[tuple[float, float, float]]) -> Clock:
    """Cristian's estimate from (sent, remote time, received) triples, all wall-clock seconds."""
    sent, remote, received = min(rounds, key=lambda r: r[2] - r[0])
    return Clock(offset_s=remote - (sent + received) / 2, rtt_s=received - sent)


class RayWorkerGroup(Workers):
    """``count`` load actors over the cluster's nodes (None: one per CPU the cluster has free)."""

    start_delay_s = 1.0  # every actor learns the start instant over the network before it comes

    def __init__(self, address: str, count: int | None) -> None:
        super().__init__()
        self._ray = ray = import_ray()
        connect(ray, address)
        self._closed = False
        self.jobs: list[Job] = []
        self.clocks: list[Clock] = []
        self.heard: list[float] = []  # when each worker's last message came, on the run clock
        self.in_flight: list[int] = []  # each worker's in-flight count, as it last reported it
        self._lags = WorkerLags()
        try:
            self._place_actors(count)
        except BaseException:
            self.close()
            raise

    def _place_actors(self, count: int | None) -> None:
        ray = self._ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        free = int(ray.available_resources().get("CPU", 0))
        count = count or free
        if count < 1:
            raise UsageError("the Ray cluster has no CPU free for a load worker")
        self._group = placement_group([{"CPU": 1}] * count, strategy="SPREAD")
        try:
            ray.get(self._group.ready(), timeout=PLACEMENT_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise UsageError(
                f"the Ray cluster has {free} CPUs free; --workers {count} needs one each"
            ) from None
        actor_class = ray.remote(num_cpus=1, max_concurrency=4)(LoadActor)
        self._actors: list[Any] = [
            actor_class.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(self._group, placement_group_bundle_index=i)
            ).remote()
            for i in range(count)
        ]
        self.places: list[Place] = ray.get([a.place.remote() for a in self._actors], timeout=ACTOR_START_TIMEOUT_S)
        self._driver_node = ray.get_runtime_context().get_node_id()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.places if p.node_id == self._driver_node]

    def __len__(self) -> int:
        return len(self._actors)

    def _clock(self, actor: Any) -> Clock:
        rounds = []
        for _ in range(CLOCK_ROUNDS):
            sent = time.time()
            remote = self._ray.get(actor.clock.remote())
            rounds.append((sent, remote, time.time()))
        return estimate_clock(rounds)

    def _hand_out(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.clocks = [self._clock(actor) for actor in self._actors]
        self.heard = [perf_counter()] * len(jobs)
        self.in_flight = [0] * len(jobs)
        for i, (actor, job) in enumerate(zip(self._actors, jobs, strict=True)):
            stream = actor.run_job.options(num_returns="streaming").remote(job)
            threading.Thread(target=self._read, args=(i, stream), daemon=True, name=f"ray-worker-{i}").start()

    def _read(self, index: int, stream: Iterator[Any]) -> None:
        """Relay one actor's messages; its death (or its node's) ends the stream as a loss."""
        exceptions = self._ray.exceptions
        try:
            for ref in stream:
                message = self._ray.get(ref)
                self.heard[index] = perf_counter()
                if message[0] == "samples":
                    flights = [value for _, _, name, value, _ in message[1] if name == "in_flight"]
                    self.in_flight[index] = int(flights[-1]) if flights else self.in_flight[index]
                self._deliver(index, message)
        except exceptions.RayTaskError as exc:
            self._deliver(index, ("failed", str(exc).splitlines()[0]))
        except exceptions.RayError as exc:
            self._deliver(index, ("lost", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))

    def _start(self, t0: float) -> None:
        t0_wall = time.time() + (t0 - perf_counter())
        gone = {loss.worker for loss in self.losses}
        for i, (actor, clock) in enumerate(zip(self._actors, self.clocks, strict=True)):
            if i not in gone:
                actor.go.remote(t0_wall + clock.offset_s, t0)

    def settle_losses(self, store: Store, run_id: str, spec: RunSpec, t0: float) -> PartialRun | None:
        return store_losses(self, store, run_id, spec, t0)

    def observe(self, records: Iterable[RequestRecord]) -> Iterable[RequestRecord]:
        self._lags = WorkerLags()
        return self._lags.observe(records)

    def summarise(
        self, summary: RunResult, stats: list[WorkerStats], partial: PartialRun | None, *, paced: bool
    ) -> RunResult:
        return with_nodes(summary, self, stats, self._lags, partial, open_loop=paced)

    def stop(self) -> None:
        gone = {loss.worker for loss in self.losses}
        for i, actor in enumerate(self._actors):
            if i not in gone:
                actor.stop.remote()

    def close(self) -> None:
        """Kill every actor, free the placement group, leave the cluster; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        from ray.util.placement_group import remove_placement_group

        for actor in getattr(self, "_actors", []):
            ray.kill(actor)
        if hasattr(self, "_group"):
            remove_placement_group(self._group)
        ray.shutdown()
