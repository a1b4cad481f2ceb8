"""bench (and sweep) as a use case: discover the target, start the workers, run, store, return the result.

Progress is shown through a ``ProgressView`` the caller hands in, so the flow itself never draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any, Protocol

from servewise.engine.cluster.group import RayOptions, RayWorkerGroup
from servewise.engine.environment import environment_fingerprint
from servewise.engine.progress import LiveStats
from servewise.engine.runner import RunContext, TelemetryOptions, execute_run, install_interrupt_handler
from servewise.engine.sweep import run_sweep
from servewise.engine.target import discover
from servewise.engine.workers import WorkerGroup, Workers
from servewise.errors import UsageError
from servewise.records import Sample, record_from_row
from servewise.report.prometheus import LiveMetrics
from servewise.results import RunResult
from servewise.secrets import load_api_key
from servewise.spec import RunSpec
from servewise.store import Store, new_run_id
from servewise.telemetry import local_port
from servewise.telemetry.exporters import find_exporters
from servewise.workload.trace import load_trace


class ProgressView(Protocol):
    """Where a long run reports itself: steps of a longer flow, one-off notices, live stats while it sends."""

    def step(self, text: str) -> None: ...

    def notice(self, text: str) -> None: ...

    def live(
        self, stats: LiveStats, label: str, duration_s: float | None
    ) -> AbstractContextManager[None]: ...


class SilentProgress:
    """For callers that show nothing (JSON to stdout, tests, nested flows)."""

    def step(self, text: str) -> None:
        return None

    def notice(self, text: str) -> None:
        return None

    @contextmanager
    def live(self, stats: LiveStats, label: str, duration_s: float | None) -> Iterator[None]:
        yield


async def run_bench(
    spec: RunSpec,
    store: Store,
    *,
    progress: ProgressView | None = None,
    prometheus_port: int | None = None,
    telemetry: TelemetryOptions | None = None,
    ray: RayOptions | None = None,
) -> RunResult:
    """Discover the target, start workers (local processes, or actors on ``ray``), run (or sweep), and
    return the stored result."""
    view = progress or SilentProgress()
    if spec.workload.trace is not None:  # a bad line is refused before anything is stored or started
        trace = spec.workload.trace
        load_trace(trace.path, time_scale=trace.time_scale, block_size=trace.block_size)
    api_key = load_api_key(spec.target.api_key_env, spec.target.api_key_file)
    info = await discover(spec.target, api_key)
    run_id = new_run_id()
    live_metrics = None
    if prometheus_port is not None:
        live_metrics = LiveMetrics(
            run_id, target=spec.target.url, model=info.model, load=spec.load.describe()
        )
        try:
            bound = live_metrics.serve(prometheus_port)
        except OSError as exc:
            raise UsageError(f"--prometheus-port {prometheus_port}: cannot listen ({exc.strerror})") from None
        view.notice(f"live metrics at http://127.0.0.1:{bound}/metrics")
    if spec.target.api.value == "embeddings":
        spec = spec.model_copy(update={"target": spec.target.model_copy(update={"stream": False})})
    stats = LiveStats()
    options = telemetry or TelemetryOptions(interval_s=spec.sample_interval_s)
    if options.enabled:
        options = await _with_serving_host_exporters(options, spec.target.url, view)
    workers = _start_workers(spec, ray, view)
    spec = spec.model_copy(update={"workers": len(workers)})  # the stored spec says what ran
    context = RunContext(
        store=store,
        target=info,
        api_key=api_key,
        environment=environment_fingerprint(),
        workers=workers,
        telemetry=options,
    )

    def on_rows(rows: list[tuple[Any, ...]]) -> None:
        stats.add_rows(rows)
        if live_metrics is not None:
            live_metrics.observe(record_from_row(row) for row in rows)

    def on_samples(samples: list[Sample]) -> None:
        flights = [s.value for s in samples if s.name == "in_flight"]
        if flights:
            stats.in_flight = int(sum(flights[-len(workers) :]))
        if live_metrics is not None:
            live_metrics.update(in_flight=stats.in_flight, completion_rate=stats.rate())

    context.on_rows = on_rows
    context.on_samples = on_samples
    install_interrupt_handler(context)
    sweep = spec.load.kind == "sweep"
    duration = spec.sweep.step_duration_s if sweep else spec.duration_s
    try:
        with view.live(stats, "sweep" if sweep else "bench", duration):
            if sweep:
                return await run_sweep(context, spec, stats, run_id=run_id)
            return await execute_run(context, spec, run_id=run_id, last=True)
    finally:
        workers.close()
        if live_metrics is not None:
            live_metrics.close()


def _start_workers(spec: RunSpec, ray: RayOptions | None, view: ProgressView) -> Workers:
    if ray is None:
        return WorkerGroup(spec.workers)
    group = RayWorkerGroup(ray.address, ray.workers)
    nodes = len({place.node_id for place in group.places})
    view.notice(f"{len(group)} load workers on Ray ({ray.address}), over {nodes} node{'s' if nodes > 1 else ''}")
    return group


async def _with_serving_host_exporters(
    options: TelemetryOptions, url: str, view: ProgressView
) -> TelemetryOptions:
    """For a target on another machine, its node_exporter and dcgm-exporter where they answer; said aloud.
    With the team's Prometheus given, the serving host is read there instead, after the run."""
    if options.prometheus_url:
        view.notice(
            f"the serving host's node_exporter and DCGM series are read from {options.prometheus_url}"
            f" ({{{options.prometheus_selector}}}) after the run"
        )
        return options
    found = await find_exporters(
        url,
        node_exporter_url=options.node_exporter_url,
        dcgm_url=options.dcgm_url,
        local=local_port(url) is not None,
    )
    for note in found.notes:
        view.notice(note)
    return replace(options, node_exporter_url=found.node_exporter_url, dcgm_url=found.dcgm_url)
