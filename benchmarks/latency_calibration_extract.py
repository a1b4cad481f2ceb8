"""Re-extract the two NVIDIA DLI sources of ``latency_calibration_published.csv`` from their raw CSVs.

The raw files are ``nim.csv`` (``dli_nim_genaiperf_llama3``) and ``trt_llm_0_9_0_dli.csv``
(``dli_trtllm090_static``) from ``wbing520/ai-performance-engineering``,
``code/ch10_inference/inference_gpu_cluster_sizing/dataset/``, commit
``0e25b2e236211ad01ed2221bd2c1cfa5b3f47b55``. Put both in one folder and pass that folder::

    git -C MIRROR show 0e25b2e2...:code/ch10_inference/inference_gpu_cluster_sizing/dataset/nim.csv > DIR/nim.csv
    python benchmarks/latency_calibration_extract.py DIR            # selected rows as CSV on stdout
    python benchmarks/latency_calibration_extract.py DIR --merge    # add the missing ones to the published CSV

Selection (the rule in ``latency_calibration_sources.md``):

- NIM: every (model, GPU, TP, precision, ISL/OSL, concurrency) point in the file; where the file repeats a
  point (it does at concurrency 5), the first row in file order is kept and the other run is quoted in the notes.
- TRT-LLM 0.9: complete rows (1st token latency and latency present), PP=1, batch <= 256, models the capacity
  catalog knows (Llama-2-7B, Llama-2-70B, Mixtral-8x7B). For each (model, GPU, TP, precision, ISL/OSL) the
  batches 1, 4, 16, 64 and 256 are kept, plus the smallest and largest batch that group has (<= 256).
  ``tpot_ms`` = (Latency - 1st token latency) / (OSL - 1); it is left empty when OSL = 1.

``--merge`` never rewrites a row already in the published CSV: rows are matched on
(source, model, GPU, TP, precision, ISL, OSL, concurrency), and new ones go after the last existing row of
their source.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

PUBLISHED = Path(__file__).resolve().parent / "latency_calibration_published.csv"
COLUMNS = ("source_id", "engine", "engine_version", "model", "precision", "gpu", "num_gpus", "tp", "isl", "osl",
           "concurrency", "request_rate", "ttft_ms", "tpot_ms", "itl_ms", "stat", "throughput_tok_s", "notes",
           "speculative")
KEY = ("source_id", "model", "gpu", "tp", "precision", "isl", "osl", "concurrency")

NIM_SOURCE = "dli_nim_genaiperf_llama3"
NIM_MODELS = {"meta-llama3-8b-instruct": "Llama-3-8B-Instruct", "meta-llama3-70b-instruct": "Llama-3-70B-Instruct"}
NIM_GPUS = {"A100-SXM4-80GB": ("A100-SXM4-80GB", "DGX A100"), "H100_80GB_HBM3": ("H100-SXM-80GB", "DGX H100")}

TRT_SOURCE = "dli_trtllm090_static"
TRT_MODELS = {"LLaMA v2 7B": "Llama-2-7B", "LLaMA v2 70B": "Llama-2-70B", "Mixtral 8x7B": "Mixtral-8x7B"}
TRT_GPUS = {"H100 80GB HBM3": "H100-80GB-HBM3", "H100 NVL": "H100-NVL", "H200 141GB HBM3": "H200-141GB",
            "GH200 120GB": "GH200-120GB", "A100-SXM4-80GB": "A100-SXM4-80GB", "L40S": "L40S-48GB", "L40": "L40-48GB"}
TRT_PRECISIONS = {"FP8": "fp8", "Mixed": 'fp16 ("Mixed")'}
TRT_BATCHES = (1, 4, 16, 64, 256)
TRT_MAX_BATCH = 256

Row = dict[str, str]


def num(x: float, digits: int) -> str:
    """``x`` rounded to ``digits`` decimals, trailing zeros dropped (1000.0 -> "1000", 8.570 -> "8.57")."""
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def ms(ns: str) -> str:
    return num(float(ns) / 1e6, 3)


def nim_rows(path: Path) -> list[Row]:
    """Every point of ``nim.csv``, first run kept where a point is repeated."""
    runs: dict[tuple[str, ...], list[Row]] = defaultdict(list)
    for r in csv.DictReader(path.open(newline="")):
        for unit in ("request_latency-unit", "time_to_first_token-unit", "inter_token_latency-unit"):
            if r[unit] != "ns":
                raise ValueError(f"unexpected unit {r[unit]!r} in {unit}")
        point = (r["task_inputs-model"], r["task_inputs-GPU"], r["task_inputs-n_gpus"], r["task_inputs-precision"],
                 r["input_config-synthetic_input_tokens_mean"], r["input_config-output_tokens_mean"],
                 r["input_config-concurrency"])
        runs[point].append(r)
    rows = []
    for first, *others in runs.values():
        gpu, system = NIM_GPUS[first["task_inputs-GPU"]]
        notes = (f"converted ns->ms; TTFT p95={ms(first['time_to_first_token-p95'])} ms; "
                 f"ITL p95={ms(first['inter_token_latency-p95'])} ms; measured mean in/out tokens="
                 f"{num(float(first['num_input_token-avg']), 1)}/{num(float(first['num_output_token-avg']), 1)}; "
                 f"{system}; first of duplicate runs kept")
        for other in others:
            notes += (f"; the file repeats this point, the other run gave TTFT={ms(other['time_to_first_token-avg'])}"
                      f" ms, ITL={ms(other['inter_token_latency-avg'])} ms")
        rows.append({
            "source_id": NIM_SOURCE, "engine": "NIM (TensorRT-LLM backend)",
            "engine_version": 'not stated ("an older version of NVIDIA NIM")',
            "model": NIM_MODELS[first["task_inputs-model"]], "precision": first["task_inputs-precision"],
            "gpu": gpu, "num_gpus": first["task_inputs-n_gpus"], "tp": first["task_inputs-n_gpus"],
            "isl": first["input_config-synthetic_input_tokens_mean"], "osl": first["input_config-output_tokens_mean"],
            "concurrency": first["input_config-concurrency"], "request_rate": "",
            "ttft_ms": ms(first["time_to_first_token-avg"]), "tpot_ms": "",
            "itl_ms": ms(first["inter_token_latency-avg"]), "stat": "mean (GenAI-Perf avg)",
            "throughput_tok_s": num(float(first["output_token_throughput-avg"]), 2), "notes": notes})
    return rows


def trt_rows(path: Path) -> list[Row]:
    """The selected static-batch rows of ``trt_llm_0_9_0_dli.csv``."""
    usable = [r for r in csv.DictReader(path.open(newline=""))
              if r["1st Token Latency (ms)"] and r["Latency (ms)"] and r["Pipeline Model Parallel Size"] == "1"
              and r["Model"] in TRT_MODELS and int(r["Batch Size"]) <= TRT_MAX_BATCH]
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for r in usable:
        groups[_trt_group(r)].append(int(r["Batch Size"]))
    rows = []
    for r in usable:
        batch, batches = int(r["Batch Size"]), groups[_trt_group(r)]
        if batch not in TRT_BATCHES and batch not in (min(batches), max(batches)):
            continue
        isl, osl = (int(n) for n in r["Input/Output Lengths"].split(","))
        ttft, latency = r["1st Token Latency (ms)"], r["Latency (ms)"]
        tpot = num((float(latency) - float(ttft)) / (osl - 1), 3) if osl > 1 else ""
        how = (f"tpot = file column 'Token-to-token Latency (ms)' = (Latency {latency} ms - 1st token "
               "latency)/(OSL-1), rounded to 3 dp") if osl > 1 else f"OSL=1, no TPOT (Latency {latency} ms)"
        rows.append({
            "source_id": TRT_SOURCE, "engine": "TensorRT-LLM", "engine_version": "0.9.0 (per file name)",
            "model": TRT_MODELS[r["Model"]], "precision": TRT_PRECISIONS[r["Precision"]], "gpu": TRT_GPUS[r["GPU"]],
            "num_gpus": r["Number of GPUs"], "tp": r["Tensor Model Parallel Size"], "isl": str(isl),
            "osl": str(osl), "concurrency": str(batch), "request_rate": "", "ttft_ms": ttft, "tpot_ms": tpot,
            "itl_ms": "", "stat": "per-run (static batch; single run)",
            "throughput_tok_s": r["Throughput (tokens / sec)"],
            "notes": f"static batch of {batch} (no queueing; concurrency = batch size); {how}; fake weights; PP=1"})
    return rows


def _trt_group(r: Row) -> tuple[str, ...]:
    return r["Model"], r["GPU"], r["Tensor Model Parallel Size"], r["Precision"], r["Input/Output Lengths"]


def key(row: Row) -> tuple[str, ...]:
    return tuple(row[c] for c in KEY)


def merge(published: list[Row], extracted: Iterable[Row]) -> tuple[list[Row], dict[str, int]]:
    """``published`` with the extracted rows it lacks inserted after their source's last row."""
    have = {key(r) for r in published}
    new: dict[str, list[Row]] = defaultdict(list)
    for row in extracted:
        if key(row) not in have:
            new[row["source_id"]].append(row)
            have.add(key(row))
    last = {r["source_id"]: i for i, r in enumerate(published)}
    merged: list[Row] = []
    for i, row in enumerate(published):
        merged.append(row)
        if last[row["source_id"]] == i:
            merged.extend(new.pop(row["source_id"], []))
    for rows in new.values():
        merged.extend(rows)
    return merged, {s: sum(r["source_id"] == s for r in merged) - sum(r["source_id"] == s for r in published)
                    for s in (NIM_SOURCE, TRT_SOURCE)}


def write(rows: Iterable[Row], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=COLUMNS)  # the csv default "\r\n", as the published file has
    writer.writeheader()
    writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source_dir", type=Path, help="folder holding nim.csv and trt_llm_0_9_0_dli.csv")
    parser.add_argument("--merge", action="store_true", help=f"add the missing rows to {PUBLISHED.name}")
    parser.add_argument("--csv", type=Path, default=PUBLISHED, help="the published CSV to merge into")
    args = parser.parse_args()
    extracted = nim_rows(args.source_dir / "nim.csv") + trt_rows(args.source_dir / "trt_llm_0_9_0_dli.csv")
    if not args.merge:
        write(extracted, sys.stdout)
        return
    published = list(csv.DictReader(args.csv.open(newline="")))
    fresh = {key(r): r for r in extracted}
    for row in published:
        if row["source_id"] in (NIM_SOURCE, TRT_SOURCE) and fresh.get(key(row), row) != row:
            print(f"kept as published, differs from the re-extraction: {key(row)}", file=sys.stderr)
    merged, added = merge(published, extracted)
    with args.csv.open("w", newline="") as out:
        write(merged, out)
    print(f"{len(published)} rows -> {len(merged)}; added {added}", file=sys.stderr)


if __name__ == "__main__":
    main()
