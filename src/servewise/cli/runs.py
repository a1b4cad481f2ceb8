"""`servewise runs list|show|export|repeat|push|pull`: the run history, and copying it between stores."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from servewise.cli.options import LabelOption, QuietFlag, StoreOption
from servewise.flows.runs import repeat_run
from servewise.flows.sync import CopyProgress, sync_runs
from servewise.report.coldstart import summary_view as coldstart_view
from servewise.report.export import stdout_or, write_csv, write_run_json
from servewise.report.progress import TerminalProgress
from servewise.report.runs import runs_json, runs_table, spread_table
from servewise.report.terminal import summary_view
from servewise.results import ColdstartResult
from servewise.spec import SpecError, parse_labels
from servewise.store import Store, open_store

runs_app = typer.Typer(help="List, show and export stored runs.", no_args_is_help=True)


@runs_app.command("list")
def list_runs(
    label: LabelOption = [],  # noqa: B006 (typer reads the default; it is never mutated)
    kind: str | None = typer.Option(None, help="bench | sweep | coldstart ..."),
    limit: int = typer.Option(20, help="How many (newest first)."),
    store: StoreOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The newest runs, optionally filtered by label."""
    with open_store(store) as run_store:
        rows = run_store.list_runs(kind=kind, labels=parse_labels(label), limit=limit)
    if as_json:
        print(json.dumps(runs_json(rows), indent=2))
        return
    Console().print(runs_table(rows))


@runs_app.command("show")
def show(
    run_id: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    store: StoreOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the stored summary as JSON."),
) -> None:
    """A stored run's summary, as `bench` or `coldstart` printed it."""
    with open_store(store) as run_store:
        run = run_store.get_run(run_id)
    if run.measured is not None and not as_json:
        Console().print(summary_view(run.measured))
    elif isinstance(run.result, ColdstartResult) and run.result.runs_ok and not as_json:
        Console().print(coldstart_view(run.result))
    else:  # asked for, or nothing finished to lay out
        print(json.dumps(run.export_json() or {"run_id": run.id, "status": run.status}, indent=2, default=str))


@runs_app.command("export")
def export(
    run_id: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    format: str = typer.Option(
        "json", "--format", "-f", help="json (summary + records) | csv (one row per request)."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default stdout)."),
    store: StoreOption = None,
) -> None:
    """Every request of a run, for your own analysis. The API key is never part of a run."""
    if format not in ("json", "csv"):
        raise SpecError(f"--format must be json or csv, got {format!r}")
    with open_store(store) as run_store:
        run = run_store.get_run(run_id)
        out = stdout_or(output)
        try:
            records = run_store.iter_records(run.id)
            write_csv(records, out) if format == "csv" else write_run_json(run, records, out)
        finally:
            if output:
                out.close()


@runs_app.command("repeat")
def repeat(
    run_id: str = typer.Argument(..., help="Run whose stored spec to run again."),
    times: int = typer.Option(3, "--times", "-n", min=1, max=50, help="How many more runs."),
    store: StoreOption = None,
    quiet: QuietFlag = False,
    as_json: bool = typer.Option(False, "--json", help="Print the spread as JSON."),
) -> None:
    """Run a stored spec again N times and report each metric's run-to-run spread.

    The group and its spread are kept with every run of it; `servewise gate` gates on all the runs of a
    group, which is how it measures what two runs of one release differ by.
    """
    console = Console(stderr=as_json)
    with open_store(store) as run_store:
        outcome = repeat_run(run_store, run_id, times, TerminalProgress(console, quiet=quiet))
    if as_json:
        print(json.dumps({"runs": outcome.group, "spread": outcome.spread}, indent=2))
        return
    console.print(spread_table(outcome.group, outcome.spread))


def _sync(source: Store, target: Store, verb: str) -> None:
    """Copy with a live line (stderr) for the run being copied; a one-line summary after (stdout)."""
    with Console(stderr=True).status(f"{verb}…") as status:

        def progress(p: CopyProgress) -> None:
            status.update(f"{verb} run {p.run_number}/{p.runs} {p.run_id}: {p.records_done:,}/{p.records:,} records")

        outcome = sync_runs(source, target, progress)
    notes = f", {_count(outcome.notes, 'newer note')} brought over" if outcome.notes else ""
    Console().print(
        f"{verb} {_count(len(outcome.copied), 'run')} ({outcome.records:,} records) from {source.location} to "
        f"{target.location}; {outcome.already_there} already there{notes}",
        markup=False,
        highlight=False,
        soft_wrap=True,  # one line, however long the locations: scripts read it
    )


def _count(n: int, thing: str) -> str:
    return f"{n:,} {thing}{'s' * (n != 1)}"


@runs_app.command("push")
def push(
    to: str = typer.Option(..., "--to", help="The store to copy into, e.g. postgresql://ci@db.internal/servewise."),
    store: StoreOption = None,
) -> None:
    """Copy this store's runs (records, samples, notes) into another; runs keep their ids, a second push
    copies nothing. Passwords come from PGPASSWORD or ~/.pgpass, never the command line."""
    with open_store(store) as source, open_store(to) as target:
        _sync(source, target, "pushed")


@runs_app.command("pull")
def pull(
    source_location: str = typer.Option(..., "--from", help="The store to copy from, e.g. a postgresql:// URL."),
    store: StoreOption = None,
) -> None:
    """Copy another store's runs into this one (the gate's baseline from the team's store, say); idempotent."""
    with open_store(source_location) as source, open_store(store) as target:
        _sync(source, target, "pulled")


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs", rich_help_panel="History")
