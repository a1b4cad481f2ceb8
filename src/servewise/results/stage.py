"""The stored stage assessment and readiness probes, as `servewise report` and history read them."""

from __future__ import annotations

from typing import Any

from servewise.results.base import Result


class ChecklistRecord(Result):
    key: str
    title: str
    area: str
    status: str  # pass | fail | unknown
    evidence: str
    needed_from: str


class LayerRecord(Result):
    key: str
    title: str
    action: str
    why: list[str]
    score: float
    needed_from: str


class StageRecord(Result):
    stage: str
    reasons: list[str]
    optimize_for: str
    do_not_overdo: str
    checklist: list[ChecklistRecord]
    next_layers: list[LayerRecord]
    not_yet: list[LayerRecord] = []
    next_step: str | None = None


class ProbeRecord(Result):
    name: str
    status: str  # pass | fail | unknown
    evidence: str
    facts: dict[str, Any] = {}
