"""The gate's policy from what a team writes: ``--max-regression``, ``--confidence``, ``--between-run`` and
``--slo`` as flags, query parameters (``gate --serve``) or a release file's ``gate:`` section."""

from __future__ import annotations

import math
from dataclasses import replace

from servewise.analysis.gate import ALL_CHECKS, GatePolicy
from servewise.errors import UsageError
from servewise.spec import SloSpec, parse_slo


def parse_max_regression(text: str | None) -> dict[str, float]:
    """``ttft_p95=10%,tpot_p50=5%,throughput=-5%,errors=1%`` -> check -> allowed fraction.

    A throughput allowance is a drop, so ``-5%`` and ``5%`` mean the same; errors are percentage points.
    """
    allowed: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in ALL_CHECKS:
            raise UsageError(
                f"--max-regression: cannot read {item!r}; use CHECK=PERCENT with CHECK one of {', '.join(ALL_CHECKS)}"
            )
        try:
            percent = abs(float(value.strip().rstrip("%")))
        except ValueError:
            raise UsageError(f"--max-regression: {item!r} needs a percentage like {name}=10%") from None
        if not math.isfinite(percent) or percent > 1000:
            raise UsageError(f"--max-regression: {item!r} is not a sensible percentage")
        allowed[name] = percent / 100
    return allowed


def build_policy(max_regression: str | None, confidence: float, between_run: float | None = None) -> GatePolicy:
    if not 0.5 < confidence < 1:
        raise UsageError(f"--confidence must be between 0.5 and 1 (e.g. 0.95), got {confidence}")
    policy = GatePolicy(allowed=parse_max_regression(max_regression), alpha=1 - confidence)
    if between_run is None:
        return policy
    if not 0 <= between_run <= 1:
        raise UsageError(f"--between-run must be a share between 0 and 1 (e.g. 0.1), got {between_run}")
    return replace(policy, between_run=between_run)


def build_slo(text: str | None) -> SloSpec | None:
    return parse_slo(text) if text else None
