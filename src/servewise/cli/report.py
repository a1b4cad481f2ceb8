"""`servewise report RUN -o FILE.html`: the self-contained HTML report of any stored run.

Exit 0 written, 2 usage (unknown run, unreadable plan/stage file, unwritable output).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from servewise.report.html import bundle_from_store, write_report
from servewise.store import RunStore, StoreError

_STORE_HELP = "Run store (default: $SERVEWISE_STORE or ~/.local/share/servewise/runs.db)."


class ReportUsageError(ValueError):
    pass


def _read_json(path: Path | None, what: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ReportUsageError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ReportUsageError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReportUsageError(f"{path}: expected a JSON object ({what})")
    return data


def _coldstart_summary(store: RunStore, ref: str | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    run = store.latest_run(kind="coldstart") if ref == "latest" else store.get_run(ref)
    if run is None or run.kind != "coldstart":
        raise ReportUsageError(f"{ref!r} is not a coldstart run (see `servewise runs list`)")
    return run.summary


def build_report(
    store: RunStore,
    run_ref: str,
    output: Path | None,
    *,
    plan_path: Path | None = None,
    stage_path: Path | None = None,
    coldstart_ref: str | None = None,
    title: str | None = None,
) -> Path:
    """Gather the run's pieces (and any given beside it) and write the report; returns its path."""
    run = store.latest_run() if run_ref == "latest" else store.get_run(run_ref)
    if run is None:
        raise ReportUsageError(f"no runs in {store.path}")
    bundle = bundle_from_store(
        store,
        run.id,
        plan=_read_json(plan_path, "plan"),
        stage=_read_json(stage_path, "stage"),
        coldstart=_coldstart_summary(store, coldstart_ref),
    )
    if title:
        bundle.title = title
    path = output or Path(f"servewise-report-{run.id}.html")
    try:
        return write_report(path, bundle)
    except OSError as exc:
        raise ReportUsageError(f"cannot write {path}: {exc.strerror}") from None


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
        store_path: Annotated[Path | None, typer.Option("--store", help=_STORE_HELP)] = None,
    ) -> None:
        """Write a self-contained HTML report (works offline) of a stored run."""
        try:
            with RunStore(store_path) as store:
                path = build_report(
                    store,
                    run_ref,
                    output,
                    plan_path=plan,
                    stage_path=stage,
                    coldstart_ref=coldstart,
                    title=title,
                )
        except (ReportUsageError, StoreError) as exc:
            Console(stderr=True).print(Text.assemble(("error: ", "bold red"), str(exc)))
            raise typer.Exit(2) from None
        typer.echo(str(path.resolve()))
