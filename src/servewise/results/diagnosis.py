"""The stored diagnosis: every resource's USE finding, the primary bottleneck and what to do next."""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import Field, field_serializer

from servewise.results.base import Result


class FindingStatus(StrEnum):
    """What one resource's evidence says about it."""

    BOTTLENECK = "bottleneck"
    CONTRIBUTING = "contributing"
    RULED_OUT = "ruled out"
    NO_DATA = "no data"


class FindingResult(Result):
    """One resource's reading. ``score`` (0..1) ranks bottlenecks against each other and is not stored."""

    resource: str
    verdict: FindingStatus
    evidence: str
    utilisation: str | None = None
    saturation: str | None = None
    errors: str | None = None
    numbers: dict[str, float] = {}
    read_on: str | None = None  # "server" or "client": which machine the evidence describes; None: no data
    source: str | None = None  # what read it, e.g. "node_exporter http://gpu-box:9100/metrics", "engine /metrics"
    score: float = Field(default=0.0, exclude=True)

    @field_serializer("numbers")
    def _finite_rounded(self, numbers: dict[str, float]) -> dict[str, float]:
        return {k: round(v, 4) for k, v in numbers.items() if math.isfinite(v)}


class DiagnosisResult(Result):
    primary: str
    confidence: str  # high | medium | low
    engine: str | None = None
    findings: list[FindingResult] = []
    next_steps: list[str] = []
    client_cause: str | None = None  # why the load generator fell behind, when it did (cpu|starved|outside)

    def finding(self, resource: str) -> FindingResult:
        return next(f for f in self.findings if f.resource == resource)

    @property
    def inconclusive(self) -> bool:
        """Nothing was measured: neither a summary nor telemetry said anything."""
        return all(f.verdict is FindingStatus.NO_DATA for f in self.findings)
