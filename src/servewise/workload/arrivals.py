"""Planned send times for open-loop loads, precomputed so the pacer only has to keep time."""

from __future__ import annotations

import numpy as np

from servewise.spec.models import LoadSpec

_BLOCK = 4096


def arrival_times(
    load: LoadSpec, rng: np.random.Generator, *, duration_s: float | None, max_requests: int | None
) -> np.ndarray:
    """Send offsets in seconds from the run's start, ending at ``duration_s`` or ``max_requests``.

    constant: evenly spaced; poisson: exponential gaps; gamma: gamma gaps with shape = burstiness and the
    same mean rate (shape < 1 bursty, > 1 smoother). The first request goes at t=0.
    """
    if load.rate is None:
        raise ValueError(f"{load.kind} load has no arrival schedule (it is closed-loop or a sweep)")
    mean_gap = 1.0 / load.rate
    limit = max_requests if max_requests is not None else np.iinfo(np.int64).max
    horizon = duration_s if duration_s is not None else np.inf
    gaps_blocks: list[np.ndarray] = []
    total, last = 0, 0.0
    while total < limit and last < horizon:
        n = int(min(_BLOCK, limit - total))
        match load.kind:
            case "constant":
                gaps = np.full(n, mean_gap)
            case "poisson":
                gaps = rng.exponential(mean_gap, size=n)
            case _:
                gaps = rng.gamma(load.burstiness, mean_gap / load.burstiness, size=n)
        gaps_blocks.append(gaps)
        total += n
        last += float(gaps.sum())
    times = np.concatenate(gaps_blocks) if gaps_blocks else np.empty(0)
    times = np.concatenate(([0.0], np.cumsum(times)[:-1]))[:limit]
    return times[times < horizon]
