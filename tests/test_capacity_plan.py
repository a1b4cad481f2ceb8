"""The tier planner, `servewise plan` (table and JSON), and `--from-run` calibration on a stored run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from servewise.capacity import (
    Deployment,
    EngineSettings,
    PlanRequest,
    SloLimit,
    StepModel,
    builtin_catalog,
    calibrate,
    engine_profile,
    fitted_efficiency,
    get_model,
    measured_from_run,
    memory_plan,
    parse_prefix_hit,
    parse_tiers,
    plan,
    poisson_arrivals,
    simulate,
    simulate_users,
)
from servewise.capacity.accuracy import Validation, accuracy_note, stored_validation
from servewise.capacity.calibrate import measured_prefix_hit
from servewise.cli import plan as plan_cli
from servewise.cli.app import ServewiseGroup
from servewise.results import RunResult
from servewise.spec import LengthSpec, LoadSpec, RunSpec, TargetSpec, WorkloadSpec
from servewise.store import RunStore

TIER_KEYS = {
    "gpu",
    "num_gpus",
    "fits",
    "max_concurrency",
    "output_tokens_per_s",
    "ttft_ms_p50",
    "ttft_is_lower_bound",
    "tpot_ms_p50",
    "rate_per_replica",
    "replicas",
    "price_per_hour",
    "cost_per_million_output_tokens",
}

VLLM = EngineSettings(engine_profile("vllm"))


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer(cls=ServewiseGroup)
    plan_cli.register(app)

    @app.callback()
    def _root() -> None:
        """servewise (test)"""

    return app


def _request(**kw) -> PlanRequest:
    base = dict(
        model=get_model("llama-3.1-8b"),
        weight_precision="bf16",
        kv_precision="bf16",
        input_tokens=1000,
        output_tokens=1000,
        tiers=parse_tiers("rtx4090,h100-sxm"),
        efficiency=fitted_efficiency(),
    )
    return PlanRequest(**{**base, **kw})


def test_faster_tier_serves_more_and_replicas_cover_demand() -> None:
    result = plan(
        _request(tiers=parse_tiers("rtx4090:1,h100-sxm:1"), demand=6.0, slo=(SloLimit("tpot", "p95", 60.0),)),
        builtin_catalog(),
    )
    small, big = result.tiers
    assert small.fits and big.fits
    assert big.rate_per_replica > 3 * small.rate_per_replica
    for tier in result.tiers:
        assert tier.replicas * tier.rate_per_replica >= 6.0
        assert (tier.replicas - 1) * tier.rate_per_replica < 6.0
        assert tier.tpot_ms_p50 is not None and tier.tpot_ms_p50 <= 60.0
        gpu = builtin_catalog().get(tier.gpu)
        per_token = gpu.price_per_hour * tier.num_gpus / (tier.rate_per_replica * 1000 * 3600) * 1e6
        assert tier.cost_per_million_output_tokens == pytest.approx(per_token)
    assert "h100-sxm" in result.recommendation.split(":")[0]
    assert "VRAM-limited" in small.bound


def test_tier_that_cannot_meet_the_slo_says_why() -> None:
    result = plan(
        _request(tiers=parse_tiers("l4:1"), demand=1.0, slo=(SloLimit("tpot", "p50", 20.0),)),
        builtin_catalog(),
    )
    (l4,) = result.tiers
    assert l4.fits and l4.rate_per_replica == 0 and l4.replicas is None
    assert "misses the SLO" in l4.bound and "tpot_p50" in l4.bound


def test_model_too_big_does_not_fit_and_tp_is_chosen() -> None:
    result = plan(
        _request(model=get_model("llama-3.1-70b"), tiers=parse_tiers("l4:1,h100-sxm")), builtin_catalog()
    )
    l4, h100 = result.tiers
    assert not l4.fits and "exceed" in l4.reason
    assert h100.fits and h100.num_gpus in (2, 4, 8)


def test_plan_json_has_exactly_the_issue_shape(cli: typer.Typer) -> None:
    out = CliRunner().invoke(
        cli,
        [
            "plan",
            "--model",
            "llama-3.1-8b",
            "--precision",
            "bf16",
            "--input-tokens",
            "1000",
            "--output-tokens",
            "1000",
            "--concurrency",
            "8",
            "--gpus",
            "rtx4090,a100-sxm-80gb,h100-sxm:2",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert list(data) == ["tiers", "recommendation", "prefix_hit_rate", "prefix_hit_source"]
    assert data["prefix_hit_rate"] == 0.0 and data["prefix_hit_source"] is None  # a cold cache, as before
    assert [t["gpu"] for t in data["tiers"]] == ["rtx4090", "a100-sxm-80gb", "h100-sxm"]
    assert data["tiers"][2]["num_gpus"] == 2
    for tier in data["tiers"]:
        assert set(tier) == TIER_KEYS
        assert tier["ttft_ms_p50"] > 0 and tier["tpot_ms_p50"] > 0
    assert data["tiers"][0]["tpot_ms_p50"] > data["tiers"][2]["tpot_ms_p50"]


def test_plan_table_and_bad_names(cli: typer.Typer) -> None:
    ok = CliRunner().invoke(cli, ["plan", "--model", "qwen2.5-7b", "--gpus", "l40s", "--price", "l40s=0.5"])
    assert ok.exit_code == 0, ok.output
    assert "Recommendation" in ok.output and "$0.50" in ok.output
    bad_gpu = CliRunner().invoke(cli, ["plan", "--model", "llama-3.1-8b", "--gpus", "h100sxm"])
    assert bad_gpu.exit_code == 2 and "did you mean h100-sxm" in bad_gpu.output
    assert "Traceback" not in bad_gpu.output
    bad_model = CliRunner().invoke(cli, ["plan", "--model", "llama3.1-8b"])
    assert bad_model.exit_code == 2 and "did you mean llama-3.1-8b" in bad_model.output
    both = CliRunner().invoke(cli, ["plan", "--model", "llama-3.1-8b", "--rate", "1", "--demand", "2"])
    assert both.exit_code == 2 and "at most one" in both.output


def test_plan_says_how_far_to_trust_it(cli: typer.Typer) -> None:
    """Both stored out-of-sample checks belong to the stored fit (a refit without `capacity_holdout.py --write`
    and `latency_fit.py --write` fails here), and `plan` quotes them: the multi-GPU throughput error only when a
    tier is multi-GPU, and the TTFT/TPOT error of the chosen engine profile only when latency is projected."""
    validation = stored_validation()
    through, latency = validation.throughput, validation.latency
    assert through is not None, "validation.json's throughput check was made on another fit: rerun capacity_holdout.py --write"
    assert latency is not None, "validation.json's latency check was made on another fit: rerun latency_fit.py --write"
    assert through.rows == through.one_gpu.rows + through.multi_gpu.rows
    assert 0 < through.one_gpu.mae_pct < through.multi_gpu.mae_pct < 100
    assert latency.ttft is not None and latency.tpot is not None and latency.ttft.rows >= latency.tpot.rows > 0
    one = CliRunner().invoke(cli, ["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm:1"])
    assert one.exit_code == 0, one.output
    text = " ".join(one.output.split())
    assert f"one GPU {through.one_gpu.mae_pct:g}% mean error" in text and "tensor-parallel" not in text
    assert "latency" not in text.split("accuracy:")[1]
    multi = CliRunner().invoke(cli, ["plan", "--model", "llama-3.1-70b", "--gpus", "h100-sxm:4"])
    assert f"tensor-parallel {through.multi_gpu.mae_pct:g}%" in " ".join(multi.output.split())
    # with a load, the latency error of that engine's held-out rows in that regime, or a plain "no rows"
    lmdeploy = latency.by_engine["lmdeploy"]["one_gpu"]
    loaded = CliRunner().invoke(cli, ["plan", "--model", "llama-3.1-8b", "--gpus", "a100-sxm-80gb:1",
                                      "--engine", "lmdeploy", "--concurrency", "8"])
    assert loaded.exit_code == 0, loaded.output
    text = " ".join(loaded.output.split())
    assert lmdeploy[0] is not None and f"latency (lmdeploy on one GPU): TTFT {lmdeploy[0].mae_pct:g}%" in text
    bad = CliRunner().invoke(cli, ["plan", "--model", "llama-3.1-8b", "--engine", "triton-llm"])
    assert bad.exit_code == 2 and "unknown engine 'triton-llm'" in bad.output and "Traceback" not in bad.output
    assert accuracy_note(Validation(None, None), "vllm", multi_gpu=True, latency=True) is None


def _synthetic_run(store_path, factor: float, *, input_tokens: int = 500, output_tokens: int = 200,
                   rate: float | None = None, prefix_hit: float = 0.0, cache: dict | None = None) -> str:
    """A bench run as `bench` would store it, measured on an rtx4090 whose stack is ``factor`` as fast
    (8 concurrent users, or Poisson arrivals at ``rate``), its engine serving ``prefix_hit`` of every
    prompt from its prefix cache; ``cache``: the run's ``metrics.cache``."""
    dep = Deployment(get_model("llama-3.1-8b"), builtin_catalog().get("rtx4090"), 1, "bf16", "bf16")
    engine = VLLM.on(dep.gpu)  # what `plan` assumes the run's server was
    kv = memory_plan(dep, input_tokens + output_tokens, engine).kv_capacity_tokens
    step = StepModel(dep, fitted_efficiency().split(factor, factor, "truth"), prefix_hit)
    ins, outs = np.full(400, input_tokens), np.full(400, output_tokens)
    if rate:
        sim = simulate(step, kv, engine, ins, outs, arrivals=poisson_arrivals(400, rate, 1)).summary(0.2)
    else:
        sim = simulate_users(step, kv, engine, ins, outs, 8, seed=5).summary(0.2)
    spec = RunSpec(
        target=TargetSpec(url="http://127.0.0.1:8000"),
        workload=WorkloadSpec(
            input_tokens=LengthSpec(kind="fixed", value=input_tokens),
            output_tokens=LengthSpec(kind="fixed", value=output_tokens),
        ),
        load=LoadSpec(kind="poisson", rate=rate) if rate else LoadSpec(kind="concurrency", concurrency=8),
    )
    with RunStore(store_path) as store:
        run_id = store.create_run(
            kind="bench",
            spec=spec.model_dump(mode="json"),
            labels={},
            tool_version="test",
            target={"url": "http://127.0.0.1:8000"},
            environment={},
        )
        store.finish_run(
            run_id,
            RunResult.model_validate({
                "run_id": run_id,
                "status": "ok",
                "load": f"poisson {rate}/s" if rate else "closed loop, 8 concurrent",
                "metrics": {
                    "tpot_ms": sim["tpot_ms"],
                    "ttft_ms": sim["ttft_ms"],
                    "output_tokens_per_s": sim["output_tokens_per_s"],
                    "mean_input_tokens": input_tokens,
                    "mean_output_tokens": output_tokens,
                    "concurrency_mean": sim["running_mean"],
                    **({"cache": cache} if cache is not None else {}),
                },
            }),
        )
    return run_id


def test_from_run_calibration_recovers_a_known_efficiency(tmp_path, cli: typer.Typer) -> None:
    store_path = tmp_path / "runs.db"
    run_id = _synthetic_run(store_path, factor=0.6)
    with RunStore(store_path) as store:
        row = store.get_run(run_id)
    measured = measured_from_run(row.measured, row.spec)
    assert measured.concurrency == 8 and measured.input_tokens == 500
    dep = Deployment(get_model("llama-3.1-8b"), builtin_catalog().get("rtx4090"), 1, "bf16", "bf16")
    calibration = calibrate(dep, fitted_efficiency(), VLLM.on(dep.gpu), measured)
    assert calibration.factor == pytest.approx(0.6, rel=0.05)
    args = [
        "plan",
        "--model",
        "llama-3.1-8b",
        "--gpus",
        "h100-sxm",
        "--concurrency",
        "8",
        "--store",
        str(store_path),
        "--json",
    ]
    plain = json.loads(CliRunner().invoke(cli, args).output)
    calibrated = CliRunner().invoke(cli, [*args, "--from-run", run_id, "--current-gpu", "rtx4090"])
    assert calibrated.exit_code == 0, calibrated.output
    table = CliRunner().invoke(cli, [*args[:-1], "--from-run", run_id, "--current-gpu", "rtx4090"])
    # calibrated on the user's run: the published checks still bound the model, widened by the fit's residual
    text = " ".join(table.output.split())
    assert "accuracy: throughput on" in text and "widened by the calibration's own residual" in text, text
    tiers = {t["gpu"]: t for t in json.loads(calibrated.output)["tiers"]}
    assert set(tiers) == {"rtx4090", "h100-sxm"}  # the current GPU joins the projection
    assert tiers["h100-sxm"]["tpot_ms_p50"] > 1.3 * plain["tiers"][0]["tpot_ms_p50"]
    assert tiers["rtx4090"]["tpot_ms_p50"] == pytest.approx(row.export_json()["metrics"]["tpot_ms"]["p50"], rel=0.1)
    missing = CliRunner().invoke(cli, [*args, "--from-run", "nope", "--current-gpu", "rtx4090"])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output


def test_prefix_hit_discounts_prefill_only(cli: typer.Typer) -> None:
    """Half of every 4,000-token prompt from the cache: TTFT loses half of its prefill share (one user, so
    TTFT is one prefill step: the fixed step and request overheads plus the prefill); TPOT and the KV fit stay."""
    cold, warm = (
        plan(_request(input_tokens=4000, output_tokens=50, tiers=parse_tiers("h100-sxm:1"), concurrency=1,
                      prefix_hit=hit), builtin_catalog())
        for hit in (0.0, 0.5)
    )
    (c,), (w,) = cold.tiers, warm.tiers
    eff = fitted_efficiency()
    prefill_ms = c.ttft_ms_p50 - 1e3 * (eff.step_overhead_s + eff.request_overhead_s)
    assert c.ttft_ms_p50 - w.ttft_ms_p50 == pytest.approx(0.5 * prefill_ms, rel=0.02)  # 85.2 -> 43.3 ms
    assert w.tpot_ms_p50 == pytest.approx(c.tpot_ms_p50, rel=0.01)  # decode reads the whole (cached) context
    assert (w.fits, w.max_concurrency) == (c.fits, c.max_concurrency)  # cached blocks still hold KV
    assert w.rate_per_replica > c.rate_per_replica  # prefill-heavy: less prefill, more requests per second
    assert (cold.prefix_hit_rate, warm.prefix_hit_rate) == (0.0, 0.5)
    args = ["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm:1", "--input-tokens", "4000",
            "--output-tokens", "50", "--concurrency", "1"]
    for flag in ("0.5", "50%"):
        out = CliRunner().invoke(cli, [*args, "--prefix-hit", flag, "--json"])
        assert out.exit_code == 0, out.output
        data = json.loads(out.output)
        assert (data["prefix_hit_rate"], data["prefix_hit_source"]) == (0.5, "flag")
        assert data["tiers"][0]["ttft_ms_p50"] == pytest.approx(w.ttft_ms_p50, abs=0.01)
    table = CliRunner().invoke(cli, [*args, "--prefix-hit", "50%"])
    assert "50% of every prompt's tokens served from cache (--prefix-hit)" in " ".join(table.output.split())


@pytest.mark.parametrize("value", ["1.5", "abc", "100%", "-0.1", "nan", "%"])
def test_bad_prefix_hit_is_one_line(cli: typer.Typer, value: str) -> None:
    out = CliRunner().invoke(cli, ["plan", "--model", "llama-3.1-8b", "--prefix-hit", value])
    assert out.exit_code == 2
    assert len(out.output.strip().splitlines()) == 1 and "--prefix-hit" in out.output, out.output
    assert "Traceback" not in out.output
    assert parse_prefix_hit("60%") == pytest.approx(0.6) and parse_prefix_hit("0") == 0.0


def test_from_run_uses_the_measured_prefix_hit(tmp_path, cli: typer.Typer) -> None:
    """A run measured with a warm cache (its engine served half of every 2,000-token prompt): `--from-run`
    takes the engine's counter over the cached-token and theoretical rates, says so, projects with it and
    calibrates the run's own prefill at it, so the GPU reads as fast as it is; `--prefix-hit` wins."""
    store_path = tmp_path / "runs.db"
    cache = {"theoretical_hit_rate": 0.6, "cached_tokens_ratio": 0.45, "engine_hit_rate": 0.5}
    run_id = _synthetic_run(store_path, 0.6, input_tokens=2000, output_tokens=100, rate=1.0, prefix_hit=0.5,
                            cache=cache)
    with RunStore(store_path) as store:
        row = store.get_run(run_id)
    measured = measured_from_run(row.measured, row.spec)
    assert (measured.prefix_hit, measured.prefix_hit_source) == (0.5, "engine")
    dep = Deployment(get_model("llama-3.1-8b"), builtin_catalog().get("rtx4090"), 1, "bf16", "bf16")
    warm = calibrate(dep, fitted_efficiency(), VLLM.on(dep.gpu), measured)
    cold = calibrate(dep, fitted_efficiency(), VLLM.on(dep.gpu), replace(measured, prefix_hit=0.0))
    assert warm.factor == pytest.approx(0.6, rel=0.02)  # 0.601
    assert cold.factor > 1.15 * warm.factor  # 0.733: read as a cold cache, the GPU would look 22% faster
    args = ["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm", "--input-tokens", "2000",
            "--output-tokens", "100", "--concurrency", "1", "--store", str(store_path),
            "--from-run", run_id, "--current-gpu", "rtx4090"]
    out = CliRunner().invoke(cli, [*args, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert (data["prefix_hit_rate"], data["prefix_hit_source"]) == (0.5, "engine")
    table = " ".join(CliRunner().invoke(cli, args).output.split())
    assert f"prefix cache: 50% from the engine's own prefix-cache counter, measured on run {run_id}" in table
    flag = json.loads(CliRunner().invoke(cli, [*args, "--prefix-hit", "0.2", "--json"]).output)
    assert (flag["prefix_hit_rate"], flag["prefix_hit_source"]) == (0.2, "flag")
    by_gpu = {t["gpu"]: t for t in flag["tiers"]}
    assert by_gpu["h100-sxm"]["ttft_ms_p50"] > {t["gpu"]: t for t in data["tiers"]}["h100-sxm"]["ttft_ms_p50"]


def test_measured_prefix_hit_falls_back_in_order() -> None:
    def result(**cache) -> RunResult:
        return RunResult.model_validate({"run_id": "r", "status": "ok", "load": "x",
                                         "metrics": {"cache": cache} if cache else {}})

    assert measured_prefix_hit(result(engine_hit_rate=0.4, cached_tokens_ratio=0.3)) == (0.4, "engine")
    assert measured_prefix_hit(result(cached_tokens_ratio=0.3, theoretical_hit_rate=0.5)) == (0.3, "cached_tokens")
    assert measured_prefix_hit(result(theoretical_hit_rate=0.5)) == (0.5, "theoretical")
    assert measured_prefix_hit(result(theoretical_hit_rate=1.0)) == (0.99, "theoretical")  # never all of a prompt
    assert measured_prefix_hit(result()) == (0.0, None)  # stored before release 0.2: a cold cache


def test_from_run_without_a_cache_outcome_projects_cold(tmp_path, cli: typer.Typer) -> None:
    """A run stored before release 0.2 has no `metrics.cache`: rate 0, no source, and the notes say so."""
    store_path = tmp_path / "runs.db"
    run_id = _synthetic_run(store_path, 0.6)
    args = ["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm", "--concurrency", "8", "--store",
            str(store_path), "--from-run", run_id, "--current-gpu", "rtx4090"]
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"]).output)
    assert (data["prefix_hit_rate"], data["prefix_hit_source"]) == (0.0, None)
    table = " ".join(CliRunner().invoke(cli, args).output.split())
    assert f"prefix cache: run {run_id} recorded no prefix hit rate; projected as a cold cache" in table
