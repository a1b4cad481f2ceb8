"""``servewise plan``: is this GPU tier enough, what would the next give, how many replicas, at what cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from servewise.capacity import (
    DEFAULT_ENGINE,
    DEFAULT_TIERS,
    EngineSettings,
    engine_profile,
    parse_prefix_hit,
    parse_speculation,
)
from servewise.capacity.projection import slo_limits
from servewise.cli.options import StoreOption
from servewise.errors import UsageError
from servewise.flows.plan import plan_tiers, plan_units
from servewise.report.plan import render_plan, render_unit_plan
from servewise.spec import parse_slo


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_command(
        model: Annotated[
            str | None, typer.Option(help="Catalog name (llama-3.1-8b, qwen2.5-72b, ...) or a config.json")
        ] = None,
        image_model: Annotated[
            str | None,
            typer.Option(
                help="Plan an image server instead (sd-1.5, sdxl, flux-dev): cost per 1,000 images; with"
                " --from-run an images run, calibrated on it. A rerank run's --from-run plans cost per 1M"
                " documents",
            ),
        ] = None,
        image_size: Annotated[str, typer.Option(help="Image size, WIDTHxHEIGHT")] = "1024x1024",
        steps: Annotated[int | None, typer.Option(min=1, help="Denoising steps (default: the model's)")] = None,
        precision: Annotated[
            str, typer.Option(help="Weight precision: fp16, bf16, fp8, fp4 (Blackwell tensor cores), int8, int4")
        ] = "bf16",
        kv_precision: Annotated[
            str | None, typer.Option(help="KV-cache precision (default: fp8 for fp8 weights, else bf16)")
        ] = None,
        input_tokens: Annotated[int, typer.Option(min=1, help="Prompt tokens per request")] = 1000,
        output_tokens: Annotated[int, typer.Option(min=1, help="Output tokens per request")] = 1000,
        concurrency: Annotated[
            int | None, typer.Option(min=1, help="Concurrent requests per replica")
        ] = None,
        rate: Annotated[
            float | None, typer.Option(help="Request rate (req/s) offered to one replica")
        ] = None,
        demand: Annotated[
            float | None,
            typer.Option(help="Total request rate (req/s) to serve; images/s or documents/s for those plans"),
        ] = None,
        slo: Annotated[str | None, typer.Option(help="e.g. ttft_p95=500ms,tpot_p95=50ms")] = None,
        gpus: Annotated[str, typer.Option(help="Tiers: GPU or GPU:N, comma-separated")] = ",".join(
            DEFAULT_TIERS
        ),
        price: Annotated[list[str] | None, typer.Option(help="Your price, GPU=$/hour (repeatable)")] = None,
        hardware_file: Annotated[
            Path | None, typer.Option(help="YAML/JSON with extra `gpus:` and `prices:`")
        ] = None,
        from_run: Annotated[str | None, typer.Option(help="Calibrate on this stored bench run")] = None,
        prefix_hit: Annotated[
            str | None,
            typer.Option(
                metavar="FRACTION",
                help="Share of every prompt's tokens served from the prefix cache, 0 <= x < 1 (0.6 or 60%): "
                "prefill compute and TTFT are discounted by it; KV memory per sequence is not (cached blocks "
                "still occupy the KV cache). Default 0, or with --from-run the run's measured rate (engine "
                "counter, else cached tokens, else the workload's theoretical rate); given, it wins",
            ),
        ] = None,
        speculative: Annotated[
            str | None,
            typer.Option(
                metavar="ACCEPT[,tokens=N,steps=N,draft=SHARE]",
                help="Speculative decoding (EAGLE, MTP, a draft model): ACCEPT is the mean tokens one verify "
                "step emits per sequence, bonus token included (your engine's acceptance length, or a "
                "benchmark's ITL / TPOT); tokens = positions verified a step (vLLM num_speculative_tokens + 1, "
                "SGLang --speculative-num-draft-tokens; default 4), steps = draft passes a step (default "
                "tokens - 1), draft = a pass's cost as a share of a target decode step (default: one layer "
                "and the LM head). e.g. 2.9,tokens=16,steps=4",
            ),
        ] = None,
        current_gpu: Annotated[
            str | None, typer.Option(help="The GPU the run (or today's service) is on")
        ] = None,
        store: StoreOption = None,
        engine: Annotated[
            str,
            typer.Option(
                help="The serving engine whose scheduler defaults to simulate: vllm (V1: token budget 8192 and "
                "1024 sequences on 70+ GiB GPUs other than the A100, else 2048 and 256), sglang, trtllm "
                "(reserves each request's whole output), lmdeploy. The flags below override its defaults",
            ),
        ] = DEFAULT_ENGINE,
        max_num_seqs: Annotated[
            int | None, typer.Option(min=1, help="Engine batch cap (vLLM max_num_seqs); default: the engine's")
        ] = None,
        max_batched_tokens: Annotated[
            int | None, typer.Option(min=1, help="Engine token budget per step; default: the engine's")
        ] = None,
        gpu_memory_utilization: Annotated[
            float | None, typer.Option(min=0.1, max=1.0, help="Share of GPU memory the engine takes")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    ) -> None:
        """Project GPU tiers for a model and workload: fit, throughput, latency, replicas and cost."""
        units = plan_units(from_run=from_run, store_path=store, image_model=image_model, size=image_size,
                           steps=steps, gpus=gpus, prices=price or [], hardware_file=hardware_file,
                           current_gpu=current_gpu, demand=demand)  # fmt: skip
        if units is not None:
            if as_json:
                typer.echo(json.dumps(units.to_json(), indent=2))
            else:
                render_unit_plan(units, Console())
            return
        if model is None:
            raise UsageError("plan needs --model (a language model) or --image-model (an image server)")
        hit = parse_prefix_hit(prefix_hit) if prefix_hit is not None else None
        speculation = parse_speculation(speculative) if speculative is not None else None
        result = plan_tiers(
            from_run=from_run,
            store_path=store,
            model=model,
            precision=precision,
            kv_precision=kv_precision,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            concurrency=concurrency,
            rate=rate,
            demand=demand,
            slo=slo_limits(parse_slo(slo)) if slo else (),
            gpus=gpus,
            prices=price or (),
            hardware_file=hardware_file,
            engine=EngineSettings(
                engine_profile(engine),
                max_num_seqs=max_num_seqs,
                max_batched_tokens=max_batched_tokens,
                gpu_memory_utilization=gpu_memory_utilization,
            ),
            current_gpu=current_gpu,
            prefix_hit=hit,
            speculation=speculation,
        )
        if as_json:
            typer.echo(json.dumps(result.to_json(), indent=2))
        else:
            render_plan(result, Console())
