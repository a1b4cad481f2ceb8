"""Check (and fit) the capacity model's latency side on published TTFT / TPOT tables.

    .venv/bin/python benchmarks/latency_fit.py [--rows] [--write]

Every row of ``latency_calibration_published.csv`` (sources in ``latency_calibration_sources.md``) is a
published measurement at a fixed concurrency or request rate. Each is replayed through the discrete-event
simulator with the engine profile of its engine, the row's GPU, tensor parallelism, precision and lengths,
and the stored constants; the simulator's TTFT and TPOT are compared with the published ones.

The rows are split by whole source (the split in ``latency_calibration_sources.md``): the latency constants
are fitted on the fit side only and the held-out side is never looked at while fitting. Reported: the mean
absolute error (|predicted / published - 1|) of TTFT and TPOT on both sides, per source, per regime (one
GPU, tensor parallel) and per engine profile, plus leave-one-GPU-out and leave-one-engine-out on the fit
side. ``--write`` stores the latency stage in ``data/fit.json`` and its errors in ``data/validation.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from servewise.capacity.engines import EngineProfile, EngineSettings, engine_profile
from servewise.capacity.errors import CapacityError
from servewise.capacity.hardware import builtin_catalog
from servewise.capacity.memory import Deployment, EngineConfig, default_kv_precision, memory_plan
from servewise.capacity.models import get_model
from servewise.capacity.perf import Efficiency, StepModel, fitted_efficiency
from servewise.capacity.simulator import poisson_arrivals, simulate, simulate_users
from servewise.capacity.speculative import Speculation, parse_speculation

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "benchmarks" / "latency_calibration_published.csv"
FIT_JSON = ROOT / "src" / "servewise" / "capacity" / "data" / "fit.json"
VALIDATION_JSON = ROOT / "src" / "servewise" / "capacity" / "data" / "validation.json"

#: The split, by whole source, fixed before any fitting (latency_calibration_sources.md).
FIT_SOURCES = ("dli_nim_genaiperf_llama3", "dli_trtllm090_static", "vultr_b200_vllm_concurrency",
               "zhjunqin_rtx3090_sharegpt")
HOLDOUT_SOURCES = ("nim_docs_perf_llama33_70b", "trtllm_v05_perf_doc_ftl", "lmdeploy_v010a1_a100_static",
                   "gpustack_qwen3_8b_h100_latency", "mushfiq_rtx4090_mistral7b")
#: Offline static-batch benchmarks: the whole batch is admitted at once, prefilled in one pass, no queue.
STATIC_SOURCES = ("dli_trtllm090_static", "trtllm_v05_perf_doc_ftl", "lmdeploy_v010a1_a100_static")

#: Static benchmarks that allocate the whole batch up front (TensorRT-LLM's session benchmark): a published row
#: proves its batch fit in memory. LMDeploy's profile_generation queues what does not fit instead.
WHOLE_BATCH = ("dli_trtllm090_static", "trtllm_v05_perf_doc_ftl")
#: Sources run with random weights: fine for dense matmuls, not for an MoE whose routing decides which experts
#: a step reads.
FAKE_WEIGHTS = ("dli_trtllm090_static",)
MOE = ("mixtral-8x7b",)

GPUS = {"H100-80GB": "h100-sxm", "H100-SXM-80GB": "h100-sxm", "H100-80GB-HBM3": "h100-sxm",
        "A100-SXM4-80GB": "a100-sxm-80gb", "A100-80GB": "a100-sxm-80gb", "A100 (memory size not stated)":
        "a100-sxm-80gb", "H200-141GB": "h200-sxm", "L40S-48GB": "l40s", "L40-48GB": "l40", "H100-NVL": "h100-nvl",
        "GH200-120GB": "gh200", "B200": "b200", "RTX 3090 24GB": "rtx3090", "RTX 4090 24GB": "rtx4090"}
MODELS = {"Llama-3.3-70B-Instruct": "llama-3.3-70b", "Llama-3-8B-Instruct": "llama-3.1-8b",
          "Meta-Llama-3-8B-Instruct": "llama-3.1-8b", "Llama-3-70B-Instruct": "llama-3.1-70b",
          "Llama-2-70B": "llama-2-70b", "LLaMA-70B (Llama-2-70B)": "llama-2-70b", "Llama-2-7B": "llama-2-7b",
          "LLaMA-7B (Llama-2-7B)": "llama-2-7b", "Mixtral-8x7B": "mixtral-8x7b", "Qwen3-8B": "qwen3-8b",
          "Mistral-7B-Instruct-v0.3": "mistral-7b"}
ENGINES = {"NIM (TensorRT-LLM backend)": "trtllm", "TensorRT-LLM": "trtllm", "vLLM": "vllm", "SGLang": "sglang",
           "LMDeploy (TurboMind)": "lmdeploy"}


@dataclass(frozen=True)
class LatencyRow:
    source: str
    engine: str  # the engine profile's name
    model: str
    gpu: str
    precision: str
    tp: int
    isl: int
    osl: int
    concurrency: int | None
    rate: float | None
    ttft_ms: float | None
    tpot_ms: float | None  # TPOT, or ITL where the source names it so (per output token either way)
    #: speculative decoding as run (acceptance length from the row's own ITL / TPOT: what is checked is the
    #: cost of a verify step and its draft passes)
    speculation: Speculation | None = None

    @property
    def held_out(self) -> bool:
        return self.source in HOLDOUT_SOURCES

    @property
    def static(self) -> bool:
        return self.source in STATIC_SOURCES

    def label(self) -> str:
        load = f"c={self.concurrency}" if self.concurrency else f"rate={self.rate:g}"
        return (f"{self.source[:18]:18} {self.engine:8} {self.model:13} {self.gpu:13} TP{self.tp} "
                f"{self.precision:4} {self.isl:>5}/{self.osl:<5} {load}")


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


def read_rows(path: Path = CSV) -> tuple[list[LatencyRow], list[str]]:
    """The rows the capacity model can replay, and a reason for each it cannot."""
    rows: list[LatencyRow] = []
    skipped: list[str] = []
    for r in csv.DictReader(path.open()):
        model, gpu = MODELS.get(r["model"]), GPUS.get(r["gpu"])
        if model is None or gpu is None or not _known(model, gpu):
            skipped.append(f"{r['source_id']}: {r['model']} on {r['gpu']} (not in the catalog)")
            continue
        if r["source_id"] in FAKE_WEIGHTS and model in MOE:
            skipped.append(f"{r['source_id']}: {r['model']} (fake weights: a random router is not a trained one; "
                           "TPOT at batch 32 is under the time to stream the experts every token needs)")
            continue
        precision = "fp8" if r["precision"].startswith("fp8") else "bf16"
        tpot = _number(r["tpot_ms"]) or _number(r["itl_ms"])
        rows.append(LatencyRow(r["source_id"], ENGINES[r["engine"]], model, gpu, precision, int(r["tp"]),
                               round(float(r["isl"])), max(1, round(float(r["osl"]))),
                               int(float(r["concurrency"])) if r["concurrency"] else None,
                               _number(r["request_rate"]), _number(r["ttft_ms"]), tpot,
                               parse_speculation(r["speculative"]) if r.get("speculative") else None))
    return rows, skipped


def _known(model: str, gpu: str) -> bool:
    try:
        get_model(model), builtin_catalog().get(gpu)
    except CapacityError:
        return False
    return True


@cache
def _deployment(model: str, gpu: str, tp: int, precision: str) -> Deployment:
    return Deployment(get_model(model), builtin_catalog().get(gpu), tp, precision, default_kv_precision(precision))


def _static_engine(row: LatencyRow, engine: EngineConfig) -> EngineConfig:
    """An offline static batch: every request admitted at once and prefilled together before decoding."""
    batch = row.concurrency or 1
    return replace(engine, max_num_seqs=max(batch, engine.max_num_seqs),
                   max_batched_tokens=max(batch * row.isl, engine.max_batched_tokens), chunked_prefill=False)


def predict(row: LatencyRow, eff: Efficiency, profile: EngineProfile | None = None) -> tuple[float, float]:
    """(TTFT ms, TPOT ms) the simulator gives for the row: means over the requests after a warm-up."""
    profile = profile or engine_profile(row.engine)
    dep = _deployment(row.model, row.gpu, row.tp, row.precision)
    engine = EngineSettings(profile).on(dep.gpu)
    engine = _static_engine(row, engine) if row.static else engine
    kv = memory_plan(dep, row.isl + row.osl, engine).kv_capacity_tokens
    if row.source in WHOLE_BATCH:  # the benchmark ran the batch at once, so its KV cache held it
        kv = max(kv, (row.concurrency or 1) * (row.isl + row.osl))
    # an offline benchmark times the engine alone: no HTTP, no tokenizer, no server in front of it
    step = StepModel(dep, replace(eff, request_overhead_s=0.0) if row.static else eff, speculation=row.speculation)
    steps = max(1, round(row.speculation.virtual_outputs(row.osl))) if row.speculation else row.osl
    if row.static:
        n = row.concurrency or 1
        result = simulate(step, kv, engine, np.full(n, row.isl), np.full(n, steps), arrivals=np.zeros(n))
        warmup = 0.0
    elif row.concurrency:
        n = int(min(max(12 * row.concurrency, 60), 3000))
        result = simulate_users(step, kv, engine, np.full(n, row.isl), np.full(n, steps), row.concurrency)
        warmup = 0.5
    else:
        assert row.rate is not None
        n = 300
        result = simulate(step, kv, engine, np.full(n, row.isl), np.full(n, steps),
                          arrivals=poisson_arrivals(n, row.rate, 1))
        warmup = 0.1
    summary = result.counting(np.full(n, row.osl)).summary(warmup)
    return summary["ttft_ms"]["mean"], summary["tpot_ms"]["mean"] if row.osl > 1 else float("nan")


@dataclass(frozen=True)
class Scored:
    row: LatencyRow
    ttft_ms: float
    tpot_ms: float

    @property
    def ttft_error(self) -> float | None:
        return self.ttft_ms / self.row.ttft_ms - 1 if self.row.ttft_ms else None

    @property
    def tpot_error(self) -> float | None:
        return self.tpot_ms / self.row.tpot_ms - 1 if self.row.tpot_ms and self.row.osl > 1 else None


def score(rows: Iterable[LatencyRow], eff_for: Callable[[LatencyRow], Efficiency]) -> list[Scored]:
    return [Scored(r, *predict(r, eff_for(r))) for r in rows]


def mae(scored: Iterable[Scored], metric: str) -> tuple[int, float]:
    """(rows with the metric, mean absolute error in %)."""
    errors = [e for s in scored if (e := getattr(s, f"{metric}_error")) is not None]
    return len(errors), 100 * float(np.mean(np.abs(errors))) if errors else float("nan")


#: The latency stage's constants (in the units the fit works in) and their bounds.
LATENCY_PARAMS = {"weight_bandwidth": (1.0, 0.8, 0.3, 1.0), "step_overhead_s": (1e-3, 1.5, 0.0, 10.0),
                  "request_overhead_s": (1e-3, 3.0, 0.0, 50.0), "allreduce_sync_s": (1e-6, 2.0, 0.0, 50.0)}
#: Rows at or under this concurrency are the latency regime the stage is fitted on: step times, not queues.
#: Above it the scheduler and the engine's throughput decide (the throughput stages), and a latency constant
#: stretched to fit a queue would be wrong at low load.
LIGHT_LOAD = 16


def light(row: LatencyRow) -> bool:
    """At most LIGHT_LOAD requests in flight: the concurrency, or for an open rate Little's law on the
    published latencies (rate x (TTFT + output x TPOT))."""
    if row.concurrency is not None:
        return row.concurrency <= LIGHT_LOAD
    if row.rate is None or row.ttft_ms is None or row.tpot_ms is None:
        return False
    return row.rate * (row.ttft_ms + (row.osl - 1) * row.tpot_ms) / 1e3 <= LIGHT_LOAD


def with_latency(base: Efficiency, x: Iterable[float]) -> Efficiency:
    return replace(base, **{name: float(v) * unit for (name, (unit, *_)), v in zip(LATENCY_PARAMS.items(), x,
                                                                                    strict=True)})


def fit_latency(rows: list[LatencyRow], base: Efficiency) -> Efficiency:
    """The latency stage: with the throughput constants fixed, the constants that decide decode and small-batch
    latency (streaming the weights and the KV cache, per-step and per-request overheads, the cost per
    all-reduce ring step), by least squares
    of log(predicted / published) TTFT and TPOT over light-load rows; soft L1, so one odd row cannot pull the
    constants that every other row agrees on. Every source weighs the same whatever its row count: a
    benchmark file of a thousand rows of one engine version would otherwise decide the constants alone."""
    fitted = [r for r in rows if light(r)]
    per_source = {r.source: 0 for r in fitted}
    for r in fitted:
        per_source[r.source] += 1
    weight = {source: 1 / np.sqrt(n) for source, n in per_source.items()}

    def residuals(x: np.ndarray) -> np.ndarray:
        eff = with_latency(base, x)
        out: list[float] = []
        for r in fitted:
            ttft, tpot = predict(r, eff)
            if r.ttft_ms:
                out.append(weight[r.source] * float(np.log(ttft / r.ttft_ms)))
            if r.tpot_ms and r.osl > 1:
                out.append(weight[r.source] * float(np.log(tpot / r.tpot_ms)))
        return np.array(out)

    start = [getattr(base, name) / unit if getattr(base, name) else x0
             for name, (unit, x0, _, _) in LATENCY_PARAMS.items()]
    lower, upper = zip(*((lo, hi) for _, _, lo, hi in LATENCY_PARAMS.values()), strict=True)
    start = [min(max(v, lo), hi) for v, lo, hi in zip(start, lower, upper, strict=True)]
    result = least_squares(residuals, start, bounds=(lower, upper), loss="soft_l1", f_scale=0.2 * min(weight.values()),
                           diff_step=0.05)
    return with_latency(base, result.x)


def print_groups(title: str, scored: list[Scored], key: Callable[[Scored], str]) -> None:
    groups: dict[str, list[Scored]] = {}
    for s in scored:
        groups.setdefault(key(s), []).append(s)
    print(f"\n{title:40} {'TTFT rows':>9} {'MAE%':>6} {'TPOT rows':>9} {'MAE%':>6}")
    for name in sorted(groups):
        (nt, et), (np_, ep) = mae(groups[name], "ttft"), mae(groups[name], "tpot")
        print(f"{name:40} {nt:9} {et:6.1f} {np_:9} {ep:6.1f}")


def regime(row: LatencyRow) -> str:
    return "one_gpu" if row.tp == 1 else "multi_gpu"


def figure(scored: list[Scored], metric: str) -> dict[str, float | int] | None:
    n, error = mae(scored, metric)
    return {"rows": n, "mae_pct": round(error, 1)} if n else None


def leave_one_out(rows: list[LatencyRow], base: Efficiency, key: Callable[[LatencyRow], str]) -> list[Scored]:
    """Refit the latency stage without each group of fit-side rows and score that group's light rows."""
    out: list[Scored] = []
    for group in sorted({key(r) for r in rows}):
        eff = fit_latency([r for r in rows if key(r) != group], base)
        out += score([r for r in rows if key(r) == group and light(r)], lambda r, eff=eff: eff)
    return out


def write_validation(held_out: list[Scored], logo: list[Scored], loeo: list[Scored], fit: dict) -> None:
    """The held-out errors per engine profile and regime, which `servewise plan` quotes; the file's other
    sections (the throughput check) are kept."""
    by_engine: dict[str, dict[str, dict[str, object]]] = {}
    for s in held_out:
        by_engine.setdefault(s.row.engine, {}).setdefault(regime(s.row), {})
    for engine, regimes in by_engine.items():
        for name in regimes:
            group = [s for s in held_out if s.row.engine == engine and regime(s.row) == name]
            regimes[name] = {"ttft": figure(group, "ttft"), "tpot": figure(group, "tpot")}
    data = json.loads(VALIDATION_JSON.read_text()) if VALIDATION_JSON.exists() else {}
    data["latency"] = {
        "held_out": {"ttft": figure(held_out, "ttft"), "tpot": figure(held_out, "tpot")},
        "by_engine": by_engine,
        "leave_one_gpu_out": {"ttft": figure(logo, "ttft"), "tpot": figure(logo, "tpot")},
        "leave_one_engine_out": {"ttft": figure(loeo, "ttft"), "tpot": figure(loeo, "tpot")},
        "fit": fit,
        "provenance": {"data": CSV.name, "sources": list(HOLDOUT_SOURCES), "rows": len(held_out),
                       "date": time.strftime("%Y-%m-%d"), "script": "benchmarks/latency_fit.py --write",
                       "what": "TTFT and TPOT means at a fixed concurrency or rate vs published rows of "
                               "sources never fitted on"},
    }
    VALIDATION_JSON.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {VALIDATION_JSON.relative_to(ROOT)}")


def print_rows(scored: list[Scored]) -> None:
    nan = float("nan")
    print(f"{'row':94} {'TTFT':>8} {'pred':>8} {'err%':>5} {'TPOT':>7} {'pred':>7} {'err%':>5}")
    for s in scored:
        r, te, pe = s.row, s.ttft_error, s.tpot_error
        print(f"{r.label():94} {r.ttft_ms or nan:8.1f} {s.ttft_ms:8.1f} {100 * te if te is not None else nan:+5.0f} "
              f"{r.tpot_ms or nan:7.2f} {s.tpot_ms:7.2f} {100 * pe if pe is not None else nan:+5.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", action="store_true", help="print every row")
    parser.add_argument("--loo", action="store_true",
                        help="also refit leaving out each GPU and each engine of the fit side (slow)")
    parser.add_argument("--write", action="store_true",
                        help="store the held-out errors in data/validation.json (implies --loo)")
    args = parser.parse_args()
    rows, skipped = read_rows()
    eff = fitted_efficiency()
    started = time.perf_counter()
    scored = score(rows, lambda r: eff)
    elapsed = time.perf_counter() - started
    if args.rows:
        print_rows(scored)
    print(f"constants: {eff.source}")
    print_groups("source", scored, lambda s: s.row.source)
    print_groups("side, load, regime", scored, lambda s: f"{'holdout' if s.row.held_out else 'fit':7} "
                 f"{'light' if light(s.row) else 'loaded'} {'TP1' if s.row.tp == 1 else 'TP>1'} "
                 f"{'static' if s.row.static else 'serving'}")
    print_groups("side, engine", scored, lambda s: f"{'holdout' if s.row.held_out else 'fit':7} {s.row.engine}")
    held_out = [s for s in scored if s.row.held_out]
    for metric in ("ttft", "tpot"):
        n, error = mae(held_out, metric)
        print(f"held out: {metric.upper()} mean absolute error {error:.1f}% on {n} rows")
    logo = loeo = []
    if args.loo or args.write:
        fit_rows = [r for r in rows if not r.held_out]
        logo = leave_one_out(fit_rows, eff, lambda r: r.gpu)
        loeo = leave_one_out(fit_rows, eff, lambda r: r.engine)
        for name, group in (("leave-one-GPU-out", logo), ("leave-one-engine-out", loeo)):
            print(f"{name} (fit side, light load): TTFT {mae(group, 'ttft')[1]:.1f}% on {mae(group, 'ttft')[0]} "
                  f"rows, TPOT {mae(group, 'tpot')[1]:.1f}% on {mae(group, 'tpot')[0]}")
    print(f"\n{len(rows)} rows replayed in {elapsed:.1f} s; skipped {len(skipped)}:")
    for reason in sorted(set(skipped)):
        print(f"  {reason}")
    if args.write:
        write_validation(held_out, logo, loeo, eff.to_dict())


if __name__ == "__main__":
    sys.exit(main())
