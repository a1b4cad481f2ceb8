"""Simulator speed: requests simulated per second of one core's CPU time.

    .venv/bin/python benchmarks/capacity_sim_speed.py

Workloads: Llama-3.1-8B bf16 on an RTX 4090 (KV-limited, preemptions) and an H100 SXM (batch-limited),
10,000 requests with lognormal-ish lengths, Poisson arrivals below and above capacity. CPU time
(``time.process_time``), so other jobs on a shared machine do not inflate it; best of 3.
"""

from __future__ import annotations

import json
import platform
import time

import numpy as np

from servewise.capacity import (
    Deployment,
    EngineConfig,
    StepModel,
    builtin_catalog,
    fitted_efficiency,
    get_model,
    memory_plan,
    poisson_arrivals,
    simulate,
    steady_state,
)


def case(gpu: str, load: float, n: int = 10_000) -> dict:
    dep = Deployment(get_model("llama-3.1-8b"), builtin_catalog().get(gpu), 1, "bf16", "bf16")
    engine = EngineConfig()
    rng = np.random.default_rng(0)
    ins = np.clip(rng.lognormal(np.log(600), 0.6, n), 16, 4000).astype(int)
    outs = np.clip(rng.lognormal(np.log(300), 0.7, n), 8, 2000).astype(int)
    kv = memory_plan(dep, int(ins.max() + outs.max()), engine).kv_capacity_tokens
    step = StepModel(dep, fitted_efficiency())
    capacity = steady_state(step, kv, engine, ins.mean(), outs.mean()).requests_per_s
    arrivals = poisson_arrivals(n, capacity * load, 1)
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        result = simulate(step, kv, engine, ins, outs, arrivals=arrivals)
        best = min(best, time.process_time() - started)
    summary = result.summary(0.1)
    return {"gpu": gpu, "load_vs_capacity": load, "requests": n, "cpu_s": round(best, 3),
            "requests_per_cpu_s": round(n / best), "engine_steps": result.steps,
            "preemptions": summary["preemptions"], "simulated_s": round(result.duration_s, 1)}


def main() -> None:
    rows = [case(gpu, load) for gpu in ("rtx4090", "h100-sxm") for load in (0.7, 1.5)]
    print(json.dumps({"python": platform.python_version(), "numpy": np.__version__,
                      "machine": platform.processor() or platform.machine(), "cases": rows}, indent=2))


if __name__ == "__main__":
    main()
