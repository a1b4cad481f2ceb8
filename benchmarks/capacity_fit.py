"""Fit the capacity model's efficiency constants to published measurements and report its projection error.

    .venv/bin/python benchmarks/capacity_fit.py [--csv ../shared/calibration/...csv] [--write]

Reports in-sample MAPE and leave-one-GPU-out (LOGO) MAPE of output tokens/s, beside two baselines:
one global efficiency (a single factor on both bandwidth and compute) and fixed textbook MFU/MBU
constants. ``--write`` stores the all-data fit, with its provenance, in the package's ``data/fit.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency_fit

from servewise.capacity.engines import EngineSettings, engine_profile
from servewise.capacity.hardware import builtin_catalog
from servewise.capacity.memory import Deployment, default_kv_precision, memory_plan
from servewise.capacity.models import get_model
from servewise.capacity.perf import Efficiency, SteadyState, StepModel, steady_state
from servewise.capacity.simulator import simulate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT / "benchmarks" / "capacity_calibration_trtllm-v0.14-llama-3.1-8b.csv"  # copy of ../shared/calibration
#: Stage 2 data: perf-overview tables of later TensorRT-LLM versions, never the v0.14 holdout's. Left out:
#: v0.15 (same hardware and nearly the same engine as v0.14: a fit on it would be a fit on the holdout's
#: twin), v0.20's first table (CUDA graphs off by mistake), DeepSeek rows (attention data parallel and expert
#: parallel, not tensor parallel).
TP_CSVS = tuple(ROOT / "benchmarks" / f"capacity_calibration_tp_trtllm-{name}.csv" for name in (
    "v0.17", "v0.19-llama-3.1-70b", "v0.20-llama-3.3-70b", "v0.20-llama-3.3-70b-b200-fp4", "v0.21-llama-3.3-70b",
    "v1.0", "v1.x-summary-pergpu"))
NOT_TENSOR_PARALLEL = ("deepseek-v3",)
FIT_JSON = ROOT / "src" / "servewise" / "capacity" / "data" / "fit.json"
#: TensorRT-LLM's offline benchmark runs large batches; the engine knobs are fixed (not fitted). Its default
#: capacity scheduler, GUARANTEED_NO_EVICT (trtllm-bench prints "Scheduling Policy: Guaranteed No Evict"),
#: reserves each request's prompt and whole output before admitting it.
ENGINE = EngineSettings(engine_profile("trtllm"))
#: Stage 1 (max throughput, one GPU). The KV-cache bandwidth starts here and moves to the latency stage, where
#: decode steps over long contexts (static batches, MHA models) identify it better than throughput rows do.
PARAMS = ("kv_bandwidth", "compute", "fp8_compute")
#: Starting values, which max-throughput rows hardly constrain (big batches hide weight reads and per-step
#: costs) yet decide small-batch latency: weight streaming and the step overhead are fitted in the latency
#: stage (``latency_fit.py``); the per-sequence overhead stays a prior.
PRIORS = {"weight_bandwidth": 0.8, "step_overhead_s": 0.0015, "per_seq_overhead_s": 0.0}
#: Fitted on multi-GPU throughput rows (stage 2).
STAGE2 = ("allreduce_bandwidth", "pcie_allreduce_bandwidth", "fp4_compute")


@dataclass(frozen=True)
class Row:
    gpu: str
    precision: str
    input_tokens: int
    output_tokens: int
    output_tokens_per_s: float


def read_rows(path: Path) -> list[Row]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return [Row(r["gpu"], r["precision"], int(r["input_tokens"]), int(r["output_tokens"]),
                float(r["output_tokens_per_s"])) for r in csv.DictReader(lines)]


def deployment(row: Row, model_name: str = "llama-3.1-8b", num_gpus: int = 1) -> Deployment:
    """The row's model on ``num_gpus`` GPUs (tensor parallel); fp16 rows run bf16, fp8 rows an fp8 KV cache."""
    weights = "bf16" if row.precision == "fp16" else row.precision
    return Deployment(get_model(model_name), builtin_catalog().get(row.gpu), num_gpus, weights,
                      default_kv_precision(weights))


def project(row: Row, eff: Efficiency, model_name: str = "llama-3.1-8b", num_gpus: int = 1) -> SteadyState:
    """The fluid steady state of the engine kept full of the row's requests."""
    dep = deployment(row, model_name, num_gpus)
    plan = memory_plan(dep, row.input_tokens + row.output_tokens, ENGINE.on(dep.gpu))
    return steady_state(StepModel(dep, eff), plan.kv_capacity_tokens, ENGINE.on(dep.gpu), row.input_tokens, row.output_tokens)


def predict(row: Row, eff: Efficiency, model_name: str = "llama-3.1-8b", num_gpus: int = 1) -> float:
    return project(row, eff, model_name, num_gpus).output_tokens_per_s


def simulate_row(row: Row, eff: Efficiency, model_name: str = "llama-3.1-8b", num_gpus: int = 1) -> float:
    """The discrete-event simulator on the same row: all requests offered at once, published lengths."""
    dep = deployment(row, model_name, num_gpus)
    kv = memory_plan(dep, row.input_tokens + row.output_tokens, ENGINE.on(dep.gpu)).kv_capacity_tokens
    fluid = steady_state(StepModel(dep, eff), kv, ENGINE.on(dep.gpu), row.input_tokens, row.output_tokens)
    n = int(min(6000, max(600, 4 * fluid.batch)))
    result = simulate(StepModel(dep, eff), kv, ENGINE.on(dep.gpu), np.full(n, row.input_tokens), np.full(n, row.output_tokens),
                      arrivals=np.zeros(n))
    return result.summary(0.25)["output_tokens_per_s"]


def fit(rows: list[Row], base: Efficiency | None = None, params: tuple[str, ...] = PARAMS) -> Efficiency:
    """Stage 1: the one-GPU throughput constants ``params``, the others (``base``: the priors, or the latency
    stage's values in a later round) held fixed."""
    base = base or Efficiency(**PRIORS)

    def efficiency_from(x: np.ndarray) -> Efficiency:
        return replace(base, **dict(zip(params, map(float, x), strict=True)))

    def residuals(x: np.ndarray) -> np.ndarray:
        eff = efficiency_from(x)
        return np.array([np.log(predict(r, eff) / r.output_tokens_per_s) for r in rows])

    x0 = np.array([{"kv_bandwidth": 0.7, "compute": 0.6, "fp8_compute": 0.45, "per_seq_overhead_s": 1e-6}[p]
                   for p in params])
    result = least_squares(residuals, x0, bounds=([0.0] * len(params), [1.0] * len(params)),
                           x_scale=np.maximum(x0, 1e-6))
    return efficiency_from(result.x)


@dataclass(frozen=True)
class TpRow:
    """A published row of any model on ``num_gpus`` GPUs (the TP calibration rows and the holdout)."""

    model: str
    num_gpus: int
    row: Row


def read_tp_rows(path: Path) -> list[TpRow]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return [TpRow(r["model"], int(r["num_gpus"]),
                  Row(r["gpu"], r["precision"], int(r["input_tokens"]), int(r["output_tokens"]),
                      float(r["output_tokens_per_s"]))) for r in csv.DictReader(lines)]


def read_stage2_rows(paths: tuple[Path, ...] = TP_CSVS) -> list[TpRow]:
    return [r for path in paths for r in read_tp_rows(path) if r.model not in NOT_TENSOR_PARALLEL]


def stage2_rows(rows: list[TpRow]) -> list[TpRow]:
    """What stage 2 fits on: the multi-GPU rows, and the fp4 rows at any width (one GPU has no all-reduce, so
    those identify the fp4 share alone)."""
    return [r for r in rows if r.num_gpus > 1 or r.row.precision == "fp4"]


def fit_tp(eff: Efficiency, rows: list[TpRow]) -> Efficiency:
    """Stage 2: with the one-GPU constants fixed, the share of the interconnect prior's bus bandwidth a
    tensor-parallel engine gets at large batches, and the share of peak Blackwell's fp4 tensor cores reach,
    from later TensorRT-LLM versions' max-throughput rows (``hardware.yaml`` carries the data-sheet bandwidth;
    the small-message latency is the latency stage's)."""
    fitted = stage2_rows(rows)

    def efficiency(x: np.ndarray) -> Efficiency:
        return replace(eff, **dict(zip(STAGE2, map(float, x), strict=True)))

    def residuals(x: np.ndarray) -> np.ndarray:
        e = efficiency(x)
        return np.array([np.log(predict(r.row, e, r.model, r.num_gpus) / r.row.output_tokens_per_s) for r in fitted])

    start = [max(getattr(eff, name), 0.1) for name in STAGE2]
    return efficiency(least_squares(residuals, start, bounds=([0.02] * len(STAGE2), [2.0] * len(STAGE2))).x)


def tp_mape(eff: Efficiency, rows: list[TpRow]) -> float:
    return 100 * float(np.mean([abs(predict(r.row, eff, r.model, r.num_gpus) / r.row.output_tokens_per_s - 1)
                                for r in stage2_rows(rows)]))


def fit_global(rows: list[Row]) -> Efficiency:
    """Baseline: one efficiency on every peak, no overhead."""
    def residuals(x: np.ndarray) -> np.ndarray:
        eff = Efficiency(x[0], x[0], x[0], x[0], 0.0, 0.0)
        return np.array([np.log(predict(r, eff) / r.output_tokens_per_s) for r in rows])

    (g,) = least_squares(residuals, [0.5], bounds=([0.01], [1.0])).x
    return Efficiency(g, g, g, g, 0.0, 0.0)


def mape(rows: list[Row], eff_for) -> tuple[float, list[tuple[Row, float]]]:
    pairs = [(r, predict(r, eff_for(r))) for r in rows]
    return 100 * float(np.mean([abs(p / r.output_tokens_per_s - 1) for r, p in pairs])), pairs


def logo(rows: list[Row], fitter) -> tuple[float, list[tuple[Row, float]]]:
    by_gpu = {g: fitter([r for r in rows if r.gpu != g]) for g in {r.gpu for r in rows}}
    return mape(rows, lambda r: by_gpu[r.gpu])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--write", action="store_true", help="store the all-data fit in data/fit.json")
    parser.add_argument("--simulate", action="store_true", help="also run each row through the simulator")
    args = parser.parse_args()
    rows = read_rows(args.csv)
    eff = fit(rows)
    in_sample, pairs = mape(rows, lambda r: eff)
    logo_mape, logo_pairs = logo(rows, fit)
    glob = fit_global(rows)
    glob_in, _ = mape(rows, lambda r: glob)
    glob_logo, _ = logo(rows, fit_global)
    textbook = Efficiency(0.8, 0.8, 0.5, 0.5, 0.0, 0.0)
    textbook_mape, _ = mape(rows, lambda r: textbook)
    print(f"fitted: {', '.join(f'{k}={getattr(eff, k):.4g}' for k in PARAMS)}")
    print(f"{'gpu':16} {'prec':5} {'in':>5} {'out':>5} {'measured':>9} {'fit':>9} {'err%':>6} {'LOGO':>9} {'err%':>6}")
    for (r, p), (_, q) in zip(pairs, logo_pairs, strict=True):
        print(f"{r.gpu:16} {r.precision:5} {r.input_tokens:5} {r.output_tokens:5} {r.output_tokens_per_s:9.1f} "
              f"{p:9.1f} {100 * (p / r.output_tokens_per_s - 1):+6.1f} {q:9.1f} "
              f"{100 * (q / r.output_tokens_per_s - 1):+6.1f}")
    if args.simulate:
        started = time.perf_counter()
        sims = [(r, simulate_row(r, eff)) for r in rows]
        sim_mape = 100 * float(np.mean([abs(p / r.output_tokens_per_s - 1) for r, p in sims]))
        worst = max(sims, key=lambda rp: abs(rp[1] / rp[0].output_tokens_per_s - 1))
        print(f"simulator with the fitted constants: MAPE {sim_mape:.1f}% (worst {worst[0].gpu} "
              f"{worst[0].input_tokens}/{worst[0].output_tokens}: {100 * (worst[1] / worst[0].output_tokens_per_s - 1):+.1f}%)"
              f" in {time.perf_counter() - started:.1f} s")
    print(f"model (3 fitted constants):  in-sample MAPE {in_sample:.1f}%  leave-one-GPU-out MAPE {logo_mape:.1f}%")
    tp_rows = read_stage2_rows()
    latency_rows = [r for r in latency_fit.read_rows()[0] if not r.held_out]
    before = tp_mape(eff, tp_rows)
    # Stages 2 and 3 share the tensor-parallel step (its bandwidth share and its per-ring-step latency), so they
    # are fitted in turn until they agree; each sees only its own rows.
    for _ in range(2):
        eff = latency_fit.fit_latency(latency_rows, fit_tp(eff, tp_rows))
        eff = fit(rows, eff)
    eff = fit_tp(eff, tp_rows)
    in_sample, pairs = mape(rows, lambda r: eff)
    print(f"after the latency stage: in-sample MAPE {in_sample:.1f}%")
    tp_after = tp_mape(eff, tp_rows)
    print(f"stage 2 on {len(stage2_rows(tp_rows))} rows of {len(TP_CSVS)} later TensorRT-LLM tables: "
          + ", ".join(f"{k}={getattr(eff, k):.3f}" for k in STAGE2) + f"; MAPE {before:.1f}% -> {tp_after:.1f}%")
    light = [r for r in latency_rows if latency_fit.light(r)]
    latency_errors = {m: latency_fit.mae(latency_fit.score(light, lambda r: eff), m)[1] for m in ("ttft", "tpot")}
    print(f"stage 3 on {len(light)} light-load latency rows (fit side of {latency_fit.CSV.name}): "
          + ", ".join(f"{k}={getattr(eff, k):.4g}" for k in latency_fit.LATENCY_PARAMS)
          + f"; TTFT {latency_errors['ttft']:.1f}%, TPOT {latency_errors['tpot']:.1f}% mean absolute error")
    print(f"one global efficiency ({glob.kv_bandwidth:.3f}): in-sample {glob_in:.1f}%  LOGO {glob_logo:.1f}%")
    print(f"textbook constants (MBU 0.8, MFU 0.5, no overhead): {textbook_mape:.1f}%")
    if args.write:
        FIT_JSON.write_text(json.dumps({
            "efficiency": {**{k: round(getattr(eff, k), 6) for k in (*PARAMS, *PRIORS)},
                           **{k: round(getattr(eff, k), 9) for k in (*STAGE2, *latency_fit.LATENCY_PARAMS)}},
            "priors_not_fitted": sorted(set(PRIORS) - set(latency_fit.LATENCY_PARAMS)),
            "engine": "trtllm (servewise.capacity.engines)",
            "provenance": {
                "data": args.csv.name, "rows": len(rows), "date": time.strftime("%Y-%m-%d"),
                "script": "benchmarks/capacity_fit.py --write", "objective": "least squares of log(pred/measured)",
                "in_sample_mape_pct": round(in_sample, 2), "logo_mape_pct": round(logo_mape, 2),
                "global_efficiency_logo_mape_pct": round(glob_logo, 2),
                "stage2": {"fitted": list(STAGE2), "data": [p.name for p in TP_CSVS],
                           "rows": len(stage2_rows(tp_rows)),
                           "source": "TensorRT-LLM v0.17-v1.x perf-overview tables: multi-GPU rows and B200 fp4 rows",
                           "objective": "least squares of log(pred/measured), stage-1 constants fixed",
                           "mape_pct_before": round(before, 2), "mape_pct_after": round(tp_after, 2)},
                "stage3": {"fitted": list(latency_fit.LATENCY_PARAMS), "data": latency_fit.CSV.name,
                           "sources": list(latency_fit.FIT_SOURCES), "rows": len(light),
                           "what": f"TTFT and TPOT at concurrency <= {latency_fit.LIGHT_LOAD}, fit side only",
                           "objective": "soft-L1 least squares of log(pred/published), throughput constants fixed",
                           "ttft_mae_pct": round(latency_errors["ttft"], 2),
                           "tpot_mae_pct": round(latency_errors["tpot"], 2)},
            },
        }, indent=2) + "\n")
        print(f"wrote {FIT_JSON}")


if __name__ == "__main__":
    main()
