"""Regression gate: is the candidate run as good as the baseline, or can we not tell yet?

Every check ends in one of three verdicts, and the rules are built so that noise cannot pass:

- FAIL: the worsening is statistically clear (one-sided test, Holm-adjusted across the gated checks so
  that many checks do not multiply false alarms) AND its estimate is larger than the allowed regression.
- PASS: the upper end of the one-sided confidence bound (widened by the run-to-run noise floor when
  one is known) is within the allowed regression: a regression larger than allowed is ruled out.
- INCONCLUSIVE: everything else: too few samples, or an interval wider than the allowed regression.

Pass is an intersection-union test (every check must rule out a large regression), which needs no
multiplicity correction; fail is a union test, which does, hence Holm on the fail side only.

Statistics per kind of check:
- ``*_p50`` of per-request latencies: one-sided Mann-Whitney U; Hodges-Lehmann shift with its
  distribution-free interval, reported relative to the baseline median.
- ``*_p95``/``*_p99`` (and ``itl_p50``): bootstrap of the quantile, replicates drawn exactly from the
  order-statistic distribution (no n x B resample matrix), interval of the candidate/baseline ratio.
  Pooled ITL gaps are not independent, so their bootstrap counts requests, not gaps.
- ``throughput``: bootstrap of the mean over equal time slices of the steady window.
- ``errors``: Fisher's exact test on counts; Newcombe score interval of the rate difference (points).

Pure: plain numbers and numpy arrays in, plain results out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from servewise.analysis.metrics import request_latencies
from servewise.records import Phase, RequestRecord
from servewise.results.gate import GateVerdict
from servewise.spec import SloSpec

_STD_NORMAL = NormalDist()


LATENCY_METRICS = ("ttft", "tpot", "itl", "e2e")
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
# p99 needs thousands of requests to be decided within 10%, so it is reported but gated only on request.
DEFAULT_GATED = (*(f"{m}_{s}" for m in LATENCY_METRICS for s in ("p50", "p95")), "throughput", "errors")
ALL_CHECKS = (*(f"{m}_{s}" for m in LATENCY_METRICS for s in QUANTILES), "throughput", "errors")
# Keys of the repeat note (``servewise runs repeat``) that hold each check's run-to-run spread.
SPREAD_KEYS = {
    **{f"{m}_{s}": (f"{m}_ms_{s}", f"{m}_{s}") for m in LATENCY_METRICS for s in QUANTILES},
    "throughput": ("output_tokens_per_s", "throughput"),
    "errors": ("error_rate", "errors"),
}


@dataclass(frozen=True)
class RunSamples:
    """What the gate needs from one run, as plain data.

    ``latencies_ms``: ttft/tpot/itl/e2e -> samples in ms (steady-state, successful requests only).
    ``units``: metric -> independent units behind its samples when fewer than the samples
    (pooled ITL gaps come from a smaller number of requests).
    ``throughput_slices``: output tokens/s in equal time slices of the steady window.
    ``repeat_spread``: relative run-to-run spread per metric (from ``servewise runs repeat``).
    ``client_limited``: why the load generator fell behind, if it did: then the run measured the
    client, not the server, and cannot be evidence either way.
    """

    latencies_ms: Mapping[str, np.ndarray] = field(default_factory=dict)
    units: Mapping[str, int] = field(default_factory=dict)
    requests_ok: int = 0
    requests_failed: int = 0
    throughput_slices: np.ndarray = field(default_factory=lambda: np.empty(0))
    repeat_spread: Mapping[str, float] = field(default_factory=dict)
    client_limited: str | None = None

    def sorted_samples(self, metric: str) -> np.ndarray:
        values = np.asarray(self.latencies_ms.get(metric, np.empty(0)), dtype=float)
        return np.sort(values[np.isfinite(values)])

    def units_of(self, metric: str, samples: np.ndarray) -> int:
        return min(int(self.units.get(metric, len(samples))), len(samples))


@dataclass(frozen=True)
class GatePolicy:
    """How much worse is allowed, and how sure the gate must be.

    ``allowed``: check name -> allowed worsening as a fraction (0.10 = 10% slower, or 10% less
    throughput); for ``errors`` an absolute rate increase (0.01 = one percentage point).
    Naming a check that is not gated by default (e.g. ``ttft_p99``) gates it.
    """

    allowed: Mapping[str, float] = field(default_factory=dict)
    default_allowed: float = 0.10
    errors_allowed: float = 0.01
    alpha: float = 0.05
    resamples: int = 2000
    seed: int = 0
    min_samples: int = 20
    min_tail_samples: int = 5

    def gated(self) -> tuple[str, ...]:
        return (
            *DEFAULT_GATED,
            *(name for name in ALL_CHECKS if name in self.allowed and name not in DEFAULT_GATED),
        )

    def allowed_for(self, name: str) -> float:
        if name in self.allowed:
            return self.allowed[name]
        return self.errors_allowed if name == "errors" else self.default_allowed


@dataclass(frozen=True)
class CheckResult:
    """One row of the gate. Changes and intervals are percent (errors: percentage points)."""

    name: str
    method: str
    unit: str
    baseline: float | None
    candidate: float | None
    change_pct: float | None
    ci: tuple[float, float] | None
    allowed_pct: float | None
    noise_floor_pct: float | None
    p_value: float | None
    verdict: GateVerdict
    gated: bool
    reason: str
    n_baseline: int = 0
    n_candidate: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "baseline": _rounded(self.baseline),
            "candidate": _rounded(self.candidate),
            "change_pct": _rounded(self.change_pct),
            "ci": [_rounded(self.ci[0]), _rounded(self.ci[1])] if self.ci else None,
            "verdict": self.verdict.value,
            "gated": self.gated,
            "method": self.method,
            "unit": self.unit,
            "allowed_pct": _rounded(self.allowed_pct),
            "noise_floor_pct": _rounded(self.noise_floor_pct),
            "p_value": None if self.p_value is None else float(f"{self.p_value:.3g}"),
            "n_baseline": self.n_baseline,
            "n_candidate": self.n_candidate,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class GateResult:
    verdict: GateVerdict
    checks: list[CheckResult]
    reason: str

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.gated and c.verdict is GateVerdict.FAIL]


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


@dataclass(frozen=True)
class _Estimate:
    """A check's raw statistics before the verdict: ``worse`` is the change signed so that up is worse."""

    name: str
    method: str
    unit: str
    baseline: float
    candidate: float
    change: float
    interval: tuple[float, float]
    worse: float
    worse_upper: float
    p_value: float
    n_baseline: int
    n_candidate: int


# -- statistics ------------------------------------------------------------------------------------


def sorted_quantile(sorted_values: np.ndarray, q: float) -> float:
    """``np.quantile`` (linear) of an already sorted array, without sorting it again."""
    position = (len(sorted_values) - 1) * q
    k = math.floor(position)
    upper = sorted_values[min(k + 1, len(sorted_values) - 1)]
    return float(sorted_values[k] + (position - k) * (upper - sorted_values[k]))


def bootstrap_quantile(
    sorted_values: np.ndarray, q: float, units: int, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap replicates of ``np.quantile(values, q)`` without materialising the resamples.

    The k-th smallest of n indices drawn uniformly is ``floor(n * U_(k))`` with ``U_(k) ~ Beta(k, n-k+1)``,
    and the next order statistic is ``U_(k) + (1 - U_(k)) * Beta(1, n-k-1)``; so each replicate costs two
    beta draws instead of n. With ``units < len(values)`` the quantile moves as if only ``units``
    independent draws had been made (pooled, correlated samples).
    """
    total = len(sorted_values)
    n = units
    position = (n - 1) * q
    k = math.floor(position)
    frac = position - k
    lower = rng.beta(k + 1, n - k, size=draws)
    upper = lower + (1 - lower) * rng.beta(1, n - k - 1, size=draws) if k + 1 < n else lower
    lo_idx = np.minimum((lower * total).astype(np.int64), total - 1)
    hi_idx = np.minimum((upper * total).astype(np.int64), total - 1)
    return sorted_values[lo_idx] + frac * (sorted_values[hi_idx] - sorted_values[lo_idx])


def kth_pairwise_differences(
    base_sorted: np.ndarray, cand_sorted: np.ndarray, ranks: np.ndarray
) -> np.ndarray:
    """The ``ranks``-th smallest (1-based) of all ``cand[j] - base[i]``, by bisection on counts.

    O((n1 + n2) log n) per step instead of forming n1 * n2 differences, so large runs stay cheap.
    """
    ranks = np.asarray(ranks, dtype=float)
    low = np.full(ranks.shape, cand_sorted[0] - base_sorted[-1], dtype=float)
    high = np.full(ranks.shape, cand_sorted[-1] - base_sorted[0], dtype=float)
    for _ in range(100):
        mid = (low + high) / 2
        counts = np.searchsorted(cand_sorted, base_sorted[:, None] + mid[None, :], side="right").sum(axis=0)
        enough = counts >= ranks
        high = np.where(enough, mid, high)
        low = np.where(enough, low, mid)
        if np.all(high - low <= 1e-6 * max(1e-9, float(np.max(np.abs(high))))):
            break
    # snap to the largest actual difference at or below each bound: the exact rank statistic
    probe = high + 1e-12 * max(1.0, float(np.abs(cand_sorted).max()), float(np.abs(base_sorted).max()))
    below = np.searchsorted(cand_sorted, base_sorted[:, None] + probe[None, :], side="right") - 1
    valid = below >= 0
    differences = np.where(valid, cand_sorted[np.maximum(below, 0)] - base_sorted[:, None], -np.inf)
    return differences.max(axis=0)


def mann_whitney_greater(base_sorted: np.ndarray, cand_sorted: np.ndarray) -> float:
    """One-sided Mann-Whitney U p-value (candidate stochastically greater): normal approximation with
    tie and continuity corrections, as scipy's ``method="asymptotic"``, from two sorted-array searches."""
    n1, n2 = len(base_sorted), len(cand_sorted)
    below = np.searchsorted(base_sorted, cand_sorted, side="left")
    ties = np.searchsorted(base_sorted, cand_sorted, side="right") - below
    u = float(below.sum() + 0.5 * ties.sum())
    _, counts = np.unique(np.concatenate([base_sorted, cand_sorted]), return_counts=True)
    total = n1 + n2
    tie_term = float((counts**3 - counts).sum()) / (total * (total - 1))
    sd = math.sqrt(n1 * n2 / 12 * (total + 1 - tie_term))
    if sd == 0:
        return 1.0
    return _STD_NORMAL.cdf(-(u - n1 * n2 / 2 - 0.5) / sd)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control without independence)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _wilson(failures: int, total: int, z: float) -> tuple[float, float]:
    denominator = total + z * z
    centre = (failures + z * z / 2) / denominator
    half = z * math.sqrt(failures * (total - failures) / total + z * z / 4) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


# -- checks ----------------------------------------------------------------------------------------


def _median_shift(
    name: str, base_sorted: np.ndarray, cand_sorted: np.ndarray, policy: GatePolicy, floor: float
) -> _Estimate:
    """Mann-Whitney U (one-sided: candidate slower) with the Hodges-Lehmann shift and its interval."""
    n1, n2 = len(base_sorted), len(cand_sorted)
    reference = sorted_quantile(base_sorted, 0.5)
    z = _STD_NORMAL.inv_cdf(1 - policy.alpha)
    pairs = n1 * n2
    k_low = max(1, math.floor(pairs / 2 - z * math.sqrt(pairs * (n1 + n2 + 1) / 12)))
    ranks = np.array([k_low, (pairs + 1) // 2, pairs // 2 + 1, pairs - k_low + 1])
    low, mid_a, mid_b, high = kth_pairwise_differences(base_sorted, cand_sorted, ranks)
    shift = (mid_a + mid_b) / 2
    p_value = mann_whitney_greater(base_sorted, cand_sorted - floor * reference)
    change = shift / reference
    interval = (low / reference, high / reference)
    return _Estimate(
        name, "mann-whitney/hodges-lehmann", "ms", reference, sorted_quantile(cand_sorted, 0.5), change, interval,
        worse=change, worse_upper=interval[1], p_value=p_value, n_baseline=n1, n_candidate=n2,
    )  # fmt: skip


def _quantile_ratio(
    name: str, q: float, base_sorted: np.ndarray, cand_sorted: np.ndarray, units: tuple[int, int],
    policy: GatePolicy, floor: float, rng: np.random.Generator,
) -> _Estimate:  # fmt: skip
    """Bootstrap interval of candidate/baseline - 1 for one quantile."""
    base_q, cand_q = sorted_quantile(base_sorted, q), sorted_quantile(cand_sorted, q)
    base_boot = bootstrap_quantile(base_sorted, q, units[0], policy.resamples, rng)
    cand_boot = bootstrap_quantile(cand_sorted, q, units[1], policy.resamples, rng)
    ratio = cand_boot / np.where(base_boot > 0, base_boot, np.nan) - 1
    ratio = ratio[np.isfinite(ratio)]
    change = cand_q / base_q - 1
    interval = (float(np.quantile(ratio, policy.alpha)), float(np.quantile(ratio, 1 - policy.alpha)))
    p_value = (1 + int(np.count_nonzero(ratio <= floor))) / (1 + len(ratio))
    return _Estimate(
        name, "bootstrap quantile", "ms", base_q, cand_q, change, interval, worse=change,
        worse_upper=interval[1], p_value=p_value, n_baseline=units[0], n_candidate=units[1],
    )  # fmt: skip


def _throughput(base: np.ndarray, cand: np.ndarray, policy: GatePolicy, floor: float, rng) -> _Estimate:
    """Bootstrap of the mean rate over time slices; a drop is the worsening.

    With as many slices on both sides, slice i of one run is resampled with slice i of the other: runs
    of one seeded schedule share their arrival bursts, and pairing keeps those out of the noise.
    """
    base_mean, cand_mean = float(base.mean()), float(cand.mean())
    base_draws = rng.integers(0, len(base), (policy.resamples, len(base)))
    cand_draws = (
        base_draws if len(base) == len(cand) else rng.integers(0, len(cand), (policy.resamples, len(cand)))
    )
    base_boot, cand_boot = base[base_draws].mean(axis=1), cand[cand_draws].mean(axis=1)
    ratio = cand_boot / np.where(base_boot > 0, base_boot, np.nan) - 1
    ratio = ratio[np.isfinite(ratio)]
    change = cand_mean / base_mean - 1
    interval = (float(np.quantile(ratio, policy.alpha)), float(np.quantile(ratio, 1 - policy.alpha)))
    p_value = (1 + int(np.count_nonzero(-ratio <= floor))) / (1 + len(ratio))
    return _Estimate(
        "throughput", "bootstrap mean of time slices", "tok/s", base_mean, cand_mean, change, interval,
        worse=-change, worse_upper=-interval[0], p_value=p_value, n_baseline=len(base), n_candidate=len(cand),
    )  # fmt: skip


def _errors(baseline: RunSamples, candidate: RunSamples, policy: GatePolicy) -> _Estimate:
    """Fisher's exact test (candidate fails more often) and the Newcombe interval of the rate difference."""
    b_fail, b_total = baseline.requests_failed, baseline.requests_failed + baseline.requests_ok
    c_fail, c_total = candidate.requests_failed, candidate.requests_failed + candidate.requests_ok
    p_base, p_cand = b_fail / b_total, c_fail / c_total
    z = _STD_NORMAL.inv_cdf(1 - policy.alpha)
    base_low, base_high = _wilson(b_fail, b_total, z)
    cand_low, cand_high = _wilson(c_fail, c_total, z)
    diff = p_cand - p_base
    low = diff - math.sqrt((p_cand - cand_low) ** 2 + (base_high - p_base) ** 2)
    high = diff + math.sqrt((cand_high - p_cand) ** 2 + (p_base - base_low) ** 2)
    table = [[c_fail, c_total - c_fail], [b_fail, b_total - b_fail]]
    from scipy.stats import fisher_exact  # imported here: scipy.stats costs every CLI start 40 MB

    p_value = float(fisher_exact(np.array(table), alternative="greater").pvalue)
    return _Estimate(
        "errors", "fisher exact", "%", 100 * p_base, 100 * p_cand, diff, (low, high), worse=diff,
        worse_upper=high, p_value=p_value, n_baseline=b_total, n_candidate=c_total,
    )  # fmt: skip


def _noise_floor(name: str, baseline: RunSamples, candidate: RunSamples) -> float:
    spreads = [
        float(run.repeat_spread[key])
        for run in (baseline, candidate)
        for key in SPREAD_KEYS[name]
        if key in run.repeat_spread and math.isfinite(float(run.repeat_spread[key]))
    ]
    return max([abs(s) for s in spreads], default=0.0)


def _estimate(
    name: str, baseline: RunSamples, candidate: RunSamples, sorted_samples: tuple[dict, dict],
    policy: GatePolicy, floor: float, rng: np.random.Generator,
) -> _Estimate | CheckResult:  # fmt: skip
    """The check's statistics, or an INCONCLUSIVE row when there is too little data to compute them."""
    if name == "errors":
        totals = (
            baseline.requests_ok + baseline.requests_failed,
            candidate.requests_ok + candidate.requests_failed,
        )
        if min(totals) == 0:
            return _no_data(name, "%", "no requests on one side", *totals)
        return _errors(baseline, candidate, policy)
    if name == "throughput":
        base, cand = baseline.throughput_slices, candidate.throughput_slices
        if min(len(base), len(cand)) < 5 or base.mean() <= 0:
            return _no_data(
                name, "tok/s", "fewer than 5 time slices of steady-state output", len(base), len(cand)
            )
        return _throughput(np.asarray(base, float), np.asarray(cand, float), policy, floor, rng)
    metric, stat = name.split("_")
    q = QUANTILES[stat]
    base, cand = sorted_samples[0][metric], sorted_samples[1][metric]
    units = (baseline.units_of(metric, base), candidate.units_of(metric, cand))
    needed = max(policy.min_samples, math.ceil(policy.min_tail_samples / (1 - q)) if q > 0.5 else 0)
    points = tuple(sorted_quantile(values, q) if len(values) else None for values in (base, cand))
    if min(units) < needed:
        return _no_data(name, "ms", f"too few samples (need {needed} per side)", *units, *points)
    if points[0] is not None and points[0] <= 0:
        return _no_data(name, "ms", "baseline is zero; no relative change", *units, *points)
    if stat == "p50" and units == (len(base), len(cand)):
        return _median_shift(name, base, cand, policy, floor)
    return _quantile_ratio(name, q, base, cand, units, policy, floor, rng)


def _no_data(
    name: str, unit: str, reason: str, n_base: int, n_cand: int, base: float | None = None,
    cand: float | None = None,
) -> CheckResult:  # fmt: skip
    """An INCONCLUSIVE row for a check whose statistics cannot be computed (point values kept if any)."""
    return CheckResult(
        name,
        "-",
        unit,
        base,
        cand,
        None,
        None,
        None,
        None,
        None,
        GateVerdict.INCONCLUSIVE,
        False,
        reason,
        n_base,
        n_cand,
    )


def _decide(
    estimate: _Estimate, p_adjusted: float, allowed: float, floor: float, alpha: float
) -> tuple[GateVerdict, str]:
    """The three-way rule from the module docstring, with the reason a reader needs."""
    unit = " points" if estimate.name == "errors" else "%"

    def pct(fraction: float) -> str:
        return f"{100 * fraction:.1f}{unit}"

    if floor > allowed:
        return GateVerdict.INCONCLUSIVE, f"run-to-run noise {pct(floor)} is wider than the allowed {pct(allowed)}"
    if p_adjusted < alpha and estimate.worse > allowed:
        return GateVerdict.FAIL, f"worse by {pct(estimate.worse)} > allowed {pct(allowed)} (p={p_adjusted:.2g})"
    if estimate.worse_upper + floor <= allowed:
        return GateVerdict.PASS, f"a regression over {pct(allowed)} is ruled out"
    reach = estimate.worse_upper + floor
    return GateVerdict.INCONCLUSIVE, f"interval reaches {pct(reach)} worse, above the allowed {pct(allowed)}"


def _slo_checks(slo: SloSpec, candidate: RunSamples) -> list[CheckResult]:
    """Absolute limits on the candidate alone: a breach fails at once, no statistics needed."""
    rows = []
    for target in slo.targets:
        name = f"slo {target.key}"
        if target.metric == "errors":
            total = candidate.requests_ok + candidate.requests_failed
            value = 100 * candidate.requests_failed / total if total else None
            limit, unit, met = 100 * target.limit, "%", value is not None and value <= 100 * target.limit
        elif target.metric == "throughput":
            slices = candidate.throughput_slices
            value = float(np.mean(slices)) if len(slices) else None
            limit, unit, met = target.limit, "tok/s", value is not None and value >= target.limit
        else:
            samples = candidate.sorted_samples(target.metric)
            value = _statistic(samples, target.stat) if len(samples) else None
            limit, unit, met = target.limit, "ms", value is not None and value <= target.limit
        if value is None:
            verdict, reason = GateVerdict.INCONCLUSIVE, "no candidate samples for this SLO"
        else:
            verdict = GateVerdict.PASS if met else GateVerdict.FAIL
            reason = f"{'within' if met else 'breaches'} the limit {limit:g} {unit}"
        rows.append(
            CheckResult(name, "slo", unit, limit, value, None, None, None, None, None, verdict, True, reason)
        )
    return rows


def _statistic(samples: np.ndarray, stat: str) -> float:
    match stat:
        case "mean":
            return float(np.mean(samples))
        case "max":
            return float(np.max(samples))
        case _:
            return float(np.quantile(samples, float(stat[1:]) / 100))


def _p(estimate: _Estimate | CheckResult) -> float:
    """A testable estimate's p-value (one without a test never counts as evidence of a regression)."""
    return 1.0 if estimate.p_value is None else estimate.p_value


def evaluate_gate(
    baseline: RunSamples, candidate: RunSamples, policy: GatePolicy | None = None, slo: SloSpec | None = None
) -> GateResult:
    """Compare candidate to baseline check by check and decide pass / fail / inconclusive."""
    policy = policy or GatePolicy()
    rng = np.random.default_rng(policy.seed)
    gated = set(policy.gated())
    floors = {name: _noise_floor(name, baseline, candidate) for name in ALL_CHECKS}
    ordered = (
        {m: baseline.sorted_samples(m) for m in LATENCY_METRICS},
        {m: candidate.sorted_samples(m) for m in LATENCY_METRICS},
    )
    computed = {
        name: _estimate(name, baseline, candidate, ordered, policy, floors[name], rng) for name in ALL_CHECKS
    }
    testable = [n for n in ALL_CHECKS if n in gated and isinstance(computed[n], _Estimate)]
    adjusted = dict(zip(testable, holm_adjust([_p(computed[n]) for n in testable]), strict=True))
    checks: list[CheckResult] = []
    for name in ALL_CHECKS:
        estimate = computed[name]
        if isinstance(estimate, CheckResult):
            checks.append(replace(estimate, gated=name in gated))
            continue
        allowed, floor = policy.allowed_for(name), floors[name]
        verdict, reason = _decide(
            estimate, adjusted.get(name, estimate.p_value), allowed, floor, policy.alpha
        )
        checks.append(
            CheckResult(
                name,
                estimate.method,
                estimate.unit,
                estimate.baseline,
                estimate.candidate,
                100 * estimate.change,
                (100 * estimate.interval[0], 100 * estimate.interval[1]),
                100 * allowed,
                100 * floor or None,
                adjusted.get(name, estimate.p_value),
                verdict,
                name in gated,
                reason,
                estimate.n_baseline,
                estimate.n_candidate,
            )
        )
    if slo:
        checks.extend(_slo_checks(slo, candidate))
    verdict, checks, reason = _overall(checks)
    limited = [f"{side} run was client-limited ({run.client_limited})"
               for side, run in (("baseline", baseline), ("candidate", candidate)) if run.client_limited]  # fmt: skip
    if limited:
        return GateResult(
            GateVerdict.INCONCLUSIVE, checks, f"{'; '.join(limited)}; checks said {verdict.value}: {reason}"
        )
    return GateResult(verdict, checks, reason)


def _overall(checks: list[CheckResult]) -> tuple[GateVerdict, list[CheckResult], str]:
    gated = [c for c in checks if c.gated]
    failed = [c.name for c in gated if c.verdict is GateVerdict.FAIL]
    unsure = [c.name for c in gated if c.verdict is GateVerdict.INCONCLUSIVE]
    if failed:
        return GateVerdict.FAIL, checks, f"failed: {', '.join(failed)}"
    if not gated:
        return GateVerdict.INCONCLUSIVE, checks, "nothing to gate on"
    if unsure:
        return GateVerdict.INCONCLUSIVE, checks, f"cannot decide: {', '.join(unsure)}"
    return GateVerdict.PASS, checks, f"all {len(gated)} gated checks pass"


# -- inputs from stored records --------------------------------------------------------------------


def throughput_slices(
    records: Sequence[RequestRecord], max_slices: int = 30, per_slice: int = 20
) -> np.ndarray:
    """Output tokens/s in equal slices of the steady window [first send, last token]: each chunk's
    tokens count at its arrival, so a slice measures what the server delivered then. Fewer than five
    slices (under ~100 requests) is returned empty: too little to say how throughput varies."""
    steady = [r for r in records if r.phase is Phase.STEADY]
    times: list[float] = []
    tokens: list[float] = []
    for record in steady:
        if not record.ok:
            continue
        chunks = record.chunk_times
        if chunks:
            if record.chunk_tokens and len(record.chunk_tokens) == len(chunks):
                tokens.extend(record.chunk_tokens)
            else:
                tokens.extend([(record.output_tokens or len(chunks)) / len(chunks)] * len(chunks))
            times.extend(chunks)
        elif record.t_end is not None and record.output_tokens:
            times.append(record.t_end)
            tokens.append(record.output_tokens)
    slices = min(max_slices, len(steady) // per_slice)
    if slices < 5 or not times:
        return np.empty(0)
    start, end = min(r.t_send for r in steady), max(times)
    if end <= start:
        return np.empty(0)
    delivered, _ = np.histogram(times, bins=slices, range=(start, end), weights=tokens)
    return delivered / ((end - start) / slices)


def run_samples(
    records: Iterable[RequestRecord], repeat_spread: Mapping[str, float] | None = None,
    client_limited: str | None = None,
) -> RunSamples:  # fmt: skip
    """The gate's inputs from one run's records: steady-state latencies, error counts, throughput slices."""
    records = list(records)
    latencies = request_latencies(records)
    steady = [r for r in records if r.phase is Phase.STEADY]
    failed = sum(1 for r in steady if not r.ok)
    itl_requests = sum(1 for r in steady if r.ok and len(r.chunk_times) >= 2)
    return RunSamples(
        latencies_ms={metric: latencies[f"{metric}_ms"] for metric in LATENCY_METRICS},
        units={"itl": itl_requests},
        requests_ok=len(steady) - failed,
        requests_failed=failed,
        throughput_slices=throughput_slices(records),
        repeat_spread=dict(repeat_spread or {}),
        client_limited=client_limited,
    )
