"""Check the fitted capacity model on published measurements it was not fitted on (out of sample).

    .venv/bin/python benchmarks/capacity_holdout.py [--csv benchmarks/capacity_holdout.csv] [--rows] [--simulate] [--write]

Projects every row of the holdout CSV (larger models, tensor parallelism, MoE, other input/output lengths,
GPUs and precisions of the same TensorRT-LLM v0.14 table) with exactly the machinery ``capacity_fit.py``
uses for the calibration rows: the constants stored in ``data/fit.json``, the same engine knobs, the same
fluid steady state. Nothing here is fitted. Prints predicted vs published with the signed error and the
binding batch limit, then MAPE and median signed error overall and per group (model and TP size; GPU and
precision; length pair). ``--write`` stores the one-GPU and multi-GPU errors in ``data/validation.json``,
which ``servewise plan`` quotes beside its projections.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capacity_fit import ROOT, TpRow, project, read_tp_rows, simulate_row

from servewise.capacity.perf import fit_provenance, fitted_efficiency

DEFAULT_CSV = ROOT / "benchmarks" / "capacity_holdout.csv"
VALIDATION_JSON = ROOT / "src" / "servewise" / "capacity" / "data" / "validation.json"


@dataclass(frozen=True)
class Result:
    case: TpRow
    predicted: float
    limit: str

    @property
    def error(self) -> float:
        """Signed relative error, predicted / published - 1."""
        return self.predicted / self.case.row.output_tokens_per_s - 1


def summarize(results: Iterable[Result]) -> tuple[int, float, float]:
    """(rows, MAPE %, median signed error %)."""
    errors = np.array([r.error for r in results])
    return len(errors), 100 * float(np.mean(np.abs(errors))), 100 * float(np.median(errors))


def print_groups(title: str, results: list[Result], key: Callable[[Result], tuple]) -> None:
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        groups.setdefault(key(r), []).append(r)
    print(f"\n{title:34} {'rows':>5} {'MAPE%':>7} {'median err%':>12}")
    for name in sorted(groups):
        n, m, med = summarize(groups[name])
        print(f"{' '.join(map(str, name)):34} {n:5} {m:7.1f} {med:+12.1f}")


def write_validation(results: list[Result], path: Path, fit: dict) -> None:
    groups = {"one_gpu": [r for r in results if r.case.num_gpus == 1],
              "multi_gpu": [r for r in results if r.case.num_gpus > 1]}
    errors = {}
    for name, group in groups.items():
        n, mape, median = summarize(group)
        errors[name] = {"rows": n, "mae_pct": round(mape, 1), "median_pct": round(median, 1)}
    data = json.loads(VALIDATION_JSON.read_text()) if VALIDATION_JSON.exists() else {}
    data = {k: v for k, v in data.items() if k in ("throughput", "latency")}  # the file's sections
    data["throughput"] = {
        **errors, "fit": fit,
        "provenance": {"data": path.name, "rows": len(results), "date": time.strftime("%Y-%m-%d"),
                       "script": "benchmarks/capacity_holdout.py --write",
                       "what": "output tokens/s at max throughput vs published TensorRT-LLM v0.14 rows never fitted on"},
    }
    VALIDATION_JSON.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {VALIDATION_JSON.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--rows", action="store_true", help="print every row, not only the summaries")
    parser.add_argument("--simulate", action="store_true", help="also run each row through the simulator (slow)")
    parser.add_argument("--write", action="store_true", help="store the errors in data/validation.json for `plan`")
    args = parser.parse_args()
    cases = read_tp_rows(args.csv)
    eff = fitted_efficiency()
    prov = fit_provenance()["provenance"]
    started = time.perf_counter()
    results = []
    for c in cases:
        state = project(c.row, eff, c.model, c.num_gpus)
        results.append(Result(c, state.output_tokens_per_s, state.limit))
    elapsed = time.perf_counter() - started
    print(f"constants: {eff.source} (in-sample MAPE {prov['in_sample_mape_pct']}%, LOGO {prov['logo_mape_pct']}%)")
    if args.rows:
        print(f"{'model':14} {'gpu':15} {'tp':>2} {'prec':5} {'in':>5} {'out':>5} {'published':>10} "
              f"{'predicted':>10} {'err%':>7}  limit")
        for r in results:
            c = r.case
            print(f"{c.model:14} {c.row.gpu:15} {c.num_gpus:2} {c.row.precision:5} {c.row.input_tokens:5} "
                  f"{c.row.output_tokens:5} {c.row.output_tokens_per_s:10.1f} {r.predicted:10.1f} "
                  f"{100 * r.error:+7.1f}  {r.limit}")
    print_groups("model, TP", results, lambda r: (r.case.model, f"TP{r.case.num_gpus}"))
    print_groups("gpu, precision", results, lambda r: (r.case.row.gpu, r.case.row.precision))
    print_groups("input/output", results, lambda r: (f"{r.case.row.input_tokens}/{r.case.row.output_tokens}",))
    print_groups("binding limit (model's view)", results, lambda r: (r.limit,))
    n, overall, median = summarize(results)
    worst = max(results, key=lambda r: abs(r.error))
    w = worst.case
    print(f"\nholdout: {n} rows, MAPE {overall:.1f}%, median signed error {median:+.1f}% "
          f"(worst {w.model} {w.row.gpu} TP{w.num_gpus} {w.row.precision} {w.row.input_tokens}/{w.row.output_tokens}: "
          f"{100 * worst.error:+.1f}%) in {elapsed:.1f} s")
    within = 100 * float(np.mean([abs(r.error) <= 0.25 for r in results]))
    print(f"rows within ±25%: {within:.0f}%")
    if args.write:
        write_validation(results, args.csv, eff.to_dict())
    if args.simulate:
        started = time.perf_counter()
        sims = [simulate_row(c.row, eff, c.model, c.num_gpus) / c.row.output_tokens_per_s - 1 for c in cases]
        print(f"simulator, same constants: MAPE {100 * float(np.mean(np.abs(sims))):.1f}%, median signed error "
              f"{100 * float(np.median(sims)):+.1f}% in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
