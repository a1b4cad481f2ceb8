"""A run spec from command-line flags laid over an optional spec file: every value checked once, with
the flag or field named on error. bench, doctor and demo build their specs here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servewise.spec.errors import SpecError
from servewise.spec.loading import load_spec_file, merge_spec
from servewise.spec.models import RunSpec
from servewise.spec.parse import (
    parse_duration,
    parse_labels,
    parse_length,
    parse_load,
    parse_shared_prefix,
    parse_slo,
)


def build_spec(
    *,
    spec_file: Path | None,
    target: str | None,
    api: str | None,
    model: str | None,
    stream: bool | None,
    load: str | None,
    duration: str | None,
    requests: int | None,
    input_tokens: str | None,
    output_tokens: str | None,
    dataset: str | None,
    tokenizer: str | None,
    seed: int | None,
    slo: str | None,
    warmup: str | None,
    cooldown: str | None,
    workers: int | None,
    labels: list[str],
    api_key_env: str | None,
    api_key_file: str | None,
    timeout: str | None,
    sweep_step: str | None = None,
    sweep_start: float | None = None,
    shared_prefix: str | None = None,
    trace: str | None = None,
    time_scale: float | None = None,
    block_size: int | None = None,
) -> RunSpec:
    """Flags laid over the spec file; every value checked once, with the field named on error."""
    file_data: dict[str, Any] = load_spec_file(spec_file) if spec_file else {}
    overrides: dict[str, Any] = {}
    target_over: dict[str, Any] = {}
    for key, value in (
        ("url", target),
        ("api", api),
        ("model", model),
        ("stream", stream),
        ("api_key_env", api_key_env),
        ("api_key_file", api_key_file),
    ):
        if value is not None:
            target_over[key] = value
    if timeout is not None:
        target_over["timeout_s"] = parse_duration(timeout)
    if target_over:
        overrides["target"] = target_over
    if "target" not in file_data and "url" not in target_over:
        raise SpecError(
            "no target: give --target URL (e.g. http://127.0.0.1:8000) or a --spec file with target.url"
        )
    workload: dict[str, Any] = {}
    if input_tokens is not None:
        workload["input_tokens"] = parse_length(input_tokens, "--input-tokens").model_dump()
    if output_tokens is not None:
        workload["output_tokens"] = parse_length(output_tokens, "--output-tokens").model_dump()
    if dataset is not None:
        workload["dataset"] = {"path": dataset}
    if tokenizer is not None:
        workload["tokenizer"] = tokenizer
    if seed is not None:
        workload["seed"] = seed
    if shared_prefix is not None:
        workload["shared_prefix"] = parse_shared_prefix(shared_prefix).model_dump()
    has_trace = trace is not None or "trace" in (file_data.get("workload") or {})
    if time_scale is not None and not has_trace:
        raise SpecError("--time-scale replays a trace faster or slower: give --trace FILE with it")
    if block_size is not None and not has_trace:
        raise SpecError("--block-size is the tokens per hash id of a Mooncake trace: give --trace FILE with it")
    if trace is not None and load is not None:
        raise SpecError("--trace sets the arrivals itself: give either --trace or --load, not both")
    given = {"path": trace, "time_scale": time_scale, "block_size": block_size}
    if any(value is not None for value in given.values()):
        workload["trace"] = {key: value for key, value in given.items() if value is not None}
    if trace is not None:
        overrides["load"] = {"kind": "trace"}
        if duration is None and "duration_s" not in file_data:
            overrides["duration_s"] = None  # the whole trace, unless a duration cuts it
    if workload:
        overrides["workload"] = workload
    if load is not None:
        overrides["load"] = parse_load(load).model_dump()
    if duration is not None:
        overrides["duration_s"] = parse_duration(duration)
    if requests is not None:
        overrides["requests"] = requests
        if duration is None and "duration_s" not in file_data:
            overrides["duration_s"] = None
    if slo is not None:
        overrides["slo"] = parse_slo(slo).model_dump()
    if warmup is not None:
        overrides["warmup_s"] = parse_duration(warmup)
    if cooldown is not None:
        overrides["cooldown_s"] = parse_duration(cooldown)
    if workers is not None:
        overrides["workers"] = workers
    sweep = {"step_duration_s": parse_duration(sweep_step) if sweep_step else None, "start_rate": sweep_start}
    if any(v is not None for v in sweep.values()):
        overrides["sweep"] = {k: v for k, v in sweep.items() if v is not None}
    if labels:
        overrides["labels"] = file_data.get("labels", {}) | parse_labels(labels)
    return merge_spec(file_data, overrides, source=str(spec_file) if spec_file else "flags")
