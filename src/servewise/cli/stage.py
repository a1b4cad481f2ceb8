"""`servewise stage` and `servewise probe`: where the team stands, and how the endpoint behaves when pushed.

stage: exit 0 assessed, 2 usage (bad answers file, bad flags), 3 target unreachable.
probe: exit 0 every probe passed or unknown, 1 a probe failed, 2 usage, 3 target unreachable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from servewise.analysis.stage import answers_template
from servewise.cli.options import StoreOption
from servewise.errors import UnreachableError, UsageError
from servewise.flows.stage import assess, attach, probe, probe_config, probes_unreachable
from servewise.probes import ProbeStatus
from servewise.report.stage import probes_table, render_assessment
from servewise.store import open_store

STAGE_HELP = (
    "Place the team at a stage (prototype → mature production) from evidence, forecast when the tier is "
    "outgrown, and rank the next production layers.\n\n"
    "Evidence: production traffic from --prometheus (requests per day, active days, daily and weekly cycle, "
    "growth of the daily peak, errors, SLO attainment from the engine's histograms), the run store (sweeps, "
    "gates, releases, rollbacks, cold starts, diagnoses; twin runs never count), and the probes when a URL is "
    "given. The answers file (--init-answers writes one) speaks only for what nothing can observe: an SLA, "
    "on-call, cost tracking.\n\n"
    "Example: servewise stage http://gpu-box:8000 --prometheus http://prometheus:9090 --replicas 2"
)


def register(app: typer.Typer) -> None:
    @app.command("stage", help=STAGE_HELP)
    def stage_command(
        url: Annotated[
            str | None, typer.Argument(help="Endpoint to probe (optional), e.g. http://127.0.0.1:8000")
        ] = None,
        answers: Annotated[
            Path | None, typer.Option("--answers", help="YAML answers file: KEY: yes|no|unknown")
        ] = None,
        init_answers: Annotated[
            Path | None, typer.Option("--init-answers", help="Write an answers file to fill in, then exit")
        ] = None,
        prometheus: Annotated[
            str | None,
            typer.Option(
                "--prometheus",
                help="The team's Prometheus URL: production request counters and latency histograms "
                "(vLLM, SGLang, TGI names) give traffic, seasonality, trend, errors and SLO attainment",
            ),
        ] = None,
        days: Annotated[
            float,
            typer.Option(
                "--days", min=1, max=400, help="Days of traffic to read (a trend needs 7, a pattern 14)"
            ),
        ] = 28,
        capacity: Annotated[
            float | None,
            typer.Option(
                "--capacity",
                min=0.001,
                help="Requests/s one replica serves within the SLO, when known (default: the newest stored "
                "sweep's knee for this target)",
            ),
        ] = None,
        replicas: Annotated[
            int, typer.Option("--replicas", min=1, max=10_000, help="Replicas serving the traffic read")
        ] = 1,
        api_key_env: Annotated[
            str | None, typer.Option("--api-key-env", help="Env var holding the API key")
        ] = None,
        api_key_file: Annotated[
            str | None, typer.Option("--api-key-file", help="File holding the API key")
        ] = None,
        burst: Annotated[
            int, typer.Option("--burst", min=0, max=256, help="Overload burst size (0 skips)")
        ] = 32,
        timeout_s: Annotated[
            float, typer.Option("--timeout", min=0.5, help="Per-request probe timeout (s)")
        ] = 10,
        attach_to: Annotated[
            str | None, typer.Option("--attach", help="Store the result with this run (shown by `report`)")
        ] = None,
        store_path: StoreOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the assessment as JSON")] = False,
    ) -> None:
        """Place the team at a stage (prototype → mature production) from evidence, forecast when the tier is
        outgrown, and rank the next production layers."""
        err = Console(stderr=True)
        if init_answers is not None:
            if init_answers.exists():
                raise UsageError(f"{init_answers} exists; not overwriting")
            init_answers.write_text(answers_template())
            typer.echo(f"wrote {init_answers}: answer each question yes, no or unknown")
            return

        def warn(text: str) -> None:
            err.print(Text.assemble(("warning: ", "bold yellow"), text))

        config = probe_config(api_key_env, api_key_file, burst, timeout_s)
        with open_store(store_path) as store:
            outcome = assess(
                store,
                url=url,
                answers_path=answers,
                config=config,
                prometheus_url=prometheus,
                days=days,
                capacity_rps=capacity,
                replicas=replicas,
                warn=warn,
            )
            if outcome.unreachable:
                raise UnreachableError(outcome.probes[0].evidence)
            if attach_to:
                attach(store, attach_to, outcome)
        if as_json:
            typer.echo(
                json.dumps(
                    {**outcome.assessment.to_dict(), "probes": [p.to_dict() for p in outcome.probes]},
                    indent=2,
                )
            )
            return
        console = Console()
        if outcome.probes:
            console.print(probes_table(outcome.probes))
        console.print(render_assessment(outcome.assessment.record()))

    @app.command("probe")
    def probe_command(
        url: Annotated[str, typer.Argument(help="Endpoint to probe, e.g. http://127.0.0.1:8000")],
        model: Annotated[
            str | None, typer.Option("--model", help="Model name (default: first listed)")
        ] = None,
        api_key_env: Annotated[
            str | None, typer.Option("--api-key-env", help="Env var holding the API key")
        ] = None,
        api_key_file: Annotated[
            str | None, typer.Option("--api-key-file", help="File holding the API key")
        ] = None,
        burst: Annotated[
            int, typer.Option("--burst", min=0, max=256, help="Overload burst size (0 skips)")
        ] = 32,
        timeout_s: Annotated[float, typer.Option("--timeout", min=0.5, help="Per-request timeout (s)")] = 10,
        as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON")] = False,
    ) -> None:
        """Readiness probes: health vs ready, /metrics, streaming, usage, bad input, overload, auth, version."""
        results = probe(url, probe_config(api_key_env, api_key_file, burst, timeout_s, model))
        if as_json:
            typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        else:
            Console().print(probes_table(results))
        if probes_unreachable(results):
            raise typer.Exit(3)
        if any(r.status is ProbeStatus.FAIL for r in results):
            raise typer.Exit(1)
