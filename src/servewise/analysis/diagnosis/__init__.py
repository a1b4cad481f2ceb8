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
from servewise.analysis.diagnosis.findings import NO_BOTTLENECK, RESOURCE_LABELS, Finding, Resource
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


def cross_check(findings: dict[str, Finding], accelerator_seen: bool) -> None:
    """Verdicts that depend on each other: a symptom is demoted under the resource that causes it, and a
    queue is only the engine's own limit where the accelerator behind it was seen to have headroom."""
    client, cpu = findings[Resource.LOAD_GENERATOR], findings[Resource.SERVER_CPU]
    if client.verdict is FindingStatus.BOTTLENECK and client.score < 0.9 and cpu.verdict is FindingStatus.BOTTLENECK:
        client.verdict = FindingStatus.CONTRIBUTING
        client.evidence += (
            "; the client is starved by the server's CPU load on the same host, not busy itself"
        )
        client.score, client.cause = 0.3, "starved"
    net = findings[Resource.NETWORK]
    if client.verdict is FindingStatus.BOTTLENECK and client.score < 0.9 and net.verdict is FindingStatus.BOTTLENECK:
        client.verdict = FindingStatus.CONTRIBUTING
        client.evidence += "; its sends waited behind the slow link (back-pressure), not on its CPU"
        client.score, client.cause = 0.3, "outside"
    host_cpu = cpu.numbers.get("host_cpu_percent_p50", math.nan)
    if client.verdict is FindingStatus.BOTTLENECK and client.score < 0.9 and known(host_cpu) and host_cpu >= 90:
        client.evidence += f"; starved: the host CPU is {host_cpu:.0f}% busy with other processes"
        client.numbers["host_cpu_percent_p50"] = host_cpu
        client.cause = "starved"
    hardware_bottleneck = any(findings[r].verdict is FindingStatus.BOTTLENECK for r in _HARDWARE)
    queue = findings[Resource.ADMISSION_QUEUE]
    if queue.verdict is FindingStatus.BOTTLENECK and hardware_bottleneck:
        queue.verdict = FindingStatus.CONTRIBUTING
        queue.evidence += "; a symptom of the saturated resource, not a limit of its own"
    kv = findings[Resource.KV_CAPACITY]
    if queue.verdict is FindingStatus.BOTTLENECK and kv.verdict is FindingStatus.BOTTLENECK:
        queue.verdict = FindingStatus.CONTRIBUTING
    if queue.verdict is FindingStatus.BOTTLENECK and not accelerator_seen:
        queue.evidence += (
            "; the accelerator behind the queue was not read, so a saturated GPU looks the same"
            " (give --dcgm URL)"
        )
        queue.numbers["accelerator_seen"] = 0.0
        queue.score = min(queue.score, 0.5)


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
        finding.read_on, finding.source = SERVER, "the engine's /metrics"


def infer_engine(samples: Sequence[Sample]) -> str | None:
    """The engine, from the raw /metrics series stored with the run."""
    names = {s.name[4:] for s in samples if s.source == "metrics" and s.name.startswith("raw:")}
    return engine_from_metrics(RawSeries(name, (), 0.0) for name in names)


def diagnose(
    result: RunResult | None, samples: Sequence[Sample], *, server_engine: str | None = None
) -> DiagnosisResult:
    """Every resource's finding, the primary bottleneck, its confidence and next steps."""
    sig = Signals(samples)
    engine = server_engine or infer_engine(samples)
    host = serving_host(sig)
    ordered = [
        load_generator(result, sig),
        network(sig),
        server_cpu(sig, host),
        gpu_compute(sig),
        gpu_bandwidth(sig),
        kv_capacity(sig),
        admission_queue(result, sig),
        disk_io(sig, host),
        errors(result, sig),
    ]
    findings = {f.resource: f for f in ordered}
    cross_check(findings, _accelerator_seen(host, findings))
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
