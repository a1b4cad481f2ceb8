"""`--from-run` calibration: separate prefill and decode factors recovered from a run of known ones, the
residual it reports, and the runs and fits it refuses with one line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import numpy as np
import pytest

from servewise.capacity import (
    CapacityError,
    Deployment,
    EngineConfig,
    StepModel,
    builtin_catalog,
    calibrate,
    fitted_efficiency,
    get_model,
    measured_from_run,
    memory_plan,
    poisson_arrivals,
    simulate,
    simulate_users,
)
from servewise.capacity.calibrate import Calibration, MeasuredRun
from servewise.capacity.perf import DECODE_COSTS, DECODE_FRACTIONS, PREFILL_FRACTIONS, UNCALIBRATED
from servewise.results import RunResult

DEP = Deployment(get_model("llama-3.1-8b"), builtin_catalog().get("rtx4090"), 1, "bf16", "bf16")


def _run(
    decode: float,
    prefill: float,
    *,
    input_tokens: int = 500,
    output_tokens: int = 200,
    concurrency: int | None = 8,
    rate: float | None = None,
    ok: int = 400,
    failed: int = 0,
    client: dict[str, Any] | None = None,
) -> MeasuredRun:
    """A run as bench would store it, measured on a stack ``decode``/``prefill`` times the published fit:
    simulated with another seed and request count than calibration replays (open loop)."""
    engine = EngineConfig()
    kv = memory_plan(DEP, input_tokens + output_tokens, engine).kv_capacity_tokens
    step = StepModel(DEP, fitted_efficiency().split(decode, prefill, "truth"))
    n = 600 if rate else 400
    ins, outs = np.full(n, input_tokens), np.full(n, output_tokens)
    if rate:
        sim = simulate(step, kv, engine, ins, outs, arrivals=poisson_arrivals(n, rate, 7)).summary(0.2)
    else:
        assert concurrency is not None
        sim = simulate_users(step, kv, engine, ins, outs, concurrency, seed=7).summary(0.2)
    result = RunResult.model_validate(
        {
            "run_id": "r",
            "status": "ok",
            "load": "test",
            "metrics": {
                "ttft_ms": sim["ttft_ms"],
                "tpot_ms": sim["tpot_ms"],
                "output_tokens_per_s": sim["output_tokens_per_s"],
                "mean_input_tokens": input_tokens,
                "mean_output_tokens": output_tokens,
                "concurrency_mean": sim["running_mean"],
                "requests_ok": ok,
                "requests_failed": failed,
                "requests_total": ok + failed,
            },
            "client": client or {},
        }
    )
    spec_load = (
        {"kind": "poisson", "rate": rate} if rate else {"kind": "concurrency", "concurrency": concurrency}
    )
    return measured_from_run(result, {"load": spec_load})


def _calibrate(run: MeasuredRun) -> Calibration:
    return calibrate(DEP, fitted_efficiency(), EngineConfig(), run)


def test_every_efficiency_field_has_a_side() -> None:
    """A field Efficiency gains must be put on a side (or left out on purpose), not silently left unfitted."""
    sides = (*DECODE_FRACTIONS, *DECODE_COSTS, *PREFILL_FRACTIONS, *UNCALIBRATED)
    assert sorted(sides) == sorted(f.name for f in fields(fitted_efficiency()) if f.name != "source")


def test_split_efficiency_moves_each_side() -> None:
    base = fitted_efficiency()
    eff = base.split(0.5, 2.0, "x")
    assert eff.kv_bandwidth == pytest.approx(0.5 * base.kv_bandwidth)
    assert eff.step_overhead_s == pytest.approx(2 * base.step_overhead_s)  # a cost: slower decode, dearer
    assert eff.compute == pytest.approx(2 * base.compute) and eff.source == "x"
    one = base.split(0.7, 0.7, "s")  # one factor: every fraction times it, every cost divided by it, as before
    assert one.compute == pytest.approx(0.7 * base.compute) and one.kv_bandwidth == pytest.approx(0.7 * base.kv_bandwidth)
    assert one.allreduce_sync_s == pytest.approx(base.allreduce_sync_s / 0.7)
    assert one.request_overhead_s == base.request_overhead_s


@pytest.mark.parametrize(
    "load",
    [{"concurrency": 8}, {"rate": 1.0, "input_tokens": 2000, "output_tokens": 100}],
    ids=["closed-loop", "poisson"],
)
def test_recovers_known_prefill_and_decode_factors(load: dict[str, Any]) -> None:
    calibration = _calibrate(_run(0.7, 1.4, **load))
    assert calibration.decode_factor == pytest.approx(0.7, rel=0.03)
    assert calibration.prefill_factor == pytest.approx(1.4, rel=0.03)
    assert calibration.fitted_on == ("tpot", "ttft") and calibration.tied_because is None
    assert calibration.ttft_residual is not None and abs(calibration.ttft_residual) < 0.01
    assert calibration.tpot_residual is not None and abs(calibration.tpot_residual) < 0.01
    assert calibration.residual_pct < 1.0
    text = calibration.describe()
    assert f"decode x{calibration.decode_factor:.3f}, prefill x{calibration.prefill_factor:.3f}" in text
    assert "\n" not in text
    assert calibration.efficiency.compute == pytest.approx(1.4 * fitted_efficiency().compute, rel=0.03)


def test_without_ttft_prefill_follows_decode_and_says_so() -> None:
    calibration = _calibrate(replace(_run(0.6, 0.6), ttft_ms_p50=None))
    assert calibration.decode_factor == pytest.approx(0.6, rel=0.03) == calibration.prefill_factor
    assert calibration.fitted_on == ("tpot",) and calibration.ttft_residual is None
    assert "the run has no TTFT" in calibration.describe()


def _absurd_run() -> MeasuredRun:
    run = _run(1, 1)
    assert run.tpot_ms_p50 is not None
    return replace(run, tpot_ms_p50=100 * run.tpot_ms_p50)


def _badly_fitting_run() -> MeasuredRun:
    """32-token prompts: TTFT is one weight read whatever prefill compute does, so half of it fits no factor."""
    run = _run(1, 1, input_tokens=32, output_tokens=64)
    assert run.ttft_ms_p50 is not None
    return replace(run, ttft_ms_p50=run.ttft_ms_p50 / 2)


@pytest.mark.parametrize(
    ("run", "words"),
    [
        (
            lambda: _run(1, 1, client={"limited": True, "reason": "schedule lag p99 420 ms"}),
            ["client-limited", "schedule lag p99 420 ms", "--workers"],
        ),
        (lambda: _run(1, 1, ok=150, failed=250), ["250 of the run's 400 requests failed", "re-run"]),
        (lambda: _run(1, 1, ok=6), ["only 6 successful requests", "--duration"]),
        (_absurd_run, ["TPOT p50", "times slower than the published fit", "--current-gpu / --precision"]),
        (
            _badly_fitting_run,
            [
                "still misses the run's TTFT p50 by +100%",
                "±50%",
                "barely depends on prefill",
                "without --from-run",
            ],
        ),
    ],
    ids=["client-limited", "mostly-failed", "too-few", "absurd-tpot", "bad-fit"],
)
def test_refuses_with_one_line_naming_the_problem(run: Callable[[], MeasuredRun], words: list[str]) -> None:
    with pytest.raises(CapacityError) as caught:
        _calibrate(run())
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_refuses_tokens_per_s_of_an_open_loop_run() -> None:
    """Without TPOT, a Poisson run's tokens/s is its offered load: nothing to calibrate on."""
    with pytest.raises(CapacityError, match="offered load"):
        _calibrate(replace(_run(1, 1, rate=1.0), tpot_ms_p50=None))
