"""How far to trust a projection: the out-of-sample errors stored beside the fit (``data/validation.json``,
written by ``benchmarks/capacity_holdout.py --write`` for throughput and ``benchmarks/latency_fit.py --write``
for TTFT/TPOT), read as typed figures, and the note `plan` prints under every projection.

A section made on another fit than the stored one reads as missing, so a refit never quotes stale errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from servewise.capacity.perf import Efficiency, fitted_efficiency

Regime = Literal["one_gpu", "multi_gpu"]
REGIMES: tuple[Regime, ...] = ("one_gpu", "multi_gpu")


@dataclass(frozen=True, slots=True)
class Error:
    """Mean absolute relative error over published rows never fitted on."""

    rows: int
    mae_pct: float
    median_pct: float | None = None  # signed: > 0 means the projection is optimistic

    @classmethod
    def read(cls, raw: dict[str, Any] | None) -> Error | None:
        if not raw:
            return None
        return cls(int(raw["rows"]), float(raw["mae_pct"]), raw.get("median_pct"))

    def text(self, what: str) -> str:
        return f"{what} {self.mae_pct:g}% ({self.rows} rows)"


@dataclass(frozen=True, slots=True)
class ThroughputCheck:
    rows: int
    one_gpu: Error
    multi_gpu: Error


@dataclass(frozen=True, slots=True)
class LatencyCheck:
    rows: int
    ttft: Error | None
    tpot: Error | None
    #: engine profile -> regime -> (TTFT, TPOT) on that engine's held-out rows
    by_engine: dict[str, dict[Regime, tuple[Error | None, Error | None]]]


@dataclass(frozen=True, slots=True)
class Validation:
    throughput: ThroughputCheck | None
    latency: LatencyCheck | None


def _same_fit(section: dict[str, Any], fit: Efficiency) -> bool:
    """The section was measured on these constants (their ``source`` is a label, not a constant)."""
    stored = {k: v for k, v in (section.get("fit") or {}).items() if k != "source"}
    return stored == {k: v for k, v in fit.to_dict().items() if k != "source"}


def read_validation(data: dict[str, Any], fit: Efficiency) -> Validation:
    throughput = data.get("throughput") or {}
    latency = data.get("latency") or {}
    through = None
    one, multi = Error.read(throughput.get("one_gpu")), Error.read(throughput.get("multi_gpu"))
    if _same_fit(throughput, fit) and one is not None and multi is not None:
        through = ThroughputCheck(int(throughput["provenance"]["rows"]), one, multi)
    lat = None
    if _same_fit(latency, fit):
        held = latency["held_out"]
        by_engine = {
            engine: {regime: (Error.read(raw[regime].get("ttft")), Error.read(raw[regime].get("tpot")))
                     for regime in REGIMES if regime in raw}
            for engine, raw in latency["by_engine"].items()
        }
        lat = LatencyCheck(int(latency["provenance"]["rows"]), Error.read(held["ttft"]), Error.read(held["tpot"]),
                           by_engine)
    return Validation(through, lat)


@cache
def stored_validation() -> Validation:
    """The checks stored with the package, for the stored fit."""
    text = resources.files("servewise.capacity").joinpath("data/validation.json").read_text()
    return read_validation(json.loads(text), fitted_efficiency())


def _latency_text(check: LatencyCheck, engine: str, regime: Regime) -> str:
    where = "on one GPU" if regime == "one_gpu" else "tensor-parallel"
    ttft, tpot = check.by_engine.get(engine, {}).get(regime, (None, None))
    if ttft is None and tpot is None:
        overall = ", ".join(e.text(m) for m, e in (("TTFT", check.ttft), ("TPOT", check.tpot)) if e)
        return f"latency: no held-out {engine} rows {where}; all engines {overall}"
    parts = ", ".join(e.text(m) for m, e in (("TTFT", ttft), ("TPOT", tpot)) if e)
    return f"latency ({engine} {where}): {parts}"


def accuracy_note(validation: Validation, engine: str, multi_gpu: bool, latency: bool,
                  widen_pct: float = 0.0, one_gpu: bool = True) -> str | None:
    """How far to trust the projection, in the words of the out-of-sample checks: the throughput check
    (TensorRT-LLM max-throughput rows) and, when the plan projects latency, the TTFT/TPOT error of the
    chosen engine profile in each regime the tiers use (``one_gpu``, ``multi_gpu``); ``widen_pct`` adds a
    --from-run calibration's residual."""
    parts: list[str] = []
    if validation.throughput is not None:
        t = validation.throughput
        one = t.one_gpu
        text = (f"throughput on {t.rows} published TensorRT-LLM rows never fitted on: one GPU {one.mae_pct:g}% "
                f"mean error (median {one.median_pct or 0:+g}%)")
        if multi_gpu:
            m = t.multi_gpu
            lean = "optimistic" if (m.median_pct or 0) > 0 else "pessimistic"
            text += f"; tensor-parallel {m.mae_pct:g}% (median {m.median_pct or 0:+g}%: {lean})"
        parts.append(text)
    if latency and validation.latency is not None:
        used = [regime for regime, on in zip(REGIMES, (one_gpu, multi_gpu), strict=True) if on]
        parts += [_latency_text(validation.latency, engine, regime) for regime in used]
    if not parts:
        return None
    text = "accuracy: " + "; ".join(parts)
    if widen_pct:
        return text + f"; widened by the calibration's own residual, {widen_pct:.1f}%"
    return text + "; --from-run calibrates on your own measurement"
