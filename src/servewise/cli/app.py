"""The `servewise` app: registers every command and maps every servewise error, once, to one line and
its exit code (``errors.ServewiseError.exit_code``)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from servewise import __version__
from servewise.cli import (
    bench,
    coldstart,
    diagnose,
    doctor,
    gate,
    plan,
    release,
    report,
    runs,
    stage,
    trace,
    twin,
)
from servewise.errors import ServewiseError


class ServewiseGroup(TyperGroup):
    """Runs a command; a ServewiseError becomes ``error: <message>`` on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except ServewiseError as exc:
            Console(stderr=True).print(Text.assemble(("error: ", "bold red"), str(exc)))
            ctx.exit(exc.exit_code)


app = typer.Typer(
    name="servewise",
    cls=ServewiseGroup,
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

for module in (bench, trace, runs, diagnose, gate, release, plan, twin, coldstart, stage, report, doctor):
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
    app()
