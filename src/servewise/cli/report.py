"""`servewise report RUN -o FILE.html`: the self-contained HTML report of any stored run.

Exit 0 written, 2 usage (unknown run, unreadable plan/stage file, unwritable output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servewise.cli.options import StoreOption
from servewise.flows.report import build_report
from servewise.store import open_store


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or a unique part), or 'latest'")],
        output: Annotated[Path | None, typer.Option("-o", "--output", help="HTML file to write")] = None,
        plan: Annotated[Path | None, typer.Option("--plan", help="Plan JSON (servewise plan --json)")] = None,
        stage: Annotated[
            Path | None, typer.Option("--stage", help="Stage JSON (servewise stage --json)")
        ] = None,
        coldstart: Annotated[
            str | None, typer.Option("--coldstart", help="Coldstart run to include (id or 'latest')")
        ] = None,
        title: Annotated[str | None, typer.Option("--title", help="Report title")] = None,
        store_path: StoreOption = None,
    ) -> None:
        """Write a self-contained HTML report (works offline) of a stored run."""
        with open_store(store_path) as store:
            path = build_report(
                store, run_ref, output, plan_path=plan, stage_path=stage, coldstart_ref=coldstart, title=title
            )
        typer.echo(str(path.resolve()))
