"""Regression gate: is the candidate as good as the baseline, or can we not tell yet?

Each side is one run or several: interleaved repeats (A B A B), a ``runs repeat`` group, or the repeats the gate
ran itself. Every check compares the log of a per-run statistic (a latency quantile, the mean throughput), so a
change is a ratio, and it holds the change against two kinds of noise, both estimated:

- **Within a run**, latencies are correlated in time: a slow stretch of the host slows every request in it, so
  requests are not independent draws. The run's statistic is also computed on ``blocks`` contiguous stretches
  of its requests (throughput: its time slices), and its variance is the batch-means variance of those,
  which a run with slow stretches makes wide by itself.
- **Between runs**, two runs of the same thing differ by more than their own sampling (host load, caches,
  clocks). With several runs a side, the spread of their statistics beyond the within-run variance estimates
  it (pooled over both sides), moderated towards a prior (``GatePolicy.between_run`` with ``prior_df``
  degrees of freedom, as limma moderates a variance), so that two lucky runs cannot claim a quiet host; with
  one run a side the prior alone stands for it.

The decision uses Student's t with the moderated degrees of freedom:

- FAIL: the worsening is significant AND its estimate is larger than the allowed regression. Significant is
  one-sided and adjusted across the gated checks: with four or more runs a side, by Westfall-Young maxT over
  the ways to split the runs into two sides (the checks of one run move together, so this keeps the power
  Holm's worst case would spend); with fewer, by Holm. However noisy the host, a gross regression clears
  its interval.
- PASS: the one-sided upper bound of the worsening is within the allowed regression.
- INCONCLUSIVE: everything else (too little data, or an interval reaching past the allowance).

Pass is an intersection-union test (every check must rule out a large regression), which needs no
multiplicity correction; fail is a union test, which does, hence the adjustment on the fail side only.
Errors are counts, tested on their own: Fisher's exact test over every run's requests, with the Newcombe
interval of the rate difference.

Pure: plain numbers and numpy arrays in, plain results out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy.special import stdtr, stdtrit

from servewise.analysis.host_load import BUSY_SHARE, HostLoad, busy_per_side, busy_reasons
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
#: Samples a block needs for its quantile to mean something: a p95 of 20 samples is its 19th, a p99 of 100 its
#: 99th.
BLOCK_SAMPLES = {"p50": 10, "p95": 20, "p99": 100}


@dataclass(frozen=True)
class RunSamples:
    """What the gate needs from one run, as plain data.

    ``latencies_ms``: ttft/tpot/itl/e2e -> samples in ms (steady-state, successful requests only) in the
    order the run sent them, so that neighbours are neighbours in time.
    ``throughput_slices``: output tokens/s in equal time slices of the steady window.
    ``client_limited``: why the load generator fell behind, if it did: then the run measured the
    client, not the server, and cannot be evidence either way.
    ``host``: how much of the host's CPU other work held during the run (None when not sampled).
    """

    latencies_ms: Mapping[str, np.ndarray] = field(default_factory=dict)
    requests_ok: int = 0
    requests_failed: int = 0
    throughput_slices: np.ndarray = field(default_factory=lambda: np.empty(0))
    client_limited: str | None = None
    host: HostLoad | None = None

    def samples(self, metric: str) -> np.ndarray:
        values = np.asarray(self.latencies_ms.get(metric, np.empty(0)), dtype=float)
        return values[np.isfinite(values)]


@dataclass(frozen=True)
class GatePolicy:
    """How much worse is allowed, how sure the gate must be, and what it assumes of run-to-run noise.

    ``allowed``: check name -> allowed worsening as a fraction (0.10 = 10% slower, or 10% less
    throughput); for ``errors`` an absolute rate increase (0.01 = one percentage point).
    Naming a check that is not gated by default (e.g. ``ttft_p99``) gates it.
    ``between_run``: the prior standard deviation of a run's log statistic beyond its own sampling, and
    ``prior_df`` how many degrees of freedom that prior is worth against the runs' own spread.
    """

    allowed: Mapping[str, float] = field(default_factory=dict)
    default_allowed: float = 0.10
    errors_allowed: float = 0.01
    alpha: float = 0.05
    between_run: float = 0.10
    prior_df: float = 4.0
    blocks: int = 10
    min_blocks: int = 5

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
    """One row of the gate. Changes and intervals are percent (errors: percentage points); ``noise_floor_pct``
    the between-run standard deviation the check was held against, in percent."""

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
class SetAside:
    """A run left out of the comparison: ``side`` 0 is the baseline, 1 the candidate; ``index`` its place there."""

    side: int
    index: int
    reason: str


@dataclass(frozen=True)
class GateResult:
    verdict: GateVerdict
    checks: list[CheckResult]
    reason: str
    set_aside: tuple[SetAside, ...] = ()

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.gated and c.verdict is GateVerdict.FAIL]


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


# -- statistics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunValue:
    """One run's statistic for a check: its value, its log, and the within-run variance of that log."""

    value: float
    variance: float
    samples: int

    @property
    def log(self) -> float:
        return math.log(self.value)


def block_value(values: np.ndarray, q: float, blocks: int) -> RunValue:
    """The ``q`` quantile of a run's samples, with the batch-means variance of its log: the quantile of each
    of ``blocks`` contiguous stretches varies as the run's stretches do, correlated requests included (the
    delta method turns it into the log's, so blocks whose quantile is 0, as bunched ITL gaps are, count)."""
    return block_values(values, (q,), blocks)[0]


def block_values(values: np.ndarray, qs: Sequence[float], blocks: int) -> list[RunValue]:
    """:func:`block_value` for several quantiles at once (one pass over the samples)."""
    whole = np.quantile(values, qs)
    size = len(values) // blocks  # the last len % blocks samples count in the whole, not in a block
    per_block = np.quantile(values[: blocks * size].reshape(blocks, size), qs, axis=1)
    spread = per_block.var(axis=1, ddof=1) / blocks
    return [RunValue(float(w), float(v) / float(w) ** 2 if w > 0 else math.inf, len(values))
            for w, v in zip(whole, spread, strict=True)]


def mean_value(slices: np.ndarray) -> RunValue:
    """The mean of a run's throughput slices, with the variance of its log (slices are its time blocks)."""
    whole = float(slices.mean())
    return RunValue(whole, float(slices.var(ddof=1)) / len(slices) / whole**2, len(slices))


@dataclass(frozen=True)
class Comparison:
    """Two sides' runs of one check on the log scale: ``change`` = mean log candidate - mean log baseline,
    its standard error, degrees of freedom and the between-run standard deviation it used."""

    change: float
    se: float
    df: float
    between_run: float

    def upper(self, alpha: float) -> float:
        return self.change + float(stdtrit(self.df, 1 - alpha)) * self.se

    def lower(self, alpha: float) -> float:
        return self.change - float(stdtrit(self.df, 1 - alpha)) * self.se

    def p_greater(self, sign: float) -> float:
        """One-sided p-value that ``sign * change`` > 0 (sign -1: the candidate is lower, e.g. throughput)."""
        return float(1 - stdtr(self.df, sign * self.change / self.se)) if self.se > 0 else float(sign * self.change <= 0)


def compare(baseline: Sequence[RunValue], candidate: Sequence[RunValue], policy: GatePolicy) -> Comparison:
    """The moderated comparison: within-run variance from each run's blocks, between-run variance from the
    runs' spread beyond it (pooled over the sides), shrunk towards the prior with ``prior_df``."""
    runs = [*baseline, *candidate]
    on_candidate = np.zeros((1, len(runs)), dtype=bool)
    on_candidate[0, len(baseline):] = True
    change, se, df, between = _moderated(np.array([r.log for r in runs]), np.array([r.variance for r in runs]),
                                         on_candidate, policy)
    return Comparison(float(change[0]), float(se[0]), df, float(between[0]))


def _moderated(logs: np.ndarray, variances: np.ndarray, on_candidate: np.ndarray,
               policy: GatePolicy) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """:func:`compare` for many splits of the same runs at once (rows of ``on_candidate``): change, standard
    error, degrees of freedom and between-run standard deviation per split."""
    cand = on_candidate.astype(float)
    base = 1.0 - cand
    k_cand, k_base = cand.sum(axis=1), base.sum(axis=1)
    mean_cand, mean_base = cand @ logs / k_cand, base @ logs / k_base
    within = (base @ variances) / k_base**2 + (cand @ variances) / k_cand**2
    df_runs = len(logs) - 2
    if df_runs > 0:
        squares = base @ logs**2 - k_base * mean_base**2 + cand @ logs**2 - k_cand * mean_cand**2
        observed = np.maximum(0.0, squares / df_runs - variances.mean())
    else:
        observed = np.zeros(len(on_candidate))
    df = df_runs + policy.prior_df
    between = (df_runs * observed + policy.prior_df * policy.between_run**2) / df
    se = np.sqrt(within + between * (1 / k_base + 1 / k_cand))
    return mean_cand - mean_base, se, df, np.sqrt(between)


#: Per run: metric -> quantile check -> its value, or why it has none.
Latency = Sequence[Mapping[str, Mapping[str, RunValue | str]]]


def _latency_values(run: RunSamples, metric: str, policy: GatePolicy) -> dict[str, RunValue | str]:
    """A run's value of every quantile check of ``metric`` (or why it cannot be had), quantiles that share
    a block count computed together."""
    samples = run.samples(metric)
    out: dict[str, RunValue | str] = {}
    by_blocks: dict[int, list[str]] = {}
    for stat, per_block in BLOCK_SAMPLES.items():
        blocks = min(policy.blocks, len(samples) // per_block)
        if blocks < policy.min_blocks:
            out[stat] = f"too few samples (need {policy.min_blocks * per_block} a run)"
        else:
            by_blocks.setdefault(blocks, []).append(stat)
    for blocks, stats in by_blocks.items():
        for stat, value in zip(stats, block_values(samples, [QUANTILES[s] for s in stats], blocks), strict=True):
            out[stat] = value if value.value > 0 else "the statistic is zero in a run; no relative change"
    return out


def _run_values(name: str, runs: Sequence[RunSamples], policy: GatePolicy, latency: Latency) -> list[RunValue] | str:
    """Each run's value for the check, or why the check cannot be computed."""
    if name == "throughput":
        slices = [np.asarray(run.throughput_slices, float) for run in runs]
        if any(len(s) < policy.min_blocks or s.mean() <= 0 for s in slices):
            return f"fewer than {policy.min_blocks} time slices of steady-state output in a run"
        return [mean_value(s) for s in slices]
    metric, stat = name.split("_")
    values = [per_run[metric][stat] for per_run in latency]
    reasons = [v for v in values if isinstance(v, str)]
    return reasons[0] if reasons else [v for v in values if isinstance(v, RunValue)]


@dataclass(frozen=True)
class _Estimate:
    """A check's statistics before the verdict; ``sign`` +1 when up is worse, -1 when down is (throughput)."""

    name: str
    unit: str
    baseline: float
    candidate: float
    comparison: Comparison
    sign: float
    n_baseline: int
    n_candidate: int
    runs: tuple[Sequence[RunValue], Sequence[RunValue]]

    @property
    def t(self) -> float:
        """The worsening in standard errors."""
        return self.sign * self.comparison.change / self.comparison.se if self.comparison.se > 0 else 0.0

    def limit(self, allowed: float) -> float:
        """The allowance on the log scale of ``sign * change``."""
        if self.sign > 0:
            return math.log1p(allowed)
        return -math.log1p(-allowed) if allowed < 1 else math.inf


def _estimate(name: str, sides: tuple[Sequence[RunSamples], Sequence[RunSamples]], latency: tuple[Latency, Latency],
              policy: GatePolicy) -> _Estimate | CheckResult:
    """The check's statistics, or an INCONCLUSIVE row when there is too little data to compute them."""
    unit = "tok/s" if name == "throughput" else "ms"
    base = _run_values(name, sides[0], policy, latency[0])
    cand = _run_values(name, sides[1], policy, latency[1])
    if isinstance(base, str) or isinstance(cand, str):
        reason = base if isinstance(base, str) else str(cand)
        return _no_data(name, unit, reason)
    comparison = compare(base, cand, policy)
    return _Estimate(
        name, unit, math.exp(np.mean([r.log for r in base])), math.exp(np.mean([r.log for r in cand])),
        comparison, -1.0 if name == "throughput" else 1.0, sum(r.samples for r in base),
        sum(r.samples for r in cand), (base, cand),
    )  # fmt: skip


def _no_data(name: str, unit: str, reason: str) -> CheckResult:
    """An INCONCLUSIVE row for a check whose statistics cannot be computed."""
    return CheckResult(name, "-", unit, None, None, None, None, None, None, None, GateVerdict.INCONCLUSIVE,
                       False, reason)


def _pct(log_change: float) -> float:
    """A change on the log scale in percent; an interval bound past any number (a run-to-run noise so wide
    that its bound overflows) is infinite, which the JSON writes as null."""
    return 100 * math.expm1(log_change) if log_change < 700 else math.inf


def _decide(estimate: _Estimate, p_adjusted: float, allowed: float, alpha: float) -> tuple[GateVerdict, str]:
    """The three-way rule from the module docstring, with the reason a reader needs."""
    c, sign, limit = estimate.comparison, estimate.sign, estimate.limit(allowed)
    worse = sign * c.change
    reach = c.upper(alpha) if sign > 0 else -c.lower(alpha)
    allowed_text = f"{100 * allowed:.1f}%"
    if p_adjusted < alpha and worse > limit:
        return GateVerdict.FAIL, f"worse by {abs(_pct(c.change)):.1f}% > allowed {allowed_text} (p={p_adjusted:.2g})"
    if reach <= limit:
        return GateVerdict.PASS, f"a regression over {allowed_text} is ruled out"
    bound = _pct(c.upper(alpha)) if sign > 0 else -_pct(c.lower(alpha))
    return GateVerdict.INCONCLUSIVE, (f"interval reaches {bound:.1f}% worse, above the allowed {allowed_text} "
                                      f"(between-run noise {100 * c.between_run:.1f}%)")


def _check_row(estimate: _Estimate, p_adjusted: float, policy: GatePolicy, gated: bool, method: str) -> CheckResult:
    allowed, c = policy.allowed_for(estimate.name), estimate.comparison
    verdict, reason = _decide(estimate, p_adjusted, allowed, policy.alpha)
    return CheckResult(
        estimate.name, f"block means over runs, {method}", estimate.unit, estimate.baseline, estimate.candidate,
        _pct(c.change), (_pct(c.lower(policy.alpha)), _pct(c.upper(policy.alpha))), 100 * allowed,
        100 * c.between_run, p_adjusted, verdict, gated, reason, estimate.n_baseline, estimate.n_candidate,
    )  # fmt: skip


def _pooled(runs: Sequence[RunSamples]) -> RunSamples:
    """Every run of a side as one: for the SLO limits and the error counts."""
    return RunSamples(
        latencies_ms={m: np.concatenate([run.samples(m) for run in runs]) for m in LATENCY_METRICS},
        requests_ok=sum(run.requests_ok for run in runs),
        requests_failed=sum(run.requests_failed for run in runs),
        throughput_slices=np.concatenate([np.asarray(run.throughput_slices, float) for run in runs]),
    )


def evaluate_gate(
    baseline: RunSamples | Sequence[RunSamples], candidate: RunSamples | Sequence[RunSamples],
    policy: GatePolicy | None = None, slo: SloSpec | None = None,
) -> GateResult:  # fmt: skip
    """Compare the candidate's runs to the baseline's check by check and decide pass / fail / inconclusive.

    Runs that shared the host with other work are set aside while each side keeps a quiet run; when a side
    has none, a verdict the difference in host load could explain is not given (see ``host_load``)."""
    policy = policy or GatePolicy()
    base = [baseline] if isinstance(baseline, RunSamples) else list(baseline)
    cand = [candidate] if isinstance(candidate, RunSamples) else list(candidate)
    if not base or not cand:
        raise ValueError("each side of a gate needs at least one run")
    aside = set_aside_busy([run.host for run in base], [run.host for run in cand])
    left_out = {(a.side, a.index) for a in aside}
    base = [run for i, run in enumerate(base) if (0, i) not in left_out]
    cand = [run for i, run in enumerate(cand) if (1, i) not in left_out]
    result = _evaluate(base, cand, policy, slo)
    busier = _busier_side(base, cand)
    if busier is not None and (result.verdict, busier) in ((GateVerdict.FAIL, 1), (GateVerdict.PASS, 0)):
        result = GateResult(GateVerdict.INCONCLUSIVE, result.checks,
                            f"the {('baseline', 'candidate')[busier]}'s runs shared the host with other work "
                            "(every run of that side), which can explain the difference; rerun on a quiet host; "
                            f"checks said {result.verdict.value}: {result.reason}")  # fmt: skip
    return replace(result, set_aside=tuple(aside))


def set_aside_busy(base: Sequence[HostLoad | None], cand: Sequence[HostLoad | None]) -> list[SetAside]:
    """The runs that shared the host with other work, when the comparison can spare them: each side keeps a
    quiet run, and sides with enough runs for the permutation adjustment keep enough for it (the make-up
    pairs of ``gate --repeats`` are what lets a busy run go)."""
    busy = busy_per_side(base, cand)
    kept = len(base) - busy[0], len(cand) - busy[1]
    splits = math.comb(len(base) + len(cand), len(cand)), math.comb(sum(kept), kept[1])
    if not any(busy) or min(kept) == 0 or splits[0] >= MIN_SPLITS > splits[1]:
        return []
    return [SetAside(int(i >= len(base)), i if i < len(base) else i - len(base), why)
            for i, why in enumerate(busy_reasons([*base, *cand])) if why]  # fmt: skip


def _busier_side(base: Sequence[RunSamples], cand: Sequence[RunSamples]) -> int | None:
    """The side (0 baseline, 1 candidate) whose runs held on average a quarter of the host's cores more of
    other work than the other side's, or None (also when a run was not sampled)."""
    loads = ([run.host for run in base], [run.host for run in cand])
    known = [[load for load in side if load is not None] for side in loads]
    if len(known[0]) < len(base) or len(known[1]) < len(cand):
        return None
    means = [float(np.mean([load.others_cores for load in side])) for side in known]
    cores = max(load.cores for side in known for load in side)
    return None if abs(means[1] - means[0]) < BUSY_SHARE * cores else int(means[1] > means[0])


def _evaluate(base: list[RunSamples], cand: list[RunSamples], policy: GatePolicy, slo: SloSpec | None) -> GateResult:
    gated = set(policy.gated())
    pooled = (_pooled(base), _pooled(cand))
    per_run: list[Latency] = [[{m: _latency_values(run, m, policy) for m in LATENCY_METRICS} for run in side]
                              for side in (base, cand)]
    latency = (per_run[0], per_run[1])
    computed: dict[str, _Estimate | CheckResult | _ErrorEstimate] = {
        name: _errors(*pooled, policy) if name == "errors" else _estimate(name, (base, cand), latency, policy)
        for name in ALL_CHECKS
    }
    family = {n: e for n, e in computed.items() if n in gated and isinstance(e, _Estimate)}
    adjusted = max_t_adjusted(family, policy)
    method = f"maxT over {adjusted[1]} run splits" if adjusted else "Holm"
    adjusted_p = adjusted[0] if adjusted else dict(zip(family, holm_adjust([_p_value(e) for e in family.values()]),
                                                        strict=True))
    checks: list[CheckResult] = []
    for name in ALL_CHECKS:
        estimate = computed[name]
        if isinstance(estimate, CheckResult):
            checks.append(replace(estimate, gated=name in gated))
        elif isinstance(estimate, _ErrorEstimate):  # counts, tested on their own
            checks.append(_error_row(estimate, _p_value(estimate), policy, name in gated))
        else:
            checks.append(_check_row(estimate, adjusted_p.get(name, _p_value(estimate)), policy, name in gated,
                                     method))
    if slo:
        checks.extend(slo_checks(slo, pooled[1]))
    verdict, checks, reason = _overall(checks)
    limited = [f"{side} run was client-limited ({run.client_limited})"
               for side, runs in (("baseline", base), ("candidate", cand)) for run in runs
               if run.client_limited]  # fmt: skip
    if limited:
        return GateResult(
            GateVerdict.INCONCLUSIVE, checks, f"{'; '.join(limited)}; checks said {verdict.value}: {reason}"
        )
    return GateResult(verdict, checks, reason)


def _p_value(estimate: _Estimate | _ErrorEstimate) -> float:
    """One-sided p-value that the candidate is worse, before any adjustment across checks."""
    if isinstance(estimate, _ErrorEstimate):
        return estimate.p_value
    return estimate.comparison.p_greater(estimate.sign)


def _wilson(failures: int, total: int, z: float) -> tuple[float, float]:
    denominator = total + z * z
    centre = (failures + z * z / 2) / denominator
    half = z * math.sqrt(failures * (total - failures) / total + z * z / 4) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


#: Fewer run splits than this (four runs a side give 70) and a permutation p-value cannot get small enough
#: with room to spare: Holm instead.
MIN_SPLITS = 40
MAX_SPLITS = 1000


def max_t_adjusted(family: Mapping[str, _Estimate], policy: GatePolicy) -> tuple[dict[str, float], int] | None:
    """Westfall-Young single-step maxT p-values over the ways to split the runs into two sides, and how many
    splits: the checks of one run move together (a slow run is slow in TTFT, E2E and throughput alike), so
    Holm's worst case over independent checks costs power a permutation does not. Valid when the runs of
    both sides are exchangeable under no change (interleaved repeats); None when there are too few splits
    (fewer than four runs a side, or so) to reach a small p-value."""
    if not family:
        return None
    first = next(iter(family.values()))
    k_base, k_cand = (len(side) for side in first.runs)
    n = k_base + k_cand
    total = math.comb(n, k_cand)
    if total < MIN_SPLITS:
        return None
    if total <= MAX_SPLITS:
        splits = list(itertools.combinations(range(n), k_cand))
    else:
        rng = np.random.default_rng(0)
        splits = [tuple(range(k_base, n))] + [tuple(rng.choice(n, k_cand, replace=False)) for _ in range(MAX_SPLITS - 1)]
    on_candidate = np.zeros((len(splits), n), dtype=bool)
    for row, split in enumerate(splits):
        on_candidate[row, list(split)] = True
    maxima = np.full(len(splits), -np.inf)
    for e in family.values():
        runs = [*e.runs[0], *e.runs[1]]
        change, se, _, _ = _moderated(np.array([r.log for r in runs]), np.array([r.variance for r in runs]),
                                      on_candidate, policy)
        maxima = np.maximum(maxima, np.where(se > 0, e.sign * change / np.where(se > 0, se, 1.0), -np.inf))
    return {name: float(np.mean(maxima >= e.t - 1e-9)) for name, e in family.items()}, len(splits)


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



@dataclass(frozen=True)
class _ErrorEstimate:
    """Error rates of the two sides (fractions), their difference's Newcombe interval and Fisher's p."""

    baseline: float
    candidate: float
    interval: tuple[float, float]
    p_value: float
    n_baseline: int
    n_candidate: int


def _errors(baseline: RunSamples, candidate: RunSamples, policy: GatePolicy) -> _ErrorEstimate | CheckResult:
    """Fisher's exact test (candidate fails more often) and the Newcombe interval of the rate difference."""
    b_fail, b_total = baseline.requests_failed, baseline.requests_failed + baseline.requests_ok
    c_fail, c_total = candidate.requests_failed, candidate.requests_failed + candidate.requests_ok
    if min(b_total, c_total) == 0:
        return _no_data("errors", "%", "no requests on one side")
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
    return _ErrorEstimate(p_base, p_cand, (low, high), p_value, b_total, c_total)


def _error_row(estimate: _ErrorEstimate, p_adjusted: float, policy: GatePolicy, gated: bool) -> CheckResult:
    allowed = policy.allowed_for("errors")
    diff = estimate.candidate - estimate.baseline
    low, high = estimate.interval
    if p_adjusted < policy.alpha and diff > allowed:
        verdict = GateVerdict.FAIL
        reason = f"worse by {100 * diff:.1f} points > allowed {100 * allowed:.1f} points (p={p_adjusted:.2g})"
    elif high <= allowed:
        verdict, reason = GateVerdict.PASS, f"a regression over {100 * allowed:.1f} points is ruled out"
    else:
        verdict = GateVerdict.INCONCLUSIVE
        reason = f"interval reaches {100 * high:.1f} points worse, above the allowed {100 * allowed:.1f} points"
    return CheckResult(
        "errors", "fisher exact", "%", 100 * estimate.baseline, 100 * estimate.candidate, 100 * diff,
        (100 * low, 100 * high), 100 * allowed, None, p_adjusted, verdict, gated, reason, estimate.n_baseline,
        estimate.n_candidate,
    )  # fmt: skip


def slo_checks(slo: SloSpec, candidate: RunSamples) -> list[CheckResult]:
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
            samples = candidate.samples(target.metric)
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


def run_samples(records: Iterable[RequestRecord], client_limited: str | None = None,
                host: HostLoad | None = None) -> RunSamples:
    """The gate's inputs from one run's records: steady-state latencies, error counts, throughput slices."""
    records = list(records)
    latencies = request_latencies(records)
    steady = [r for r in records if r.phase is Phase.STEADY]
    failed = sum(1 for r in steady if not r.ok)
    return RunSamples(
        latencies_ms={metric: latencies[f"{metric}_ms"] for metric in LATENCY_METRICS},
        requests_ok=len(steady) - failed,
        requests_failed=failed,
        throughput_slices=throughput_slices(records),
        client_limited=client_limited,
        host=host,
    )
