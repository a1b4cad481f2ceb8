"""What a probe is asked with and what it answers: the only probe types stage, doctor and reports see.

Kept apart from the probes themselves so readers of stored answers (``ProbeResult.from_dict``) need none
of the HTTP machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class ProbeStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One answer: ``facts`` holds what later steps (stage, report) read without parsing evidence."""

    name: str
    status: ProbeStatus
    evidence: str
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "evidence": self.evidence,
            "facts": self.facts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        return cls(
            name=str(data["name"]),
            status=ProbeStatus(data["status"]),
            evidence=str(data.get("evidence", "")),
            facts=dict(data.get("facts") or {}),
        )


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """Bounds of every probe. ``burst_size`` is capped at ``MAX_BURST`` whatever is asked."""

    api: Literal["chat", "completions"] = "chat"
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    request_timeout_s: float = 10.0
    burst_size: int = 32
    burst_max_tokens: int = 64
    burst_timeout_s: float = 15.0
    fast_shed_s: float = 2.0
    oversized_words: int | None = None
    include_overload: bool = True


MAX_BURST = 256
PROBE_NAMES = (
    "metrics",
    "models",
    "version",
    "health",
    "readiness",
    "streaming",
    "usage",
    "bad_json",
    "unknown_model",
    "oversized_prompt",
    "auth",
    "overload",
)
