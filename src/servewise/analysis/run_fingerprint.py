"""Run fingerprints: what a run was measured against, flattened so two runs can be diffed field by field.

A gate that compares a run on an H100 with one on a laptop, or two different workloads, answers the
wrong question; the differences are shown next to the verdict instead of being silently compared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Spec fields that name or locate the run rather than decide what it sends.
_SPEC_IGNORED = ("labels", "target")
# what else decides an API's traffic: the documents a rerank carries, the images asked for, the body sent
_SHAPE_OF_API = {"rerank": ("documents",), "images": ("image",), "http": ("http", "route")}


@dataclass(frozen=True, slots=True)
class FingerprintDifference:
    field: str
    baseline: str | None
    candidate: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"field": self.field, "baseline": self.baseline, "candidate": self.candidate}


def spec_hash(spec: Mapping[str, Any]) -> str:
    """Canonical hash of what a run sends and how fast (labels and target excluded: they are diffed apart).

    The one definition of "the same workload": two specs with one hash ask the same of a server (the same
    requests at the same load, over the same windows, held to the same SLO), whoever they are sent to.
    """
    return _digest({key: value for key, value in spec.items() if key not in _SPEC_IGNORED}, 16)


def workload_key(spec: Mapping[str, Any]) -> str:
    """Two runs are repeats when they sent the same workload (``spec_hash``) to the same target.

    The target is named by what decides the answers (url, api, model), not by its key or timeouts.
    """
    target = spec.get("target") or {}
    return _digest(
        {"target": [target.get(key) for key in ("url", "api", "model")], "spec": spec_hash(spec)}, 12
    )


def _digest(value: Any, length: int) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def _flatten(prefix: str, value: Any, into: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, into)
    elif value is not None:
        into[prefix] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def run_fingerprint(
    *, target: Mapping[str, Any], environment: Mapping[str, Any], spec: Mapping[str, Any], tool_version: str
) -> dict[str, str]:
    """Flat ``field -> value`` map: target (model, server info), environment (host, hardware, versions),
    the spec hash, the workload seed and the client version."""
    flat: dict[str, str] = {}
    _flatten("target", dict(target), flat)
    _flatten("environment", dict(environment), flat)
    flat["spec_hash"] = spec_hash(spec)
    seed = (spec.get("workload") or {}).get("seed")
    if seed is not None:
        flat["workload.seed"] = str(seed)
    flat["tool_version"] = tool_version
    return flat


def workload_shape(spec: Mapping[str, Any]) -> dict[str, str]:
    """What decides the traffic a run sent, flat: the workload (lengths, shared prefixes, sessions, trace,
    dataset) and the load (kind, rate, concurrency, users, turns, think time), the API and streaming (and
    a rerank's documents per request, an image request's size, count and steps, a JSON API's template).
    The seed is left out: another seed draws other requests of the same shape."""
    flat: dict[str, str] = {}
    workload = {k: v for k, v in (spec.get("workload") or {}).items() if k != "seed"}
    _flatten("workload", workload, flat)
    _flatten("load", dict(spec.get("load") or {}), flat)
    target = spec.get("target") or {}
    keys = ("api", "stream", *_SHAPE_OF_API.get(str(target.get("api")), ()))
    _flatten("target", {k: target.get(k) for k in keys}, flat)
    return flat


def diff_fingerprints(
    baseline: Mapping[str, str], candidate: Mapping[str, str]
) -> list[FingerprintDifference]:
    """Every field whose value differs or that only one side has, in a stable order."""
    return [
        FingerprintDifference(name, baseline.get(name), candidate.get(name))
        for name in sorted(set(baseline) | set(candidate))
        if baseline.get(name) != candidate.get(name)
    ]
