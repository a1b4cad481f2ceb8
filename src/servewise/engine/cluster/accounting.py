"""What a run on Ray adds to its summary: each node's clock and client check, and the requests of a
worker it lost (counted as error class ``lost``, the run marked ``partial``).

A worker's requests have indices ``worker_id + k * workers`` in the order it sends them, whatever the
load. Open-loop loads know when each was due, so a lost worker's requests due before the driver noticed
and never answered are lost, and those after it unsent. Closed loops and sessions send as answers come
back, so their lost requests are the in-flight count the worker last reported (every half second).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from servewise.analysis.client import client_verdict
from servewise.analysis.metrics import distribution
from servewise.engine.worker import Job, WorkerStats, send_offsets
from servewise.engine.workers import Loss
from servewise.records import ErrorClass, Phase, RequestRecord, record_to_row
from servewise.results import ClientCheck, LostWorker, NodeCheck, PartialRun, RunResult
from servewise.spec.models import LoadSpec, RunSpec
from servewise.store import Store
from servewise.workload.plan import WorkloadPlan

if TYPE_CHECKING:  # the group calls these; they read its places, clocks and losses
    from servewise.engine.cluster.group import RayWorkerGroup

CLOSED_LOOP = ("concurrency", "sessions")


class WorkerLags:
    """Schedule lag per worker, gathered while the runner folds the run's records once."""

    def __init__(self) -> None:
        self.ms: dict[int, array] = {}

    def observe(self, records: Iterable[RequestRecord]) -> Iterator[RequestRecord]:
        for record in records:
            if record.t_send and record.error is not ErrorClass.LOST:
                self.ms.setdefault(record.worker, array("d")).append((record.t_send - record.t_sched) * 1000)
            yield record


def _phase(spec: RunSpec, job: Job, t0: float, t: float) -> Phase:
    if spec.warmup_s > 0 and t < t0 + spec.warmup_s:
        return Phase.WARMUP
    if job.duration_s is not None and spec.cooldown_s > 0 and t >= t0 + job.duration_s - spec.cooldown_s:
        return Phase.COOLDOWN
    return Phase.STEADY


def lost_requests(
    group: RayWorkerGroup, loss: Loss, spec: RunSpec, t0: float, received: set[int]
) -> tuple[list[RequestRecord], int | None]:
    """The lost worker's unanswered requests as records of class ``lost``, and how many it never sent."""
    job = group.jobs[loss.worker]
    load = LoadSpec.model_validate(job.load)
    place = group.places[loss.worker]
    detail = f"worker {loss.worker} on node {place.address} ({place.node_id[:12]}) lost: {loss.reason}"
    due: list[tuple[int, float]]
    unsent: int | None = None
    if load.kind in CLOSED_LOOP:
        issued = len(received) + group.in_flight[loss.worker]
        sequence = (job.worker_id + k * job.workers for k in range(issued))
        due = [(index, group.heard[loss.worker]) for index in sequence]
    else:
        offsets = send_offsets(job, spec, load, WorkloadPlan(spec.workload))
        mine = t0 + offsets[job.worker_id :: job.workers]
        indices = np.arange(job.worker_id, len(offsets), job.workers)
        before = mine < loss.noticed_at
        due = list(zip(indices[before].tolist(), mine[before].tolist(), strict=True))
        unsent = int((~before).sum())
    def lost(index: int, t: float) -> RequestRecord:
        return RequestRecord(index=index, t_sched=t, t_send=t, error=ErrorClass.LOST, error_detail=detail,
                             worker=loss.worker, phase=_phase(spec, job, t0, t))  # fmt: skip

    records = [lost(index, t) for index, t in due if index not in received]
    return records, unsent


def store_losses(group: RayWorkerGroup, store: Store, run_id: str, spec: RunSpec, t0: float) -> PartialRun | None:
    """Store a record for every request the lost workers took with them; what they sent back stays."""
    if not group.losses:
        return None
    gone = {loss.worker for loss in group.losses}
    received: dict[int, set[int]] = {worker: set() for worker in gone}
    for record in store.iter_records(run_id):
        if record.worker in gone:
            received[record.worker].add(record.index)
    workers = []
    for loss in group.losses:
        records, unsent = lost_requests(group, loss, spec, t0, received[loss.worker])
        store.append_rows(run_id, [record_to_row(r) for r in records])
        place = group.places[loss.worker]
        workers.append(LostWorker(worker=loss.worker, node=f"{place.address} ({place.node_id[:12]})",
                                  reason=loss.reason, at_s=round(loss.noticed_at - t0, 3),
                                  lost_requests=len(records), unsent=unsent))  # fmt: skip
    return PartialRun(lost_requests=sum(w.lost_requests for w in workers), workers=workers)


def with_nodes(
    summary: RunResult,
    group: RayWorkerGroup,
    stats: list[WorkerStats],
    lags: WorkerLags,
    partial: PartialRun | None,
    *,
    open_loop: bool,
) -> RunResult:
    """Each node's clock and client check; the run is client-limited when any node is, and names it."""
    gone = {loss.worker for loss in group.losses}
    by_worker = {s.worker_id: s for s in stats}
    nodes = []
    for node_id in dict.fromkeys(p.node_id for p in group.places):
        workers = [i for i, p in enumerate(group.places) if p.node_id == node_id]
        mine = [by_worker[i] for i in workers if i in by_worker and i not in gone]
        lag = np.concatenate([np.frombuffer(lags.ms.get(i, array("d")), dtype=np.float64) for i in workers])
        check = client_verdict(
            distribution(lag),
            [100 * s.cpu_s / s.wall_s for s in mine if s.wall_s > 0],
            open_loop=open_loop,
            loop_lag_max_ms=max((s.loop_lag_max_ms for s in mine), default=0.0),
            e2e_p50_ms=summary.metrics.e2e_ms.p50,
        )
        clock = min((group.clocks[i] for i in workers), key=lambda c: c.rtt_s)
        nodes.append(NodeCheck(node=node_id[:12], address=group.places[workers[0]].address, workers=workers,
                               clock_offset_ms=round(clock.offset_s * 1000, 3),
                               clock_rtt_ms=round(clock.rtt_s * 1000, 3), client=check,
                               lost=all(i in gone for i in workers)))  # fmt: skip
    return summary.model_copy(update={"nodes": nodes, "client": _named(summary.client, nodes), "partial": partial}
                              | ({"status": "partial"} if partial is not None else {}))  # fmt: skip


def _named(client: ClientCheck, nodes: list[NodeCheck]) -> ClientCheck:
    """Limited when any node is, naming it; a pooled verdict no single node reached names the latest one."""
    limited = [f"node {n.address} ({n.node}): {n.client.reason}" for n in nodes if n.client.limited]
    if limited:
        return client.model_copy(update={"limited": True, "reason": "; ".join(limited)})
    if client.limited:
        worst = max(nodes, key=lambda n: n.client.schedule_lag_ms.p99 or 0.0)
        lag = worst.client.schedule_lag_ms.p99 or 0.0
        reason = f"{client.reason} (latest node {worst.address} ({worst.node}): schedule lag p99 {lag:.1f} ms)"
        return client.model_copy(update={"reason": reason})
    return client
