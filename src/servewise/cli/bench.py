"""`servewise bench`: run a repeatable workload against an endpoint, store it, print the verdict."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from servewise.cli.options import QuietFlag, StoreOption
from servewise.engine.cluster.group import RayOptions
from servewise.engine.loop import run as run_loop
from servewise.engine.runner import TelemetryOptions
from servewise.flows.bench import run_bench
from servewise.report.diagnosis import render_diagnosis
from servewise.report.export import write_json
from servewise.report.progress import TerminalProgress
from servewise.report.terminal import summary_view
from servewise.results import RunResult
from servewise.spec import build_spec, parse_duration
from servewise.store import open_store

EXIT_CODES = {"ok": 0, "slo_failed": 1, "failed": 3, "partial": 4, "interrupted": 130}

EPILOG = """\
[bold]Examples[/]

  servewise bench --target http://127.0.0.1:8000 --load poisson:4 --duration 60 \\
      --input-tokens normal:512,128 --output-tokens 128 --slo ttft_p95=500ms,tpot_p95=50ms,errors=1%

  servewise bench --target http://127.0.0.1:8080 --load concurrency:16 --requests 500

  servewise bench --target http://127.0.0.1:8000 --load sweep --slo ttft_p95=1s    [dim]# highest rate meeting the SLO[/]

  servewise bench --target http://127.0.0.1:8000 --load sessions:users=16,turns=4,think=2s \\
      --shared-prefix 1000                                                     [dim]# chat with a cache[/]

  servewise bench --spec run.yaml --label release=v1.4 --json result.json

  servewise bench --target http://vllm.svc:8000 --load poisson:20000 --ray auto    [dim]# workers on a Ray cluster[/]

[bold]Load[/]: poisson:RATE | constant:RATE | gamma:RATE,BURSTINESS | concurrency:N | sweep
  | sessions:users=N,turns=T,think=DURATION (closed) | sessions:rate=R,turns=T,think=DURATION (open)
  (open-loop kinds take ;max-concurrency=N; turns may be a length distribution, e.g. uniform:2,6).
  A session's next turn carries the whole conversation so far, with the answers the server streamed.
[bold]Traffic[/]: --shared-prefix 1000,groups=4 (shared system prompts) | --trace FILE [--time-scale 2]
  [--block-size 512] (Mooncake JSONL or plain JSONL/CSV; see `servewise trace analyze`, and
  `servewise trace from-log` to make one from a gateway's request log).
[bold]Lengths[/]: N | uniform:LO,HI | normal:MEAN,STD | lognormal:MEAN,STD | empirical:A,B,C (;min=N;max=N clips).
[bold]SLO[/]: ttft|tpot|itl|e2e _ p50|p90|p95|p99|p99.9|mean|max = VALUE (ms default; s, us ok), errors=PCT%.
[bold]Exit codes[/]: 0 SLO met or none given, 1 SLO missed, 2 bad usage or spec, 3 target unreachable
or every request failed, 4 partial (a Ray node or worker was lost mid-run; what it measured is kept),
130 interrupted (finished requests are kept).
"""


def register(app: typer.Typer) -> None:
    @app.command(epilog=EPILOG, rich_help_panel="Measure")
    def bench(
        target: str | None = typer.Option(None, "--target", "-t", help="Base URL of the endpoint."),
        api: str | None = typer.Option(
            None,
            help="chat | completions | embeddings | responses | anthropic | rerank | images | http (default chat;"
            " http: a JSON body template and JSON paths in the spec's target).",
        ),
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
        workers: int | None = typer.Option(
            None, help="Load-generating processes (default 1; with --ray, one per free CPU of the cluster)."
        ),
        ray: str | None = typer.Option(
            None, "--ray", help="auto | HOST:PORT: run the load workers as actors on this Ray cluster."
        ),
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
        shared_prefix: str | None = typer.Option(
            None, help="TOKENS[,groups=K]: every prompt starts with one of K shared system prompts."
        ),
        trace: str | None = typer.Option(
            None, help="Replay a trace's arrivals and lengths (Mooncake JSONL, or JSONL/CSV)."
        ),
        time_scale: float | None = typer.Option(None, help="With --trace: replay X times faster (2 = double)."),
        block_size: int | None = typer.Option(
            None, help="With a Mooncake --trace: tokens per hash id (default 512, as `trace from-log` writes)."
        ),
        spec: Path | None = typer.Option(None, "--spec", help="YAML run spec; flags override it."),
        json_out: Path | None = typer.Option(
            None, "--json", help="Write the result JSON here ('-' for stdout)."
        ),
        store: StoreOption = None,
        server_pid: int | None = typer.Option(
            None, help="Server process to sample (default: found from the port)."
        ),
        dcgm: str | None = typer.Option(None, help="Scrape a dcgm-exporter at this URL for GPU metrics."),
        node_exporter: str | None = typer.Option(
            None, help="The serving host's node_exporter (e.g. http://gpu-box:9100/metrics): its CPU, disk, network."
        ),
        prometheus: str | None = typer.Option(
            None, help="Your Prometheus (e.g. http://prom:9090): the serving host's node_exporter/DCGM series, after the run."
        ),
        prometheus_selector: str = typer.Option(
            "", help='With --prometheus: label matchers for the serving host, e.g. instance=~"gpu-box:.*".'
        ),
        prometheus_window: str = typer.Option(
            "1m", help="With --prometheus: rate window, at least two of its scrape intervals."
        ),
        sample_interval: str | None = typer.Option(None, help="Telemetry sampling interval (default 1s)."),
        telemetry: bool = typer.Option(
            True, "--telemetry/--no-telemetry", help="Sample host, server and GPU."
        ),
        prometheus_port: int | None = typer.Option(
            None, help="Serve live run metrics for Prometheus on this port (0 picks one)."
        ),
        quiet: QuietFlag = False,
    ) -> None:
        """Run a repeatable workload against an OpenAI-compatible endpoint and store every request."""
        console = Console(stderr=json_out is not None and str(json_out) == "-")
        run_spec = build_spec(
            spec_file=spec, target=target, api=api, model=model, stream=stream, load=load, duration=duration,
            requests=requests, input_tokens=input_tokens, output_tokens=output_tokens, dataset=dataset,
            tokenizer=tokenizer, seed=seed, slo=slo, warmup=warmup, cooldown=cooldown, workers=workers,
            labels=label, api_key_env=api_key_env, api_key_file=api_key_file, timeout=timeout,
            sweep_step=sweep_step, sweep_start=sweep_start, shared_prefix=shared_prefix, trace=trace,
            time_scale=time_scale, block_size=block_size,
        )  # fmt: skip
        interval = parse_duration(sample_interval) if sample_interval else run_spec.sample_interval_s
        options = TelemetryOptions(
            enabled=telemetry, interval_s=interval, server_pid=server_pid, dcgm_url=dcgm,
            node_exporter_url=node_exporter, prometheus_url=prometheus, prometheus_selector=prometheus_selector,
            prometheus_window=prometheus_window,
        )
        with open_store(store) as run_store:
            result = run_loop(
                run_bench(
                    run_spec,
                    run_store,
                    progress=TerminalProgress(console, quiet=quiet),
                    prometheus_port=prometheus_port,
                    telemetry=options,
                    ray=RayOptions(ray, workers) if ray else None,
                )
            )
        console.print(summary_view(result))
        for line in cluster_lines(result):
            console.print(line, markup=False)
        if result.diagnosis is not None:
            render_diagnosis(result.diagnosis, console)
        console.print(f"stored as run {result.run_id} in {run_store.location}", style="dim", markup=False)
        if json_out is not None:
            write_json(result.to_json(), json_out)
        raise typer.Exit(EXIT_CODES.get(result.status, 1))


def cluster_lines(result: RunResult) -> list[str]:
    """A run on Ray: each node's clock and client check, and what a lost worker took with it."""
    lines = []
    for node in result.nodes or []:
        limited = f"  CLIENT-LIMITED: {node.client.reason}" if node.client.limited else ""
        lag = node.client.schedule_lag_ms.p99
        lines.append(
            f"node {node.address} ({node.node}): workers {node.workers}, clock offset {node.clock_offset_ms:+.2f} ms"
            f" (±{node.clock_rtt_ms / 2:.2f}), schedule lag p99 {'-' if lag is None else f'{lag:.1f}'} ms,"
            f" CPU {node.client.cpu_percent:.0f}%{' LOST' if node.lost else ''}{limited}"
        )
    if result.partial is not None:
        for worker in result.partial.workers:
            unsent = "" if worker.unsent is None else f", {worker.unsent} never sent"
            lines.append(
                f"PARTIAL: worker {worker.worker} on {worker.node} lost {worker.at_s:.1f}s in ({worker.reason}):"
                f" {worker.lost_requests} requests lost{unsent}"
            )
    return lines
