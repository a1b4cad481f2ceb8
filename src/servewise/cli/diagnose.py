"""`servewise diagnose RUN`: recompute the bottleneck diagnosis of a stored run and print it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from servewise.cli.options import StoreOption
from servewise.flows.diagnose import diagnose_stored_run
from servewise.report.diagnosis import render_diagnosis
from servewise.store import open_store


def register(app: typer.Typer) -> None:
    @app.command("diagnose")
    def diagnose_command(
        run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or a unique part of it).")],
        store_path: StoreOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON.")] = False,
    ) -> None:
        """Name the run's bottleneck from its stored telemetry: every resource's verdict and the evidence."""
        with open_store(store_path) as store:
            result = diagnose_stored_run(store, run_id)
        if as_json:
            typer.echo(json.dumps(result.to_json(), indent=2))
        else:
            render_diagnosis(result, Console())
        if result.inconclusive:
            raise typer.Exit(3)  # inconclusive: the run stored neither a summary nor telemetry
