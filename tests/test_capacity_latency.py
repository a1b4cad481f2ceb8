"""The latency side of the capacity model: engine profiles, closed-loop users that drift apart, all-reduces
timed as engines run them, fp4 and MLA, and the stored fit, its held-out figures and the code agreeing."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from servewise.capacity import (
    Deployment,
    EngineSettings,
    PlanRequest,
    StepModel,
    TierResult,
    builtin_catalog,
    engine_profile,
    fitted_efficiency,
    get_model,
    memory_plan,
    parse_tiers,
    plan,
    simulate,
    simulate_users,
)
from servewise.capacity.accuracy import stored_validation
from servewise.capacity.hardware import tensor_parallel_link


def test_vllm_defaults_follow_the_gpu_and_flags_win() -> None:
    """vLLM V1's EngineArgs.get_batch_defaults: 70+ GiB GPUs other than the A100 get 8192 tokens and 1024
    sequences, the others 2048 and 256; SGLang's chunk follows GPU memory; TensorRT-LLM reserves outputs."""
    catalog = builtin_catalog()
    vllm = EngineSettings(engine_profile("vllm"))
    assert (vllm.on(catalog.get("h100-sxm")).max_batched_tokens, vllm.on(catalog.get("h100-sxm")).max_num_seqs) == (
        8192, 1024)
    for small in ("a100-sxm-80gb", "rtx4090", "l40s"):
        config = vllm.on(catalog.get(small))
        assert (config.max_batched_tokens, config.max_num_seqs) == (2048, 256), small
    assert EngineSettings(engine_profile("SGLang")).on(catalog.get("rtx4090")).max_batched_tokens == 2048
    assert EngineSettings(engine_profile("sglang")).on(catalog.get("l40s")).max_batched_tokens == 4096
    assert EngineSettings(engine_profile("TensorRT-LLM")).on(catalog.get("h100-sxm")).guaranteed_no_evict
    mine = EngineSettings(engine_profile("vllm"), max_num_seqs=64, max_batched_tokens=4096).on(catalog.get("h100-sxm"))
    assert (mine.max_num_seqs, mine.max_batched_tokens, mine.chunked_prefill) == (64, 4096, True)


def test_closed_loop_users_drift_apart() -> None:
    """Four users of fixed 256/128 requests that all start at 0 stay in lock step in a deterministic
    simulation: every prompt waits in one four-prompt step (118 ms on an RTX 4090). Started at random phases,
    as a long benchmark's users end up, a prompt mostly runs alone (31 ms) beside decodes; throughput is the
    same either way, since the work is."""
    gpu = builtin_catalog().get("rtx4090")
    dep = Deployment(get_model("mistral-7b"), gpu, 1, "bf16", "bf16")
    engine = EngineSettings(engine_profile("vllm")).on(gpu)
    step = StepModel(dep, fitted_efficiency())
    kv = memory_plan(dep, 384, engine).kv_capacity_tokens
    ins, outs = np.full(200, 256), np.full(200, 128)
    lock = simulate(step, kv, engine, ins, outs, concurrency=4).summary(0.25)
    drift = simulate_users(step, kv, engine, ins, outs, 4).summary(0.25)
    api = 1e3 * fitted_efficiency().request_overhead_s
    four, one = 1e3 * step.step_time(1024, 0, 0, 4 * 256 * 128, 4), 1e3 * step.step_time(256, 0, 0, 256 * 128, 1)
    assert lock["ttft_ms"]["mean"] == pytest.approx(four + api, rel=0.01)
    assert one + api < drift["ttft_ms"]["mean"] < (one + four) / 2 + api
    assert drift["output_tokens_per_s"] == pytest.approx(lock["output_tokens_per_s"], rel=0.05)


def test_small_all_reduces_cost_latency_and_bridged_pairs_use_their_bridge() -> None:
    """A decode step of one token carries 2 x layers all-reduces of 16 KiB: their fixed cost per ring step
    (link prior + the fitted engine cost) decides TP latency, not the bandwidth. An H100 NVL pair all-reduces
    over its NVLink bridge; four of them cross PCIe."""
    eff = fitted_efficiency()
    catalog = builtin_catalog()
    h100 = catalog.get("h100-sxm")
    model = get_model("llama-3.1-70b")
    prior, _ = tensor_parallel_link(h100, 8)
    fixed = 2 * model.layers * prior.latency_s(8, eff.allreduce_sync_s)
    assert fixed == pytest.approx(2 * 80 * 14 * (prior.hop_latency_s + eff.allreduce_sync_s))
    one, two, four, eight = (StepModel(Deployment(model, h100, n, "bf16", "bf16"), eff).step_time(0, 1, 2000)
                             for n in (1, 2, 4, 8))
    assert one > two > four > eight  # the old per-ring-step constant made TP8 slower than TP4 at batch 1
    no_comm = StepModel(Deployment(model, h100, 8, "bf16", "bf16"), eff).weight_read_s(1)
    assert eight - no_comm - eff.step_overhead_s == pytest.approx(fixed, rel=0.1)
    nvl = catalog.get("h100-nvl")
    assert tensor_parallel_link(nvl, 2)[0].kind == "nvlink" and tensor_parallel_link(nvl, 2)[1] == 300
    assert tensor_parallel_link(nvl, 4)[0].kind == "pcie"


def test_fp4_runs_on_blackwell_fp4_cores_and_mla_reads_the_whole_latent() -> None:
    """fp4 weights on a B200: prefill at the fp4 peak times its fitted share; on an H100 (no fp4 tensor cores)
    the same weights are multiplied in 16 bits. An MLA model's latent belongs to every head, so each GPU of a
    TP group reads all of it: per-token KV read time does not shrink with TP."""
    eff = fitted_efficiency()
    catalog = builtin_catalog()
    model = get_model("llama-3.3-70b")
    b200 = catalog.get("b200")
    assert b200.fp4_tflops is not None
    step = StepModel(Deployment(model, b200, 1, "fp4", "fp8"), eff)
    tokens = 8192
    compute_s = 2 * model.matmul_params_per_token * tokens / (b200.fp4_tflops * 1e12 * eff.fp4_compute)
    assert step.weight_read_s(tokens) < compute_s
    assert step.step_time(tokens, 0, 0) >= compute_s
    hopper = StepModel(Deployment(model, catalog.get("h100-sxm"), 1, "fp4", "fp8"), eff)
    assert hopper.step_time(tokens, 0, 0) > 2 * step.step_time(tokens, 0, 0)
    deepseek = get_model("deepseek-v3")
    h200 = catalog.get("h200-sxm")
    mla1, mla8 = (StepModel(Deployment(deepseek, h200, n, "fp8", "fp8"), eff) for n in (1, 8))
    llama1, llama8 = (StepModel(Deployment(model, h200, n, "fp8", "fp8"), eff) for n in (1, 8))
    # the KV-read side of a decode step's attention (the roofline's other side is the attention FLOPs)
    assert mla8._s_per_kv_token == pytest.approx(mla1._s_per_kv_token)
    assert llama8._s_per_kv_token == pytest.approx(llama1._s_per_kv_token / 8)


def test_the_stored_fit_its_held_out_figures_and_the_code_agree() -> None:
    """`data/validation.json` holds what the code gives today with the stored fit on the held-out rows: a
    change to the step model, the simulator or an engine profile without rerunning `latency_fit.py --write`
    and `capacity_holdout.py --write` fails here. And the held-out figures meet the bar they were built for."""
    latency_fit = load_benchmark("latency_fit")
    rows, _ = latency_fit.read_rows()
    eff = fitted_efficiency()
    held_out = latency_fit.score([r for r in rows if r.held_out], lambda r: eff)
    validation = stored_validation()
    assert validation.latency is not None and validation.throughput is not None
    for metric, stored in (("ttft", validation.latency.ttft), ("tpot", validation.latency.tpot)):
        n, error = latency_fit.mae(held_out, metric)
        assert stored is not None and (n, round(error, 1)) == (stored.rows, stored.mae_pct), metric
    assert validation.latency.tpot is not None and validation.latency.tpot.mae_pct <= 15
    assert validation.latency.ttft is not None and validation.latency.ttft.mae_pct <= 25
    holdout = load_benchmark("capacity_holdout")
    cases = holdout.read_tp_rows(holdout.DEFAULT_CSV)
    one = [abs(holdout.project(c.row, eff, c.model, c.num_gpus).output_tokens_per_s / c.row.output_tokens_per_s - 1)
           for c in cases if c.num_gpus == 1]
    assert round(100 * float(np.mean(one)), 1) == validation.throughput.one_gpu.mae_pct


def test_ttft_near_the_knee_is_a_lower_bound() -> None:
    """A load within 20% of a tier's saturation is flagged: its TTFT is mostly queueing. Light load is not."""

    def tier(concurrency: int | None = None, rate: float | None = None) -> TierResult:
        request = PlanRequest(model=get_model("llama-3.1-8b"), weight_precision="bf16", kv_precision="bf16",
                              input_tokens=1000, output_tokens=200, tiers=parse_tiers("rtx4090:1"),
                              efficiency=fitted_efficiency(), concurrency=concurrency, rate=rate)
        return plan(request, builtin_catalog()).tiers[0]

    assert not tier(concurrency=2).near_knee and tier(concurrency=200).near_knee
    saturation = tier(concurrency=1).rate_per_replica
    assert saturation is not None
    assert tier(rate=0.9 * saturation).near_knee and not tier(rate=0.3 * saturation).near_knee
