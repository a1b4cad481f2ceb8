"""`servewise doctor URL` and `servewise demo`: probes, a sweep to the SLO knee, diagnosis, a plan from the
measured run and the stage, ending in one self-contained HTML report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from servewise.cli.options import QuietFlag, StoreOption
from servewise.flows.doctor import DEMO_GPU, DEMO_MODEL, doctor, free_port, start_twin
from servewise.report.progress import TerminalProgress
from servewise.report.stage import render_assessment
from servewise.spec import build_spec
from servewise.store import open_store


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
        prometheus: str | None = typer.Option(
            None, help="The team's Prometheus: production traffic for the stage and the outgrown forecast."
        ),
        replicas: int = typer.Option(1, min=1, help="Replicas serving the production traffic read."),
        output: Path = typer.Option(Path("servewise-report.html"), "--output", "-o", help="Report file."),
        store: StoreOption = None,
        quiet: QuietFlag = False,
    ) -> None:
        """Probe, sweep to the SLO knee, diagnose, plan and place the stage: one command, one HTML report."""
        console = Console()
        spec = build_spec(
            spec_file=None, target=url, api=api, model=model, stream=None, load="sweep", duration=None,
            requests=None, input_tokens=input_tokens, output_tokens=output_tokens, dataset=None, tokenizer=None,
            seed=None, slo=slo, warmup=None, cooldown=None, workers=None, labels=[], api_key_env=None,
            api_key_file=None, timeout=None, sweep_step=sweep_step,
        )  # fmt: skip
        with open_store(store) as run_store:
            outcome = doctor(url, store=run_store, spec=spec, model_arch=model_arch, current_gpu=current_gpu,
                             answers=answers, output=output, progress=TerminalProgress(console, quiet=quiet),
                             prometheus_url=prometheus, replicas=replicas)  # fmt: skip
        console.print(render_assessment(outcome.stage.assessment.record()))
        console.print(f"report: {outcome.report.resolve()}", markup=False)

    @app.command("demo", rich_help_panel="Advise")
    def demo_command(
        output: Path = typer.Option(
            Path("servewise-demo-report.html"), "--output", "-o", help="Report file."
        ),
        sweep_step: str = typer.Option("6s", help="How long each rate step runs."),
        store: StoreOption = None,
        port: int | None = typer.Option(None, help="Port for the twin (default: a free one)."),
    ) -> None:
        """Start the twin (a simulated Llama-3.1-8B on an RTX 4090) and run doctor against it."""
        console = Console()
        console.print(
            Text(f"starting the twin: simulated {DEMO_MODEL} on {DEMO_GPU} (no GPU needed)", style="bold")
        )
        port = port or free_port()
        proc = start_twin(port)
        url = f"http://127.0.0.1:{port}"
        try:
            spec = build_spec(
                spec_file=None, target=url, api=None, model=None, stream=None, load="sweep", duration=None,
                requests=None, input_tokens="512", output_tokens="128", dataset=None, tokenizer=None, seed=None,
                slo="ttft_p95=1s,tpot_p95=60ms,errors=1%", warmup=None, cooldown=None, workers=None,
                labels=["demo=twin"], api_key_env=None, api_key_file=None, timeout=None, sweep_step=sweep_step,
                sweep_start=2.0,
            )  # fmt: skip
            with open_store(store) as run_store:
                outcome = doctor(url, store=run_store, spec=spec, model_arch=DEMO_MODEL, current_gpu=DEMO_GPU,
                                 answers=None, output=output, progress=TerminalProgress(console))  # fmt: skip
            console.print(render_assessment(outcome.stage.assessment.record()))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        console.print(Text("The target was simulated: servewise's twin, not a real GPU.", style="yellow"))
        console.print(f"report: {outcome.report.resolve()}", markup=False)
