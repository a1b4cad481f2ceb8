"""The `servewise` app: registers every command and turns user errors into one line and an exit code."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.text import Text

from servewise import __version__
from servewise.cli import bench, coldstart, diagnose, doctor, gate, plan, report, runs, stage, twin
from servewise.spec.errors import SpecError
from servewise.store import StoreError

EXIT_USAGE = 2

app = typer.Typer(
    name="servewise",
    help=(
        "Evidence for taking model serving from prototype to production.\n\n"
        "Measure an OpenAI-compatible endpoint under a repeatable workload (bench), keep every run (runs), "
        "and read the results again at any time."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

for module in (bench, runs, diagnose, gate, plan, twin, coldstart, stage, report, doctor):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        print(f"servewise {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """servewise: measure, diagnose, project, gate and advise."""


def main() -> None:
    err = Console(stderr=True)
    try:
        app()
    except (SpecError, StoreError) as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc)))
        sys.exit(EXIT_USAGE)
