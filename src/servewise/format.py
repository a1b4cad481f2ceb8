"""How servewise writes numbers for people, in one place: what a missing value looks like, milliseconds,
percentages, byte rates, sizes and money. Tables, reports and evidence strings all write through here."""

from __future__ import annotations

import math
from typing import Any


def number(value: Any, spec: str = ",.1f", *, missing: str = "-", prefix: str = "", unit: str = "") -> str:
    """``value`` in ``spec``; ``missing`` for None, a non-number or a non-finite value."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return missing
    return f"{prefix}{value:{spec}}{unit}"


def ms(value: float | None, *, missing: str = "-") -> str:
    """Milliseconds in a table: one decimal below a second, none above."""
    return number(value, ",.1f" if value is None or value < 1000 else ",.0f", missing=missing)


def ms_text(value: float) -> str:
    """Milliseconds in a sentence: ``12 ms``, ``3.4 ms``."""
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def percent(fraction: float, digits: int = 0) -> str:
    """A fraction as a percentage: ``0.123`` -> ``12%``."""
    return f"{fraction * 100:.{digits}f}%"


def byte_rate(value: float) -> str:
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B/s"


def megabytes(value: float | None, *, missing: str = "-") -> str:
    return number(None if value is None else value / 1e6, ".0f", missing=missing)


def money(value: Any) -> str:
    return number(value, ",.2f", missing="–", prefix="$")


def count(n: int, noun: str) -> str:
    """``1 run``, ``3 runs``: evidence lines read as sentences."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
