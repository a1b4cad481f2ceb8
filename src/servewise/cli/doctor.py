"""`servewise doctor URL` and `servewise demo`: probes, a sweep to the SLO knee, diagnosis, a plan from the
measured run and the stage, ending in one self-contained HTML report."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from servewise.analysis.diagnosis import diagnose
from servewise.capacity import CapacityError
from servewise.capacity.projection import project, slo_limits
from servewise.cli.bench import build_spec, run_bench
from servewise.cli.stage import assess, attach, probe_config, render_assessment
from servewise.engine.loop import run as run_loop
from servewise.engine.target import TargetUnreachable
from servewise.report.html import bundle_from_store, write_report
from servewise.spec import RunSpec
from servewise.store import RunStore

DEMO_MODEL = "llama-3.1-8b"
DEMO_GPU = "rtx4090"


def _step_to_diagnose(sweep: list[dict[str, Any]], knee: float | None) -> dict[str, Any] | None:
    """The first step past the knee is where the bottleneck shows; without one, the busiest step."""
    if not sweep:
        return None
    above = [s for s in sweep if knee is None or s["rate"] > knee]
    return min(above, key=lambda s: s["rate"]) if above else max(sweep, key=lambda s: s["rate"])


def _knee_step(sweep: list[dict[str, Any]], knee: float | None) -> dict[str, Any] | None:
    passing = [s for s in sweep if s["rate"] == knee]
    return passing[0] if passing else (sweep[0] if sweep else None)


def doctor(
    url: str,
    *,
    store: RunStore,
    console: Console,
    spec: RunSpec,
    model_arch: str | None,
    current_gpu: str | None,
    answers: Path | None,
    output: Path,
    quiet: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Run every step; each one's result is stored with the sweep run so `servewise report` can redraw it."""
    console.print(Text("1/4 sweeping to the SLO knee", style="bold"))
    summary = run_loop(run_bench(spec, store, console, quiet=quiet))
    run_id = summary["run_id"]
    sweep = summary.get("sweep", [])
    knee = summary.get("max_rate_meeting_slo")
    extra: dict[str, Any] = {}

    console.print(Text("2/4 diagnosing the saturating step", style="bold"))
    step = _step_to_diagnose(sweep, knee)
    if step is not None:
        step_run = store.get_run(step["run_id"])
        extra["diagnosis"] = diagnose(step_run.summary or {}, store.samples(step_run.id)).to_dict()
        extra["diagnosis"]["run_id"] = step_run.id

    console.print(Text("3/4 projecting GPU tiers from the measured run", style="bold"))
    best = _knee_step(sweep, knee)
    if best is not None and model_arch and current_gpu:
        best_run = store.get_run(best["run_id"])
        metrics = best_run.summary["metrics"] if best_run.summary else {}
        try:
            result = project(
                model=model_arch,
                input_tokens=round(
                    metrics.get("mean_input_tokens") or spec.workload.input_tokens.value or 512
                ),
                output_tokens=round(
                    metrics.get("mean_output_tokens") or spec.workload.output_tokens.value or 128
                ),
                demand=knee,
                slo=slo_limits(spec.slo),
                measured=(best_run.summary, best_run.spec, best_run.id),
                current_gpu=current_gpu,
            )
            extra["plan"] = result.to_json()
        except CapacityError as exc:
            extra["plan_note"] = f"no plan: {exc}"
    else:
        extra["plan_note"] = "no plan: give --model-arch and --current-gpu to project tiers from this run"

    console.print(Text("4/4 probing readiness and placing the stage", style="bold"))
    assessment, probes = assess(
        store,
        url=url,
        answers_path=answers,
        config=probe_config(spec.target.api_key_env, spec.target.api_key_file, 32, 10.0, spec.target.model),
        warn=console,
    )
    attach(store, run_id, assessment.to_dict(), probes)
    stored = store.get_run(run_id).summary or {}
    store.update_summary(run_id, stored | extra)
    bundle = bundle_from_store(store, run_id)
    bundle.title = f"servewise doctor: {url}"
    path = write_report(output, bundle)
    console.print(render_assessment(assessment))
    return path, stored | extra


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _twin_process(port: int, console: Console) -> subprocess.Popen:
    """The twin in its own process (its own core, its own event loop), stopped by PID when the demo ends."""
    cmd = [
        sys.executable,
        "-m",
        "servewise",
        "twin",
        "--model",
        DEMO_MODEL,
        "--gpu",
        DEMO_GPU,
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    _, err = proc.communicate(timeout=10)
    console.print(f"error: the twin did not start on port {port}", markup=False)
    for line in (err or b"").decode(errors="replace").strip().splitlines()[-5:]:
        console.print(f"  {line}", markup=False)
    raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    @app.command("doctor", rich_help_panel="Advise")
    def doctor_command(
        url: str = typer.Argument(..., help="Base URL of the endpoint."),
        api: str | None = typer.Option(None, help="chat | completions (default chat)."),
        model: str | None = typer.Option(None, help="Served model name (default: first from /v1/models)."),
        slo: str = typer.Option(
            "ttft_p95=1s,tpot_p95=100ms,errors=1%", help="The SLO the knee is found for."
        ),
        input_tokens: str = typer.Option("512", help="Prompt length distribution."),
        output_tokens: str = typer.Option("128", help="Output length distribution."),
        sweep_step: str = typer.Option("10s", help="How long each rate step runs."),
        model_arch: str | None = typer.Option(None, help="Architecture for the plan, e.g. llama-3.1-8b."),
        current_gpu: str | None = typer.Option(None, help="The GPU the endpoint runs on, e.g. rtx4090."),
        answers: Path | None = typer.Option(None, help="YAML answers for what no probe can see."),
        output: Path = typer.Option(Path("servewise-report.html"), "--output", "-o", help="Report file."),
        store: Path | None = typer.Option(None, help="Run store path."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress."),
    ) -> None:
        """Probe, sweep to the SLO knee, diagnose, plan and place the stage: one command, one HTML report."""
        console = Console()
        spec = build_spec(
            spec_file=None, target=url, api=api, model=model, stream=None, load="sweep", duration=None,
            requests=None, input_tokens=input_tokens, output_tokens=output_tokens, dataset=None, tokenizer=None,
            seed=None, slo=slo, warmup=None, cooldown=None, workers=None, labels=[], api_key_env=None,
            api_key_file=None, timeout=None, sweep_step=sweep_step,
        )  # fmt: skip
        with RunStore(store) as run_store:
            try:
                path, _ = doctor(url, store=run_store, console=console, spec=spec, model_arch=model_arch,
                                 current_gpu=current_gpu, answers=answers, output=output, quiet=quiet)  # fmt: skip
            except TargetUnreachable as exc:
                Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False)
                raise typer.Exit(3) from None
        console.print(f"report: {path.resolve()}", markup=False)

    @app.command("demo", rich_help_panel="Advise")
    def demo_command(
        output: Path = typer.Option(
            Path("servewise-demo-report.html"), "--output", "-o", help="Report file."
        ),
        sweep_step: str = typer.Option("6s", help="How long each rate step runs."),
        store: Path | None = typer.Option(None, help="Run store path."),
        port: int | None = typer.Option(None, help="Port for the twin (default: a free one)."),
    ) -> None:
        """Start the twin (a simulated Llama-3.1-8B on an RTX 4090) and run doctor against it."""
        console = Console()
        console.print(
            Text(f"starting the twin: simulated {DEMO_MODEL} on {DEMO_GPU} (no GPU needed)", style="bold")
        )
        port = port or _free_port()
        proc = _twin_process(port, console)
        url = f"http://127.0.0.1:{port}"
        try:
            spec = build_spec(
                spec_file=None, target=url, api=None, model=None, stream=None, load="sweep", duration=None,
                requests=None, input_tokens="512", output_tokens="128", dataset=None, tokenizer=None, seed=None,
                slo="ttft_p95=1s,tpot_p95=60ms,errors=1%", warmup=None, cooldown=None, workers=None,
                labels=["demo=twin"], api_key_env=None, api_key_file=None, timeout=None, sweep_step=sweep_step,
                sweep_start=2.0,
            )  # fmt: skip
            with RunStore(store) as run_store:
                path, _ = doctor(url, store=run_store, console=console, spec=spec, model_arch=DEMO_MODEL,
                                 current_gpu=DEMO_GPU, answers=None, output=output, quiet=False)  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        console.print(Text("The target was simulated: servewise's twin, not a real GPU.", style="yellow"))
        console.print(f"report: {path.resolve()}", markup=False)
