"""`servewise release run|history`: deploy a version, gate it against the last good release, keep it or roll
back. Exit 0 kept, 1 rolled back (the previous release verified back), 2 bad file or flags, 3 unknown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from servewise.cli.options import JsonFlag, QuietFlag, StoreOption
from servewise.flows.release import ReleaseRequest, release_history, run_release
from servewise.release.config import EXAMPLE, check_version, load_release_file
from servewise.report.progress import TerminalProgress
from servewise.report.release import history_table, render_release
from servewise.results import ReleaseOutcome
from servewise.store import open_store

EXIT_CODES = {
    ReleaseOutcome.GOOD: 0, ReleaseOutcome.KEPT: 0, ReleaseOutcome.ROLLED_BACK: 1, ReleaseOutcome.NOT_DEPLOYED: 1,
    ReleaseOutcome.UNKNOWN: 3, ReleaseOutcome.RUNNING: 3,
}  # fmt: skip

RUN_HELP = "\n\n".join((  # a paragraph a line: the help is wrapped to the terminal's width
    "Deploy VERSION with the file's deploy command, time it from that command's start to ready and a first "
    "streamed token, run the probes, bench it, and gate the bench against the last good release's. A pass (or "
    "the first release) is recorded as good; a fail, a ready that never comes or any step that breaks runs the "
    "rollback command, waits for the previous release, benches a short check and confirms it is back within its "
    "own gate. Every step is stored as it finishes (`servewise release history`).",
    "Exit codes: 0 VERSION is good and running (an inconclusive gate keeps it unless gate.on_inconclusive is "
    "rollback), 1 rolled back and the previous release verified, 2 bad release file or flags, 3 unknown (the "
    "rollback failed or the previous release did not come back; the last line says what is running).",
    "Ctrl-C stops the step under way and rolls back; it is held while the previous release is brought back.",
    "{version} and {previous} are filled into the commands, which run through /bin/sh -c; $VARS there are the "
    "shell's, never stored. Example release file:",
    EXAMPLE,
))

release_app = typer.Typer(help="Deploy, gate and roll back releases with your own commands.", no_args_is_help=True)


@release_app.command("run", help=RUN_HELP)
def run(
    file: Annotated[Path, typer.Option("--file", "-f", help="The release file (YAML).")],
    version: Annotated[str, typer.Option("--version", help="The release to deploy ({version}).")],
    previous: Annotated[
        str | None,
        typer.Option(help="The release running now ({previous}; default: the last good one stored)."),
    ] = None,
    store: StoreOption = None,
    json_output: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Deploy VERSION, gate it, and keep it or roll back."""
    release = load_release_file(file)
    request = ReleaseRequest(release=release, version=check_version(version, "--version"),
                             previous=check_version(previous, "--previous") if previous else None)  # fmt: skip
    console = Console(stderr=json_output)
    with open_store(store) as run_store:
        result = run_release(run_store, request, TerminalProgress(console, quiet=quiet or json_output))
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        render_release(result, console)
    raise typer.Exit(EXIT_CODES[result.status])


@release_app.command("history")
def history(store: StoreOption = None, json_output: JsonFlag = False) -> None:
    """Every release, newest first: outcome, gate verdict, time to ready, rollbacks, what was left running."""
    with open_store(store) as run_store:
        releases = release_history(run_store)
    if json_output:
        typer.echo(json.dumps([r.to_json() for r in releases], indent=2))
        return
    Console().print(history_table(releases))


def register(app: typer.Typer) -> None:
    app.add_typer(release_app, name="release", rich_help_panel="Release")
