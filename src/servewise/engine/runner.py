"""The parent side of a run: start workers, hand them the schedule, store what streams back.

The parent never sits on the measured path: it stores record batches, samples telemetry and draws
progress while the workers keep time. Records are committed as they arrive, so memory stays flat and
Ctrl-C or a crash loses at most the batch in hand.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import servewise
from servewise.analysis.cache import PrefixReuse, engine_hit_rate
from servewise.analysis.diagnosis import diagnose
from servewise.analysis.metrics import MetricsAccumulator
from servewise.analysis.summary import build_summary
from servewise.engine.target import TargetInfo
from servewise.engine.worker import Job, WorkerStats
from servewise.engine.workers import Workers
from servewise.protocols.endpoint import metrics_url
from servewise.records import Sample
from servewise.results import CacheOutcome, RunResult, WorkerCounts
from servewise.spec.models import LoadSpec, RunSpec
from servewise.store import Store
from servewise.telemetry import TelemetrySession, local_port
from servewise.telemetry.exposition import engine_from_metrics, engine_samples
from servewise.telemetry.promql import PromQLError, engine_series, serving_host_series
from servewise.workload.plan import WorkloadPlan

log = logging.getLogger("servewise.telemetry")


@dataclass(frozen=True)
class TelemetryOptions:
    """What to sample beside the load: the target's /metrics, its process tree, the host, GPUs, and the
    serving host's exporters when it is another machine."""

    enabled: bool = True
    interval_s: float = 1.0
    server_pid: int | None = None
    dcgm_url: str | None = None
    node_exporter_url: str | None = None
    prometheus_url: str | None = None  # the team's Prometheus, read after the run for the serving host
    prometheus_selector: str = ""  # its label matchers for the serving host, e.g. instance=~"gpu-box:.*"
    prometheus_window: str = "1m"  # rate window: at least two of that Prometheus's scrapes


@dataclass
class RunContext:
    """What every run of one invocation shares: the store, the target, the workers, the hooks."""

    store: Store
    target: TargetInfo
    api_key: str | None
    environment: dict[str, Any]
    workers: Workers
    telemetry: TelemetryOptions = TelemetryOptions()
    on_rows: Callable[[list[tuple]], None] | None = None
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


def _theoretical_hit_rate(spec: RunSpec, store: Store, run_id: str) -> float | None:
    """The share of prompt tokens this workload could have served from a prefix cache. Synthetic single
    turns share nothing by construction; a dataset's reuse is unknown without its token counts."""
    workload = spec.workload
    if workload.shared_prefix is None and workload.trace is None and spec.load.kind != "sessions":
        return None if workload.dataset is not None else 0.0
    tree = PrefixReuse()
    for prompt, answered in WorkloadPlan(workload).sent_segments(store.iter_records(run_id)):
        tree.add(prompt)
        if answered is not None:
            tree.remember(answered)
    return tree.hit_rate


def _serving_host_from_prometheus(
    options: TelemetryOptions, start: float, end: float, *, engine_read: bool
) -> list[Sample]:
    """The serving host's node_exporter and dcgm-exporter series over the run, from the team's Prometheus,
    on the run's clock (``perf_counter``), and the engine's own series too where the client could not read
    its /metrics. A Prometheus that cannot answer costs the run nothing but these samples: it is said once,
    and the findings it would have fed read "no data"."""
    assert options.prometheus_url is not None
    offset = time.time() - perf_counter()
    url, selector = options.prometheus_url, options.prometheus_selector
    step = max(options.interval_s, 1.0)
    try:
        found = serving_host_series(url, selector, start + offset, end + offset, step, options.prometheus_window)
        snapshots = [] if engine_read else engine_series(url, selector, start + offset, end + offset, step)
    except PromQLError as exc:
        log.warning("serving-host evidence not read: %s", exc)
        return []
    where = f"via Prometheus {url} {{{selector}}}"
    samples = [Sample(t - offset, source, name, value) for source, name, points in found for t, value in points]
    if any(source == "node" for source, _, _ in found):
        samples.append(Sample(start, "node", "up", 1.0, (("url", where),)))
    engine = engine_from_metrics(s for _, snapshot in snapshots for s in snapshot)
    for t, snapshot in snapshots:
        samples += engine_samples(snapshot, t - offset, engine)
    if engine is not None:
        samples.append(Sample(start, "metrics", "up", 1.0, (("url", where),)))
        log.warning("the engine's /metrics (%s) read from Prometheus %s {%s}", engine, url, selector)
    if not found and engine is None:
        log.warning("Prometheus %s has no node_exporter, DCGM or engine series for {%s} in the run's window",
                    url, selector)  # fmt: skip
    return samples


async def execute_run(
    context: RunContext,
    spec: RunSpec,
    *,
    kind: str = "bench",
    parent_id: str | None = None,
    load: LoadSpec | None = None,
    duration_s: float | None = None,
    run_id: str | None = None,
    last: bool = False,
) -> RunResult:
    """One measured run (a bench, or one step of a sweep); returns its stored result. After the ``last``
    run of an invocation the workers exit before the summary is computed: their copies of the plan (a
    million-request trace is ~100 MB each) are not held while the parent reads every record back."""
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
        store.append_rows(run_id, rows)
        if context.on_rows is not None:
            context.on_rows(rows)

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
    options = context.telemetry
    session = None
    if options.enabled:
        session = TelemetrySession(
            options.interval_s,
            metrics_url=metrics_url(context.target.url),
            server_pid=options.server_pid,
            target_port=local_port(context.target.url),
            client_pids=context.workers.pids,
            dcgm_url=options.dcgm_url,
            node_exporter_url=options.node_exporter_url,
            target_url=context.target.url,
            sink=lambda samples: store.append_samples(run_id, samples),
        )
        await session.start()
    try:
        stats = await context.workers.run(jobs, on_records, on_samples, on_start=started.append)
    finally:
        if session is not None:
            await session.stop()
        if options.enabled and options.prometheus_url and started:
            engine_read = session is not None and session.engine is not None
            from_prometheus = _serving_host_from_prometheus(
                options, started[0], perf_counter(), engine_read=engine_read
            )
            store.append_samples(run_id, from_prometheus)
        effective = spec.model_copy(update={"load": load, "duration_s": duration})
        group = context.workers
        partial = group.settle_losses(store, run_id, effective, started[0]) if started else None
        if last:
            group.close()
        accumulator.add_all(group.observe(store.iter_records(run_id)))
        samples = store.samples(run_id)  # read once: the cache's engine rate and the diagnosis both need them
        cache = CacheOutcome(
            theoretical_hit_rate=_theoretical_hit_rate(effective, store, run_id),
            cached_tokens_ratio=accumulator.cached_tokens_ratio(),
            engine_hit_rate=engine_hit_rate(samples),
        )
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
            cache=cache,
        )
        workers = WorkerCounts(
            count=count,
            connections_opened=sum(s.connections_opened for s in stats),
            cap_waits=sum(s.cap_waits for s in stats),
        )
        summary = summary.model_copy(update={"workers": workers, "load_window": store.load_window(run_id)})
        summary = group.summarise(summary, stats, partial, paced=load.paced)
        if session is not None:
            steps = store.earlier_steps(store.get_run(run_id))  # a sweep's: the batch at other loads
            earlier = [store.samples(step, source="metrics") for step in steps]
            diagnosis = diagnose(
                summary, samples, server_engine=session.engine, earlier=earlier, window=summary.load_window
            )
            summary = summary.model_copy(update={"diagnosis": diagnosis})
        store.finish_run(run_id, summary)
    return summary
