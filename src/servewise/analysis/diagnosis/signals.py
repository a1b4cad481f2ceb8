"""Telemetry samples read as signals: one series per (source, name), label sets merged per tick,
with the quantiles, rates and spreads the rules ask of them; and how the evidence writes numbers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from servewise.records import Sample


@dataclass
class Series:
    """One signal over time, label sets merged per tick (sum or max). ``before``: the (time, value) of the last
    tick before the load began, where the samples were read over a load window: a counter's starting point and
    a probe's idle value, kept out of the quantiles so that idle ticks do not dilute them."""

    times: list[float]
    values: list[float]
    before: tuple[float, float] | None = None

    def __bool__(self) -> bool:
        return bool(self.values)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.values)
        if not ordered:
            return math.nan
        pos = q * (len(ordered) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan

    @property
    def max(self) -> float:
        return max(self.values) if self.values else math.nan

    def frac(self, predicate: Callable[[float], bool]) -> float:
        return sum(1 for v in self.values if predicate(v)) / len(self.values) if self.values else math.nan

    def _counted(self) -> tuple[list[float], list[float]]:
        """The ticks a counter's increase is read over: from the last one before the load, where known."""
        if self.before is None:
            return self.times, self.values
        return [self.before[0], *self.times], [self.before[1], *self.values]

    def increase(self) -> float:
        """A cumulative counter's increase (resets skipped)."""
        return _increase(self._counted()[1])

    def rate(self) -> float:
        """Per-second increase of a cumulative counter (resets skipped)."""
        times, values = self._counted()
        if len(times) < 2 or times[-1] <= times[0]:
            return math.nan
        return _increase(values) / (times[-1] - times[0])

    @property
    def cv(self) -> float:
        m = self.mean
        if not self.values or m <= 0:
            return math.nan
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / len(self.values)) / m


def _increase(values: list[float]) -> float:
    if len(values) < 2:
        return math.nan
    return sum(max(0.0, b - a) for a, b in itertools.pairwise(values))


MIN_WINDOW_TICKS = 3  # a load window with fewer sampling ticks is read whole, idle ticks and all


class Signals:
    """Samples indexed by (source, name). With ``window`` (the load's first and last send, on the samples'
    clock) every series holds the ticks inside it: the telemetry session runs from before the workers start
    until after the last answer, and its idle ticks would dilute every gauge (a vLLM run at concurrency 8
    read "running p50 0" with 8 requests in flight all along)."""

    def __init__(self, samples: Sequence[Sample], window: tuple[float, float] | None = None) -> None:
        self._by: dict[tuple[str, str], list[Sample]] = {}
        for s in samples:
            self._by.setdefault((s.source, s.name), []).append(s)
        inside = {round(s.t, 3) for s in samples if window and window[0] <= s.t <= window[1]}
        self._window = window if len(inside) >= MIN_WINDOW_TICKS else None

    def has(self, source: str, name: str) -> bool:
        return (source, name) in self._by

    def samples(self, source: str, name: str) -> list[Sample]:
        return self._by.get((source, name), [])

    def raw_names(self) -> list[str]:
        return [name[4:] for source, name in self._by if source == "metrics" and name.startswith("raw:")]

    def series(
        self,
        sources: str | Sequence[str],
        name: str,
        *,
        combine: str = "sum",
        where: Callable[[dict[str, str]], bool] | None = None,
    ) -> Series:
        """The first of ``sources`` that has ``name`` (so DCGM wins over NVML when both are given)."""
        for source in (sources,) if isinstance(sources, str) else sources:
            rows = [s for s in self._by.get((source, name), ()) if where is None or where(dict(s.labels))]
            if not rows:
                continue
            ticks: dict[float, list[float]] = {}
            for s in rows:
                ticks.setdefault(round(s.t, 3), []).append(s.value)
            merge = max if combine == "max" else sum
            merged = [(t, float(merge(ticks[t]))) for t in sorted(ticks)]
            if self._window is None:
                return Series([t for t, _ in merged], [v for _, v in merged])
            start, end = self._window
            before = [tv for tv in merged if tv[0] < start]
            inside = [tv for tv in merged if start <= tv[0] <= end]
            return Series([t for t, _ in inside], [v for _, v in inside], before[-1] if before else None)
        return Series([], [])

    def by_label(self, source: str, name: str, label: str) -> dict[str, Series]:
        keys = {dict(s.labels).get(label) for s in self._by.get((source, name), ())}
        return {
            key: self.series(source, name, where=_label_is(label, key)) for key in keys if key is not None
        }


SERVER, CLIENT = "server", "client"


@dataclass(frozen=True)
class Place:
    """Where a finding's evidence was read: on the serving host or the client's, and by what."""

    read_on: str
    source: str


def serving_host(sig: Signals) -> tuple[str, Place] | None:
    """The samples that describe the serving host's CPU, memory and disk, and where they were read: its
    node_exporter; else this machine's psutil counters when this machine serves the target too (runs
    stored before the ``serves_target`` mark was kept read as local, as they were); else none."""
    up = sig.samples("node", "up")
    if up:
        url = dict(up[-1].labels).get("url", "")
        return "node", Place(SERVER, f"node_exporter {url}".strip())
    mark = sig.series("host", "serves_target")
    if sig.has("host", "cpu_percent_total") and (not mark or mark.max >= 1):
        return "host", Place(SERVER, "psutil on this machine, which serves the target too")
    return None


def remote_and_unread(sig: Signals) -> bool:
    """The target was on another machine and nothing read that machine's host counters."""
    mark = sig.series("host", "serves_target")
    return bool(mark) and mark.max < 1 and not sig.samples("node", "up")


def _label_is(label: str, value: str) -> Callable[[dict[str, str]], bool]:
    return lambda labels: labels.get(label) == value


def number(value: float | None) -> float:
    """A measured value or NaN, so rules compare without None checks."""
    return math.nan if value is None else float(value)


def known(*values: float) -> bool:
    return all(not math.isnan(v) for v in values)
