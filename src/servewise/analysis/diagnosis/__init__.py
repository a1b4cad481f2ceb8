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
from servewise.analysis.diagnosis.signals import Signals, known
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


def cross_check(findings: dict[str, Finding], plateau: bool) -> None:
    """Verdicts that depend on each other: symptoms are demoted, and a flat network ceiling is promoted
    only when nothing else explains the limit."""
    client, cpu = findings[Resource.LOAD_GENERATOR], findings[Resource.SERVER_CPU]
    if client.verdict is FindingStatus.BOTTLENECK and client.score < 0.9 and cpu.verdict is FindingStatus.BOTTLENECK:
        client.verdict = FindingStatus.CONTRIBUTING
        client.evidence += (
            "; the client is starved by the server's CPU load on the same host, not busy itself"
        )
        client.score = 0.3
    host_cpu = cpu.numbers.get("host_cpu_percent_p50", math.nan)
    if client.verdict is FindingStatus.BOTTLENECK and client.score < 0.9 and known(host_cpu) and host_cpu >= 90:
        client.evidence += f"; starved: the host CPU is {host_cpu:.0f}% busy with other processes"
        client.numbers["host_cpu_percent_p50"] = host_cpu
    hardware_bottleneck = any(findings[r].verdict is FindingStatus.BOTTLENECK for r in _HARDWARE)
    queue = findings[Resource.ADMISSION_QUEUE]
    if queue.verdict is FindingStatus.BOTTLENECK and hardware_bottleneck:
        queue.verdict = FindingStatus.CONTRIBUTING
        queue.evidence += "; a symptom of the saturated resource, not a limit of its own"
    kv = findings[Resource.KV_CAPACITY]
    if queue.verdict is FindingStatus.BOTTLENECK and kv.verdict is FindingStatus.BOTTLENECK:
        queue.verdict = FindingStatus.CONTRIBUTING
    net = findings[Resource.NETWORK]
    others_busy = client.verdict is FindingStatus.BOTTLENECK or any(
        f.verdict in (FindingStatus.BOTTLENECK, FindingStatus.CONTRIBUTING)
        for r, f in findings.items()
        if r not in (Resource.NETWORK, Resource.ERRORS, Resource.LOAD_GENERATOR)
    )
    if plateau and net.verdict is not FindingStatus.BOTTLENECK and not others_busy:
        net.verdict = FindingStatus.BOTTLENECK
        net.evidence += (
            f"; throughput flat at its ceiling (variation {percent(net.numbers['plateau_cv'])}) while"
            " server CPU, GPU,"
            " queue and the client's CPU all had headroom: a link slower than the interface reports"
        )
        net.score = 0.6



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
    network_finding, plateau = network(sig)
    ordered = [
        load_generator(result, sig),
        network_finding,
        server_cpu(sig),
        gpu_compute(sig),
        gpu_bandwidth(sig),
        kv_capacity(sig),
        admission_queue(result, sig),
        disk_io(sig),
        errors(result, sig),
    ]
    findings = {f.resource: f for f in ordered}
    cross_check(findings, plateau)
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
    return DiagnosisResult(
        primary=primary,
        confidence=confidence,
        engine=engine,
        findings=[f.result() for f in findings],
        next_steps=steps,
    )
