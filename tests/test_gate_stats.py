"""The gate's statistics: false alarms, power, and never passing on too little evidence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from servewise.analysis.gate import (
    DEFAULT_GATED,
    GatePolicy,
    RunSamples,
    bootstrap_quantile,
    evaluate_gate,
    holm_adjust,
    kth_pairwise_differences,
    mann_whitney_greater,
    sorted_quantile,
)
from servewise.results.gate import GateVerdict as Verdict
from servewise.spec import parse_slo

OUTPUT_TOKENS = 128


def synthetic_run(
    rng: np.random.Generator, requests: int = 500, *, ttft_scale: float = 1.0, ttft_sigma: float = 0.5,
    failed: int = 0, throughput_scale: float = 1.0,
) -> RunSamples:  # fmt: skip
    """A plausible steady-state run: lognormal TTFT (queueing + prefill), lognormal decode speed,
    E2E built from both, ITL gaps pooled over requests, throughput over 25 time slices."""
    ttft = rng.lognormal(np.log(180.0), ttft_sigma, requests) * ttft_scale
    tpot = rng.lognormal(np.log(25.0), 0.15, requests)
    itl = rng.lognormal(np.log(25.0), 0.35, requests * 30)
    slices = rng.normal(1000.0, 40.0, 25) * throughput_scale
    return RunSamples(
        latencies_ms={"ttft": ttft, "tpot": tpot, "itl": itl, "e2e": ttft + tpot * (OUTPUT_TOKENS - 1)},
        units={"itl": requests},
        requests_ok=requests - failed,
        requests_failed=failed,
        throughput_slices=slices,
    )


def check(result, name):
    return next(c for c in result.checks if c.name == name)


def test_a_a_false_fail_rate_is_at_most_five_percent():
    rng = np.random.default_rng(20261125)
    verdicts = [
        evaluate_gate(synthetic_run(rng), synthetic_run(rng), GatePolicy(seed=trial)).verdict
        for trial in range(200)
    ]
    false_fails = verdicts.count(Verdict.FAIL) / len(verdicts)
    assert false_fails <= 0.05, f"A/A false FAIL rate {false_fails:.1%}"
    # the gate must still be able to pass like with like, or it would be useless
    assert verdicts.count(Verdict.PASS) > 0


def test_a_15_percent_ttft_regression_is_caught_at_500_requests():
    rng = np.random.default_rng(7)
    caught = 0
    p95_caught = 0
    for trial in range(200):
        result = evaluate_gate(
            synthetic_run(rng, ttft_sigma=0.25), synthetic_run(rng, ttft_scale=1.15, ttft_sigma=0.25),
            GatePolicy(seed=trial),
        )  # fmt: skip
        caught += result.verdict is Verdict.FAIL
        p95_caught += check(result, "ttft_p95").verdict is Verdict.FAIL
        assert {c.name for c in result.failed()} <= {"ttft_p50", "ttft_p95", "e2e_p50", "e2e_p95"}
    assert caught / 200 >= 0.90, f"power {caught / 200:.1%}"
    # the tail check alone, on a tail regression, must carry most of that power too
    assert p95_caught / 200 >= 0.85, f"p95-only power {p95_caught / 200:.1%}"


def test_tiny_samples_are_inconclusive_even_when_much_worse():
    rng = np.random.default_rng(1)
    result = evaluate_gate(synthetic_run(rng, 12), synthetic_run(rng, 12, ttft_scale=3.0))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert check(result, "ttft_p95").reason.startswith("too few samples")


def test_like_with_like_at_modest_size_is_not_a_pass_when_tails_are_noisy():
    rng = np.random.default_rng(2)
    result = evaluate_gate(synthetic_run(rng, 120, ttft_sigma=0.8), synthetic_run(rng, 120, ttft_sigma=0.8))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "ttft_p95" in result.reason


def test_all_errors_candidate_fails():
    rng = np.random.default_rng(3)
    baseline = synthetic_run(rng)
    candidate = RunSamples(requests_ok=0, requests_failed=500)
    result = evaluate_gate(baseline, candidate)
    assert result.verdict is Verdict.FAIL
    errors = check(result, "errors")
    assert errors.verdict is Verdict.FAIL
    assert errors.change_pct == pytest.approx(100.0)


@pytest.mark.parametrize(
    "baseline, candidate",
    [(RunSamples(), RunSamples()), ("full", RunSamples()), (RunSamples(), "full")],
    ids=["both-empty", "empty-candidate", "empty-baseline"],
)
def test_empty_data_never_passes(baseline, candidate):
    rng = np.random.default_rng(4)
    baseline = synthetic_run(rng) if baseline == "full" else baseline
    candidate = synthetic_run(rng) if candidate == "full" else candidate
    result = evaluate_gate(baseline, candidate)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert all(
        c.verdict is not Verdict.PASS for c in result.checks if c.n_candidate == 0 or c.n_baseline == 0
    )


def test_slo_breach_fails_at_once_even_without_regression():
    rng = np.random.default_rng(5)
    baseline, candidate = synthetic_run(rng), synthetic_run(rng)
    limit_ms = float(np.quantile(candidate.latencies_ms["ttft"], 0.95)) * 0.9
    result = evaluate_gate(baseline, candidate, slo=parse_slo(f"ttft_p95={limit_ms:.3f}ms,errors=1%"))
    assert result.verdict is Verdict.FAIL
    assert check(result, "slo ttft_p95").verdict is Verdict.FAIL
    assert check(result, "slo errors").verdict is Verdict.PASS


def test_throughput_drop_fails_and_gain_does_not():
    rng = np.random.default_rng(6)
    dropped = evaluate_gate(synthetic_run(rng), synthetic_run(rng, throughput_scale=0.8))
    assert check(dropped, "throughput").verdict is Verdict.FAIL
    gained = evaluate_gate(synthetic_run(rng), synthetic_run(rng, throughput_scale=1.2))
    assert check(gained, "throughput").verdict is Verdict.PASS


def test_noise_floor_wider_than_allowed_is_inconclusive_and_narrow_floor_passes():
    rng = np.random.default_rng(8)
    baseline = synthetic_run(rng, 2000, ttft_sigma=0.2)
    candidate = synthetic_run(rng, 2000, ttft_sigma=0.2)
    assert check(evaluate_gate(baseline, candidate), "ttft_p50").verdict is Verdict.PASS
    noisy = RunSamples(**{**candidate.__dict__, "repeat_spread": {"ttft_ms_p50": 0.15}})
    row = check(evaluate_gate(baseline, noisy), "ttft_p50")
    assert row.verdict is Verdict.INCONCLUSIVE
    assert "noise" in row.reason
    quiet = RunSamples(**{**candidate.__dict__, "repeat_spread": {"ttft_ms_p50": 0.01}})
    assert check(evaluate_gate(baseline, quiet), "ttft_p50").verdict is Verdict.PASS


def test_regression_within_the_allowance_passes_and_p99_is_gated_only_when_named():
    rng = np.random.default_rng(9)
    baseline, candidate = synthetic_run(rng, 3000, ttft_sigma=0.2), synthetic_run(rng, 3000, ttft_sigma=0.2)
    candidate = RunSamples(**{**candidate.__dict__, "latencies_ms": {**candidate.latencies_ms,
                                                                     "ttft": candidate.latencies_ms["ttft"] * 1.03}})  # fmt: skip
    result = evaluate_gate(baseline, candidate)
    assert check(result, "ttft_p50").verdict is Verdict.PASS
    assert not check(result, "ttft_p99").gated
    strict = evaluate_gate(baseline, candidate, GatePolicy(allowed={"ttft_p50": 0.01, "ttft_p99": 0.5}))
    assert check(strict, "ttft_p50").verdict is Verdict.FAIL
    assert check(strict, "ttft_p99").gated


def test_default_gated_checks_cover_every_metric_kind():
    assert {name.split("_")[0] for name in DEFAULT_GATED} == {
        "ttft",
        "tpot",
        "itl",
        "e2e",
        "throughput",
        "errors",
    }


def test_order_statistic_bootstrap_matches_brute_force_resampling():
    rng = np.random.default_rng(10)
    values = np.sort(rng.lognormal(0, 0.6, 300))
    fast = bootstrap_quantile(values, 0.95, len(values), 20000, rng)
    brute = np.quantile(values[rng.integers(0, len(values), (20000, len(values)))], 0.95, axis=1)
    assert stats.ks_2samp(fast, brute).pvalue > 0.001
    assert np.quantile(fast, [0.05, 0.5, 0.95]) == pytest.approx(
        np.quantile(brute, [0.05, 0.5, 0.95]), rel=0.02
    )
    assert sorted_quantile(values, 0.95) == pytest.approx(np.quantile(values, 0.95))


def test_pairwise_difference_ranks_match_the_outer_product():
    rng = np.random.default_rng(11)
    base, cand = np.sort(rng.normal(0, 1, 40)), np.sort(rng.normal(0.3, 1, 55))
    every = np.sort(np.subtract.outer(cand, base).ravel())
    ranks = np.array([1, 100, 1100, 2200])
    assert kth_pairwise_differences(base, cand, ranks) == pytest.approx(every[ranks - 1], abs=1e-9)


def test_holm_adjustment():
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_a_client_limited_run_is_no_evidence_either_way():
    rng = np.random.default_rng(12)
    baseline = synthetic_run(rng, 2000, ttft_sigma=0.2)
    worse = synthetic_run(rng, 2000, ttft_sigma=0.2, ttft_scale=1.5)
    assert evaluate_gate(baseline, worse).verdict is Verdict.FAIL
    limited = RunSamples(**{**worse.__dict__, "client_limited": "schedule lag p99 80 ms > 10 ms"})
    result = evaluate_gate(baseline, limited)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "candidate run was client-limited" in result.reason


def test_paired_throughput_slices_keep_shared_bursts_out_of_the_noise():
    rng = np.random.default_rng(13)
    bursts = rng.gamma(2.0, 500.0, 20)  # one seeded schedule: both runs see the same bursts
    baseline = RunSamples(throughput_slices=bursts * rng.normal(1, 0.01, 20))
    candidate = RunSamples(throughput_slices=bursts * rng.normal(1, 0.01, 20))
    row = check(evaluate_gate(baseline, candidate), "throughput")
    assert row.verdict is Verdict.PASS
    assert row.ci[1] - row.ci[0] < 5


def test_mann_whitney_matches_scipy_with_ties():
    rng = np.random.default_rng(14)
    base = np.sort(np.round(rng.lognormal(0, 0.5, 300), 1))
    cand = np.sort(np.round(rng.lognormal(0.05, 0.5, 250), 1))
    expected = stats.mannwhitneyu(cand, base, alternative="greater", method="asymptotic").pvalue
    assert mann_whitney_greater(base, cand) == pytest.approx(expected, rel=1e-9)
