"""Token-length distributions, sampled with the run's seeded generator."""

from __future__ import annotations

import numpy as np

from servewise.spec.models import LengthSpec


def sample_lengths(spec: LengthSpec, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` integer lengths drawn from ``spec``, clipped to [spec.min, spec.max]."""
    # LengthSpec's validator has required each kind's parameters; the asserts say so to the type checker
    match spec.kind:
        case "fixed":
            values = np.full(count, spec.value, dtype=np.float64)
        case "uniform":
            assert spec.low is not None and spec.high is not None
            values = rng.integers(spec.low, spec.high + 1, size=count).astype(np.float64)
        case "normal":
            assert spec.mean is not None and spec.std is not None
            values = rng.normal(spec.mean, spec.std, size=count)
        case "lognormal":
            assert spec.mean is not None and spec.std is not None
            # parameterised by the mean and std of the lengths themselves, not of their log
            variance = np.log1p((spec.std / spec.mean) ** 2)
            values = rng.lognormal(np.log(spec.mean) - variance / 2, np.sqrt(variance), size=count)
        case "empirical":
            values = rng.choice(np.asarray(spec.values, dtype=np.float64), size=count, replace=True)
    upper = spec.max if spec.max is not None else np.inf
    return np.clip(np.rint(values), spec.min, upper).astype(np.int64)
