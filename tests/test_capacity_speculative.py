"""Speculative decoding in the planner: the flag's grammar, what a verify step and its draft passes cost, and
TPOT falling with the acceptance length the team measured (the published EAGLE3 row is in the held-out
latency set, checked with the others in test_capacity_latency.py)."""

from __future__ import annotations

import numpy as np
import pytest

from servewise.capacity import (
    CapacityError,
    Deployment,
    PlanRequest,
    Speculation,
    StepModel,
    TierResult,
    builtin_catalog,
    fitted_efficiency,
    get_model,
    parse_speculation,
    parse_tiers,
    plan,
)
from servewise.capacity.speculative import eagle_share


def test_the_flag_reads_acceptance_tokens_steps_and_draft() -> None:
    spec = parse_speculation("2.9, tokens=16, steps=4, draft=0.2")
    assert spec == Speculation(2.9, 16, 4, 0.2) and spec.passes == 4
    assert parse_speculation("2.5") == Speculation(2.5) and Speculation(2.5).passes == 3  # vLLM's chain of 3
    assert Speculation(3.0).virtual_outputs(301) == pytest.approx(101)


@pytest.mark.parametrize(("text", "says"), [
    ("fast", "acceptance length first"),
    ("5", "between 1 and the 4 tokens"),
    ("0.5,tokens=8", "between 1 and the 8 tokens"),
    ("2,tokens=1", "at least 2"),
    ("2,tokens=2.5", "whole number"),
    ("2,depth=3", "unknown option 'depth=3'"),
    ("2,steps=x", "steps must be a number"),
    ("2,draft=3", "share 0..1"),
    ("nan", "between 1 and"),
])
def test_bad_flags_get_one_clear_line(text: str, says: str) -> None:
    with pytest.raises(CapacityError, match=says):
        parse_speculation(text)


def test_an_eagle_pass_streams_one_layer_and_the_lm_head() -> None:
    """Qwen3-8B: a decoder layer is ~0.19B parameters and the LM head 0.62B, about a tenth of the model."""
    assert eagle_share(get_model("qwen3-8b")) == pytest.approx(0.099, abs=0.005)
    assert eagle_share(get_model("llama-3.1-70b")) < 0.05  # the bigger the target, the cheaper its draft


def test_a_verify_step_costs_its_positions_and_draft_passes() -> None:
    dep = Deployment(get_model("llama-3.1-8b"), builtin_catalog().get("h100-sxm"), 1, "bf16", "bf16")
    eff = fitted_efficiency()
    plain, spec = StepModel(dep, eff), StepModel(dep, eff, speculation=Speculation(2.0, 4, 3, 0.1))
    # at batch 4 the weights are read once either way: the verify pass costs about a decode step, the three
    # draft passes a tenth of one each
    ratio = spec.step_time(0, 4, 4 * 1000) / plain.step_time(0, 4, 4 * 1000)
    assert 1.25 < ratio < 1.45
    # at a large batch of short contexts the matmuls are compute-bound: four positions a sequence cost about
    # four times the work; over long contexts reading the KV cache (once) takes a bigger share
    assert spec.step_time(0, 512, 512 * 100) > 3 * plain.step_time(0, 512, 512 * 100)
    assert spec.step_time(0, 512, 512 * 1000) < 2.5 * plain.step_time(0, 512, 512 * 1000)
    # the simulator's closed-form decode stretch prices a step as step_time does
    a, b = spec.decode_step_coefficients(8)
    assert a + b * 8 * 700 == pytest.approx(spec.step_time(0, 8, 8 * 700))


def _tier(speculative: Speculation | None, concurrency: int | None = 4) -> TierResult:
    request = PlanRequest(model=get_model("llama-3.1-8b"), weight_precision="bf16", kv_precision="bf16",
                          input_tokens=500, output_tokens=400, tiers=parse_tiers("h100-sxm:1"),
                          efficiency=fitted_efficiency(), concurrency=concurrency, speculation=speculative)
    return plan(request, builtin_catalog()).tiers[0]


def test_tpot_falls_with_the_acceptance_length_and_counts_real_tokens() -> None:
    plain = _tier(None)
    low, high = _tier(Speculation(1.5)), _tier(Speculation(3.0))
    assert plain.tpot_ms_p50 and low.tpot_ms_p50 and high.tpot_ms_p50
    # the same step emits twice the tokens: TPOT halves (per-request rounding aside)
    assert high.tpot_ms_p50 / low.tpot_ms_p50 == pytest.approx(0.5, rel=0.05)
    assert high.tpot_ms_p50 < 0.6 * plain.tpot_ms_p50
    # nothing accepted: the draft passes and wider verify are pure cost
    assert _tier(Speculation(1.0)).tpot_ms_p50 > plain.tpot_ms_p50  # type: ignore[operator]
    # four users emit what four users at that TPOT emit: real tokens, not verify steps
    assert high.output_tokens_per_s is not None and plain.output_tokens_per_s is not None
    assert high.output_tokens_per_s > 1.5 * plain.output_tokens_per_s
    assert high.ttft_ms_p50 == pytest.approx(plain.ttft_ms_p50, rel=0.5)


def test_at_full_load_a_wide_verify_costs_throughput() -> None:
    """Where the batch is large the matmuls are compute-bound: sixteen positions a sequence at an acceptance of
    2 lose throughput, which a team reading only low-concurrency speed-ups would not expect."""
    plain = _tier(None, concurrency=None)
    wide = _tier(Speculation(2.0, 16, 4), concurrency=None)
    assert plain.output_tokens_per_s is not None and wide.output_tokens_per_s is not None
    assert wide.output_tokens_per_s < 0.8 * plain.output_tokens_per_s
    assert np.isfinite(wide.output_tokens_per_s)
