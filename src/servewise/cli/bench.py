"""`servewise bench`: run a repeatable workload against an endpoint, store it, print the verdict."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from time import perf_counter
from typing import Any

import typer
from rich.console import Console
from rich.live import Live

from servewise.cli.diagnose import render as render_diagnosis
from servewise.engine.fingerprint import environment_fingerprint
from servewise.engine.loop import run as run_loop
from servewise.engine.progress import LiveStats
from servewise.engine.runner import (
    RunContext,
    TelemetryOptions,
    WorkerGroup,
    execute_run,
    install_interrupt_handler,
)
from servewise.engine.sweep import run_sweep
from servewise.engine.target import TargetUnreachable, discover
from servewise.records import record_from_row
from servewise.report.prometheus import LiveMetrics
from servewise.report.terminal import progress_line, summary_view
from servewise.secrets import load_api_key
from servewise.spec import (
    RunSpec,
    SpecError,
    load_spec_file,
    merge_spec,
    parse_duration,
    parse_labels,
    parse_length,
    parse_load,
    parse_slo,
)
from servewise.store import RunStore
from servewise.store.sqlite import new_run_id

EXIT_CODES = {"ok": 0, "slo_failed": 1, "failed": 3, "interrupted": 130}

EPILOG = """\
[bold]Examples[/]

  servewise bench --target http://127.0.0.1:8000 --load poisson:4 --duration 60 \\
      --input-tokens normal:512,128 --output-tokens 128 --slo ttft_p95=500ms,tpot_p95=50ms,errors=1%

  servewise bench --target http://127.0.0.1:8080 --load concurrency:16 --requests 500

  servewise bench --target http://127.0.0.1:8000 --load sweep --slo ttft_p95=1s    [dim]# highest rate meeting the SLO[/]

  servewise bench --spec run.yaml --label release=v1.4 --json result.json

[bold]Load[/]: poisson:RATE | constant:RATE | gamma:RATE,BURSTINESS | concurrency:N | sweep
  (open-loop kinds take ;max-concurrency=N).
[bold]Lengths[/]: N | uniform:LO,HI | normal:MEAN,STD | lognormal:MEAN,STD | empirical:A,B,C (;min=N;max=N clips).
[bold]SLO[/]: ttft|tpot|itl|e2e _ p50|p90|p95|p99|p99.9|mean|max = VALUE (ms default; s, us ok), errors=PCT%.
[bold]Exit codes[/]: 0 SLO met or none given, 1 SLO missed, 2 bad usage or spec, 3 target unreachable
or every request failed, 130 interrupted (finished requests are kept).
"""


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


async def run_bench(
    spec: RunSpec,
    store: RunStore,
    console: Console,
    *,
    quiet: bool = False,
    prometheus_port: int | None = None,
    telemetry: TelemetryOptions | None = None,
) -> dict[str, Any]:
    """Discover the target, start workers, run (or sweep), and return the stored summary."""
    api_key = load_api_key(spec.target.api_key_env, spec.target.api_key_file)
    info = await discover(spec.target, api_key)
    run_id = new_run_id()
    live_metrics = None
    if prometheus_port is not None:
        live_metrics = LiveMetrics(
            run_id, target=spec.target.url, model=info.model, load=spec.load.describe()
        )
        try:
            bound = live_metrics.serve(prometheus_port)
        except OSError as exc:
            raise SpecError(f"--prometheus-port {prometheus_port}: cannot listen ({exc.strerror})") from None
        console.print(f"live metrics at http://127.0.0.1:{bound}/metrics", style="dim", markup=False)
    if spec.target.api.value == "embeddings":
        spec = spec.model_copy(update={"target": spec.target.model_copy(update={"stream": False})})
    stats = LiveStats()
    workers = WorkerGroup(spec.workers)
    context = RunContext(
        store=store,
        target=info,
        api_key=api_key,
        environment=environment_fingerprint(),
        workers=workers,
        telemetry=telemetry or TelemetryOptions(interval_s=spec.sample_interval_s),
    )

    def on_rows(rows: list[tuple]) -> None:
        stats.add_rows(rows)
        if live_metrics is not None:
            live_metrics.observe(record_from_row(row) for row in rows)

    def on_samples(samples: list) -> None:
        flights = [s.value for s in samples if s.name == "in_flight"]
        if flights:
            stats.in_flight = int(sum(flights[-len(workers) :]))
        if live_metrics is not None:
            live_metrics.update(in_flight=stats.in_flight, completion_rate=stats.rate())

    context.on_rows = on_rows
    context.on_samples = on_samples
    install_interrupt_handler(context)
    started = perf_counter()
    label = "sweep" if spec.load.kind == "sweep" else "bench"
    try:
        live = Live(console=console, refresh_per_second=4, transient=True, auto_refresh=not quiet)
        with contextlib.nullcontext() if quiet else live:

            async def refresh() -> None:
                duration = spec.sweep.step_duration_s if spec.load.kind == "sweep" else spec.duration_s
                while not quiet:
                    live.update(progress_line(stats, perf_counter() - started, duration, label))
                    await asyncio.sleep(0.25)

            ticker = asyncio.create_task(refresh())
            try:
                if spec.load.kind == "sweep":
                    summary = await run_sweep(context, spec, stats, run_id=run_id)
                else:
                    summary = await execute_run(context, spec, run_id=run_id)
            finally:
                ticker.cancel()
    finally:
        workers.close()
        if live_metrics is not None:
            live_metrics.close()
    return summary


def register(app: typer.Typer) -> None:
    @app.command(epilog=EPILOG, rich_help_panel="Measure")
    def bench(
        target: str | None = typer.Option(None, "--target", "-t", help="Base URL of the endpoint."),
        api: str | None = typer.Option(None, help="chat | completions | embeddings (default chat)."),
        model: str | None = typer.Option(None, help="Model name (default: first from /v1/models)."),
        stream: bool | None = typer.Option(
            None, "--stream/--no-stream", help="Stream responses (default on)."
        ),
        load: str | None = typer.Option(None, "--load", "-l", help="Arrival pattern (default poisson:1)."),
        duration: str | None = typer.Option(None, "--duration", "-d", help="How long to send (default 60s)."),
        requests: int | None = typer.Option(None, "--requests", "-n", help="Stop after N requests."),
        input_tokens: str | None = typer.Option(None, help="Prompt length distribution (default 256)."),
        output_tokens: str | None = typer.Option(None, help="max_tokens distribution (default 128)."),
        dataset: str | None = typer.Option(None, help="JSONL of prompts/messages (optional output_tokens)."),
        tokenizer: str | None = typer.Option(None, help="tokenizer.json for exact prompt lengths."),
        seed: int | None = typer.Option(None, help="Workload seed (default 42): same seed, same requests."),
        slo: str | None = typer.Option(None, help="e.g. ttft_p95=500ms,tpot_p95=50ms,errors=1%"),
        warmup: str | None = typer.Option(None, help="Warm-up window kept out of steady-state metrics."),
        cooldown: str | None = typer.Option(None, help="Cool-down window kept out of steady-state metrics."),
        workers: int | None = typer.Option(None, help="Load-generating processes (default 1)."),
        label: list[str] = typer.Option([], "--label", help="KEY=VALUE tag, repeatable."),
        api_key_env: str | None = typer.Option(
            None, help="Env var holding the API key (default OPENAI_API_KEY)."
        ),
        api_key_file: str | None = typer.Option(None, help="File holding the API key."),
        timeout: str | None = typer.Option(None, help="Per-request timeout (default 300s)."),
        sweep_step: str | None = typer.Option(
            None, help="Sweep: how long each rate step runs (default 20s)."
        ),
        sweep_start: float | None = typer.Option(None, help="Sweep: first rate to try, req/s (default 1)."),
        spec: Path | None = typer.Option(None, "--spec", help="YAML run spec; flags override it."),
        json_out: Path | None = typer.Option(
            None, "--json", help="Write the result JSON here ('-' for stdout)."
        ),
        store: Path | None = typer.Option(None, help="Run store (default ~/.local/share/servewise/runs.db)."),
        server_pid: int | None = typer.Option(
            None, help="Server process to sample (default: found from the port)."
        ),
        dcgm: str | None = typer.Option(None, help="Scrape a dcgm-exporter at this URL for GPU metrics."),
        sample_interval: str | None = typer.Option(None, help="Telemetry sampling interval (default 1s)."),
        telemetry: bool = typer.Option(
            True, "--telemetry/--no-telemetry", help="Sample host, server and GPU."
        ),
        prometheus_port: int | None = typer.Option(
            None, help="Serve live run metrics for Prometheus on this port (0 picks one)."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress."),
    ) -> None:
        """Run a repeatable workload against an OpenAI-compatible endpoint and store every request."""
        console = Console(stderr=json_out is not None and str(json_out) == "-")
        run_spec = build_spec(
            spec_file=spec, target=target, api=api, model=model, stream=stream, load=load, duration=duration,
            requests=requests, input_tokens=input_tokens, output_tokens=output_tokens, dataset=dataset,
            tokenizer=tokenizer, seed=seed, slo=slo, warmup=warmup, cooldown=cooldown, workers=workers,
            labels=label, api_key_env=api_key_env, api_key_file=api_key_file, timeout=timeout,
            sweep_step=sweep_step, sweep_start=sweep_start,
        )  # fmt: skip
        interval = parse_duration(sample_interval) if sample_interval else run_spec.sample_interval_s
        options = TelemetryOptions(
            enabled=telemetry, interval_s=interval, server_pid=server_pid, dcgm_url=dcgm
        )
        with RunStore(store) as run_store:
            try:
                summary = run_loop(
                    run_bench(
                        run_spec,
                        run_store,
                        console,
                        quiet=quiet,
                        prometheus_port=prometheus_port,
                        telemetry=options,
                    )
                )
            except TargetUnreachable as exc:
                Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False)
                raise typer.Exit(3) from None
        console.print(summary_view(summary))
        if summary.get("diagnosis"):
            render_diagnosis(summary["diagnosis"], console)
        console.print(f"stored as run {summary['run_id']} in {run_store.path}", style="dim", markup=False)
        if json_out is not None:
            text = json.dumps(summary, indent=2, default=str)
            if str(json_out) == "-":
                print(text)
            else:
                json_out.write_text(text + "\n")
        raise typer.Exit(EXIT_CODES.get(summary["status"], 1))
