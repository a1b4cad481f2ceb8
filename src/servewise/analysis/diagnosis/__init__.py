"""Name the bottleneck of a run from its result and telemetry (Brendan Gregg's USE method).

For every resource: utilisation, saturation and errors, the numbers behind them, and a verdict
(bottleneck / contributing / ruled out / no data). Then one primary bottleneck with a confidence and the
next steps for that class. Pure functions over plain data: ``servewise diagnose RUN`` recomputes the same
answer from the store.

Parts: ``signals`` (samples as series), ``findings`` (resources, thresholds), ``rules_client`` and
``rules_server`` (one rule per resource), ``advice`` (next steps); this module puts them together.
The load generator is judged first: when the client itself fell behind, every other number of the run
is a measurement of the client, so it is the primary whatever else is busy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from servewise.analysis.diagnosis.advice import next_steps
from servewise.analysis.diagnosis.findings import (
    NO_BOTTLENECK,
    RESOURCE_LABELS,
    WAITING_OFTEN,
    Finding,
    Resource,
)
from servewise.analysis.diagnosis.rules_client import errors, load_generator, network
from servewise.analysis.diagnosis.rules_server import (
    admission_queue,
    disk_io,
    gpu_bandwidth,
    gpu_compute,
    kv_capacity,
    server_cpu,
)
from servewise.analysis.diagnosis.signals import CLIENT, SERVER, Place, Signals, known, serving_host
from servewise.analysis.diagnosis.step import StepScaling, step_scaling
from servewise.format import percent
from servewise.records import Sample
from servewise.results import DiagnosisResult, RunResult
from servewise.results.diagnosis import FindingStatus
from servewise.telemetry.exposition import RawSeries, engine_from_metrics

__all__ = ["NO_BOTTLENECK", "RESOURCE_LABELS", "FindingStatus", "Resource", "diagnose", "infer_engine"]

_HARDWARE = (
    Resource.KV_CAPACITY,
    Resource.SERVER_CPU,
    Resource.GPU_MEMORY_BANDWIDTH,
    Resource.GPU_COMPUTE,
    Resource.DISK_IO,
    Resource.NETWORK,
)


def cross_check(findings: dict[str, Finding], accelerator_seen: bool, step: StepScaling | None) -> None:
    """Verdicts that depend on each other: a symptom is demoted under the resource that causes it, and a
    queue is only the engine's own limit where the accelerator behind it was seen to have headroom (on a GPU
    or CPU reading, or in the engine's step time staying flat as its batch grew)."""
    _explain_client(findings)
    queue, kv = findings[Resource.ADMISSION_QUEUE], findings[Resource.KV_CAPACITY]
    hardware_bottleneck = any(findings[r].verdict is FindingStatus.BOTTLENECK for r in _HARDWARE)
    if queue.verdict is FindingStatus.BOTTLENECK and hardware_bottleneck:
        queue.verdict = FindingStatus.CONTRIBUTING
        queue.evidence += "; a symptom of the saturated resource, not a limit of its own"
    if queue.verdict is FindingStatus.BOTTLENECK and kv.verdict is FindingStatus.BOTTLENECK:
        queue.verdict = FindingStatus.CONTRIBUTING
    if queue.verdict is FindingStatus.BOTTLENECK and step is not None and step.saturated:
        queue.verdict = FindingStatus.CONTRIBUTING
        queue.evidence += (
            "; the step time grew with the batch: the hardware behind the queue is saturated, and more"
            " sequences would not add throughput"
        )
        if not accelerator_seen and not hardware_bottleneck:
            _name_saturated_accelerator(findings, step)
    elif queue.verdict is FindingStatus.BOTTLENECK and not accelerator_seen and not (step and step.headroom):
        queue.evidence += (
            "; the accelerator behind the queue was not read, so a saturated GPU looks the same"
            " (give --dcgm URL)"
        )
        queue.numbers["accelerator_seen"] = 0.0
        queue.score = min(queue.score, 0.5)


def _explain_client(findings: dict[str, Finding]) -> None:
    """A client behind schedule with CPU to spare (score < 0.9) is the bottleneck only until something on the
    server explains its lateness or shows that the load was not what it limited."""
    client = findings[Resource.LOAD_GENERATOR]
    if client.verdict is not FindingStatus.BOTTLENECK or client.score >= 0.9:
        return
    cpu, net = findings[Resource.SERVER_CPU], findings[Resource.NETWORK]
    queue, kv = findings[Resource.ADMISSION_QUEUE], findings[Resource.KV_CAPACITY]
    backlog = queue.numbers.get("waiting_fraction", math.nan)
    host_cpu = cpu.numbers.get("host_cpu_percent_p50", math.nan)
    if cpu.verdict is FindingStatus.BOTTLENECK:
        _demote(client, "the client is starved by the server's CPU load on the same host, not busy itself")
        client.cause = "starved"
    elif net.verdict is FindingStatus.BOTTLENECK:
        _demote(client, "its sends waited behind the slow link (back-pressure), not on its CPU")
        client.cause = "outside"
    elif kv.verdict is FindingStatus.BOTTLENECK or (known(backlog) and backlog >= WAITING_OFTEN):
        # A client that limits the load leaves the server idle between its sends; this server held requests
        # it could not start yet, so the stalls cost timing accuracy, not load (real vLLM on CPU: event-loop
        # stalls of 0.5 s beside 5.6 preemptions/s).
        held = (
            "its KV cache was full"
            if kv.verdict is FindingStatus.BOTTLENECK
            else f"requests waited {percent(backlog)} of the time"
        )
        _demote(client, f"the server held a backlog ({held}), so the stalls blur timings, not the load")
    elif known(host_cpu) and host_cpu >= 90:
        client.evidence += f"; starved: the host CPU is {host_cpu:.0f}% busy with other processes"
        client.numbers["host_cpu_percent_p50"] = host_cpu
        client.cause = "starved"


def _demote(finding: Finding, why: str) -> None:
    finding.verdict, finding.score = FindingStatus.CONTRIBUTING, 0.3
    finding.evidence += f"; {why}"


def _name_saturated_accelerator(findings: dict[str, Finding], step: StepScaling) -> None:
    """A remote engine whose step time grows with its batch, and no hardware reading: its accelerator is the
    limit, though which of its parts (compute, memory bandwidth; or the cores of a CPU build) is not seen."""
    gpu = findings[Resource.GPU_COMPUTE]
    if findings[Resource.GPU_MEMORY_BANDWIDTH].verdict is not FindingStatus.NO_DATA:
        return
    gpu.verdict, gpu.score = FindingStatus.BOTTLENECK, 0.6
    gpu.evidence = (
        f"{step.text()}: tokens per second barely grow with the batch (with no GPU reading; --dcgm tells"
        " compute from memory bandwidth, and a CPU build shows in --node-exporter)"
    )
    gpu.utilisation = None
    batch, slower = step.running_hi / step.running_lo, step.step_hi_ms / step.step_lo_ms
    gpu.saturation = f"step time x{slower:.2f} for a batch x{batch:.2f}"
    gpu.numbers.update(step.numbers())
    gpu.read_on, gpu.source = SERVER, "the engine's /metrics (step time against running requests)"


def _accelerator_seen(host: tuple[str, Place] | None, findings: dict[str, Finding]) -> bool:
    """Whether the hardware a queue waits on was read: GPU samples (DCGM or NVML), or, for a target on
    this machine where NVML found no GPU, the server's CPU, which then does the model's work."""
    if any(
        findings[r].verdict is not FindingStatus.NO_DATA
        for r in (Resource.GPU_COMPUTE, Resource.GPU_MEMORY_BANDWIDTH)
    ):
        return True
    local = host is not None and host[0] == "host"
    return local and findings[Resource.SERVER_CPU].verdict is not FindingStatus.NO_DATA


def _place(finding: Finding, sig: Signals) -> None:
    """Where a finding's evidence was read, for the rules that read one fixed kind of source."""
    if finding.verdict is FindingStatus.NO_DATA or finding.read_on is not None:
        return
    resource = finding.resource
    if resource == Resource.LOAD_GENERATOR:
        finding.read_on, finding.source = CLIENT, "servewise's own send times and worker CPU"
    elif resource == Resource.ERRORS:
        finding.read_on, finding.source = CLIENT, "the outcome of every request sent"
    elif resource in (Resource.GPU_COMPUTE, Resource.GPU_MEMORY_BANDWIDTH):
        dcgm = any(sig.has("dcgm", name) for name in ("sm_active", "utilization_percent", "dram_active"))
        finding.read_on = SERVER
        finding.source = "dcgm-exporter" if dcgm else "NVML on this machine, which serves the target"
    elif resource in (Resource.KV_CAPACITY, Resource.ADMISSION_QUEUE):
        # "up" marks an engine read through the team's Prometheus, not scraped by this client
        via = [dict(s.labels).get("url", "") for s in sig.samples("metrics", "up")]
        finding.read_on, finding.source = SERVER, " ".join(["the engine's /metrics", *via[:1]])


def infer_engine(samples: Sequence[Sample]) -> str | None:
    """The engine, from the raw /metrics series stored with the run."""
    names = {s.name[4:] for s in samples if s.source == "metrics" and s.name.startswith("raw:")}
    return engine_from_metrics(RawSeries(name, (), 0.0) for name in names)


def diagnose(
    result: RunResult | None,
    samples: Sequence[Sample],
    *,
    server_engine: str | None = None,
    earlier: Sequence[Sequence[Sample]] = (),
    window: tuple[float, float] | None = None,
) -> DiagnosisResult:
    """Every resource's finding, the primary bottleneck, its confidence and next steps. ``earlier``: the
    engine's samples from other runs against the same server (a sweep's earlier steps), read only for how
    its step time follows its batch, which one run at a pinned batch cannot show. ``window``: the load's
    first and last send (``RunResult.load_window``), the ticks every finding reads."""
    sig = Signals(samples, window)
    engine = server_engine or infer_engine(samples)
    host = serving_host(sig)
    step = step_scaling([sig, *(Signals(run) for run in earlier)])
    ordered = [
        load_generator(result, sig),
        network(sig),
        server_cpu(sig, host),
        gpu_compute(sig),
        gpu_bandwidth(sig),
        kv_capacity(sig),
        admission_queue(result, sig, step),
        disk_io(sig, host),
        errors(result, sig),
    ]
    findings = {f.resource: f for f in ordered}
    cross_check(findings, _accelerator_seen(host, findings), step)
    for finding in ordered:
        _place(finding, sig)
    bottlenecks = [f for f in ordered if f.verdict is FindingStatus.BOTTLENECK]
    client, failures = findings[Resource.LOAD_GENERATOR], findings[Resource.ERRORS]
    if client.verdict is FindingStatus.BOTTLENECK:
        primary: Finding | None = client
    elif failures.verdict is FindingStatus.BOTTLENECK:
        primary = failures
    else:
        primary = max(bottlenecks, key=lambda f: f.score, default=None)
    if primary is None:
        missing = [f for f in ordered if f.verdict is FindingStatus.NO_DATA]
        confidence = "medium" if len(missing) <= 4 else "low"
        none = Finding(NO_BOTTLENECK, FindingStatus.RULED_OUT, "no resource saturated")
        return _result(NO_BOTTLENECK, confidence, ordered, next_steps(none, engine, result), engine)
    rivals = [f for f in bottlenecks if f is not primary]
    if primary.score >= 0.8 and not rivals:
        confidence = "high"
    elif primary.score >= 0.6 and all(f.score < primary.score - 0.1 for f in rivals):
        confidence = "medium"
    else:
        confidence = "low"
    return _result(str(primary.resource), confidence, ordered, next_steps(primary, engine, result), engine)


def _result(
    primary: str, confidence: str, findings: list[Finding], steps: list[str], engine: str | None
) -> DiagnosisResult:
    client = next(f for f in findings if f.resource == Resource.LOAD_GENERATOR)
    return DiagnosisResult(
        primary=primary,
        confidence=confidence,
        engine=engine,
        findings=[f.result() for f in findings],
        next_steps=steps,
        client_cause=client.cause if client.verdict is not FindingStatus.RULED_OUT else None,
    )
