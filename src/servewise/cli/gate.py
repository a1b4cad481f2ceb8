"""`servewise gate`: is the candidate run as good as the baseline? Exit 0 pass, 1 fail, 2 usage, 3 inconclusive.

Also `servewise gate --serve`: the same verdict over HTTP for Argo Rollouts' web metric provider
(``GET /gate?baseline=...&candidate=...`` -> JSON with ``verdict``).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from servewise.analysis.gate_options import build_policy, build_slo
from servewise.cli.options import StoreOption
from servewise.errors import UsageError
from servewise.flows.gate import GateRequest, make_server, run_gate
from servewise.report.gate import render_gate
from servewise.report.progress import TerminalProgress
from servewise.results.gate import GateVerdict
from servewise.store import open_store

EXIT_CODES = {GateVerdict.PASS: 0, GateVerdict.FAIL: 1, GateVerdict.INCONCLUSIVE: 3}


def gate(
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", "-b", help="RUN id | label:KEY=VALUE[,KEY=VALUE] | latest-pass"),
    ] = None,
    candidate: Annotated[
        str, typer.Option("--candidate", "-c", help="RUN id | label:KEY=VALUE | latest")
    ] = "latest",
    slo: Annotated[
        str | None, typer.Option(help="Absolute limits that fail at once, e.g. ttft_p95=500ms,errors=1%")
    ] = None,
    max_regression: Annotated[
        str | None,
        typer.Option(
            "--max-regression",
            help="Allowed worsening per check (default 10%, errors 1 point), e.g. ttft_p95=10%,throughput=-5%. "
            "Naming a p99 check gates it.",
        ),
    ] = None,
    confidence: Annotated[float, typer.Option(help="One-sided confidence of each decision")] = 0.95,
    repeats: Annotated[
        int,
        typer.Option(
            min=0, max=20,
            help="First run each side N more times, interleaved (baseline, candidate, baseline, ...) against the "
            "targets both were measured on, and gate on every run: what lets the gate tell a 30% regression "
            "from a noisy host. A run during which other work held the host's CPU (another job on the runner) "
            "is made up for by one more pair, up to N more, and set aside. The new runs join each run's "
            "repeat group, so later gates reuse them",
        ),
    ] = 0,
    between_run: Annotated[
        float | None,
        typer.Option(
            metavar="SHARE",
            help="What you expect two runs of one release to differ by beyond their own sampling (default "
            "0.10); the repeats on each side refine it, one run a side relies on it",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the JSON report instead of a table")
    ] = False,
    store_path: StoreOption = None,
    record: Annotated[
        bool, typer.Option(help="Store the verdict on the candidate (feeds latest-pass)")
    ] = True,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve verdicts over HTTP for Argo's web provider")
    ] = False,
    allow_different_workload: Annotated[
        bool,
        typer.Option(
            "--allow-different-workload",
            help="Compare runs whose traffic differs (lengths, prefixes, sessions, trace, load); refused by default",
        ),
    ] = False,
    first_run_is_baseline: Annotated[
        bool,
        typer.Option(
            "--first-run-is-baseline",
            help="When the baseline selector (latest-pass, label:...) matches no run yet, as in a fresh CI "
            "store, record the candidate as the first baseline (exit 0) instead of failing; an SLO it breaks "
            "still fails it",
        ),
    ] = False,
    host: Annotated[str, typer.Option(help="--serve address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="--serve port")] = 8080,
) -> None:
    """Decide whether CANDIDATE is as good as BASELINE: exit 0 pass, 1 fail, 2 usage, 3 inconclusive."""
    policy = build_policy(max_regression, confidence, between_run)
    slo_spec = build_slo(slo)
    if serve:
        defaults = {"baseline": baseline, "candidate": candidate, "max_regression": max_regression, "slo": slo,
                    "confidence": confidence, "record": record, "between_run": between_run,
                    "allow_different_workload": allow_different_workload}  # fmt: skip
        server = make_server(store_path, defaults, host, port)
        Console(stderr=True).print(
            f"servewise gate serving on http://{host}:{server.server_address[1]}/gate", markup=False
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return
    if not baseline:
        raise UsageError("--baseline is required (RUN | label:KEY=VALUE | latest-pass)")
    request = GateRequest(
        baseline=baseline, candidate=candidate, policy=policy, slo=slo_spec, record=record,
        allow_different_workload=allow_different_workload, repeats=repeats,
        first_run_is_baseline=first_run_is_baseline,
    )  # fmt: skip
    with open_store(store_path) as store:
        report = run_gate(store, request, TerminalProgress(Console(stderr=True), quiet=json_output))
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        render_gate(report, Console())
    raise typer.Exit(EXIT_CODES[report.verdict])


def register(app: typer.Typer) -> None:
    app.command("gate")(gate)
