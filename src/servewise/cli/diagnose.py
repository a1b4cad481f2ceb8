"""`servewise diagnose RUN`: recompute the bottleneck diagnosis of a stored run and print it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from servewise.analysis.diagnosis import RESOURCE_LABELS, Diagnosis, Verdict, diagnose
from servewise.store import RunStore, StoreError

_STORE_HELP = "Run store (default: $SERVEWISE_STORE or ~/.local/share/servewise/runs.db)."

_VERDICT_STYLE = {
    Verdict.BOTTLENECK: "bold red",
    Verdict.CONTRIBUTING: "yellow",
    Verdict.RULED_OUT: "green",
    Verdict.NO_DATA: "dim",
}


def diagnose_stored_run(store: RunStore, run_id: str) -> Diagnosis:
    """Diagnosis of a stored run from its summary and samples, exactly as bench computed it."""
    run = store.get_run(run_id)
    summary = run.summary or {}
    server = (summary.get("target") or {}).get("server") or run.target.get("server") or {}
    engine = server.get("engine") if isinstance(server, dict) else None
    return diagnose(summary, store.samples(run.id), server_engine=engine)


def render(diagnosis: dict, console: Console) -> None:
    """The findings table, then the primary bottleneck and what to do about it (from ``Diagnosis.to_dict``)."""
    table = Table(title="Bottleneck diagnosis (USE: utilisation, saturation, errors)", show_lines=False)
    table.add_column("resource")
    table.add_column("verdict")
    table.add_column("evidence", overflow="fold")
    for finding in diagnosis["findings"]:
        verdict = finding["verdict"]
        table.add_row(
            RESOURCE_LABELS.get(finding["resource"], finding["resource"]),
            Text(verdict, style=_VERDICT_STYLE.get(verdict, "")),
            Text(str(finding["evidence"])),
        )
    console.print(table)
    primary = RESOURCE_LABELS.get(diagnosis["primary"], diagnosis["primary"])
    console.print(
        Text.assemble(("primary bottleneck: ", "bold"), f"{primary} (confidence {diagnosis['confidence']})")
    )
    for step in diagnosis.get("next_steps", ()):
        console.print(f"  • {step}", markup=False)


def register(app: typer.Typer) -> None:
    @app.command("diagnose")
    def diagnose_command(
        run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or a unique part of it).")],
        store_path: Annotated[Path | None, typer.Option("--store", help=_STORE_HELP)] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON.")] = False,
    ) -> None:
        """Name the run's bottleneck from its stored telemetry: every resource's verdict and the evidence."""
        console = Console()
        try:
            with RunStore(store_path) as store:
                result = diagnose_stored_run(store, run_id)
        except StoreError as exc:
            Console(stderr=True).print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            render(result.to_dict(), console)
        if all(f.verdict is Verdict.NO_DATA for f in result.findings):
            raise typer.Exit(3)  # inconclusive: the run stored neither a summary nor telemetry
