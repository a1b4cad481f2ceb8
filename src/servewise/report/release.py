"""Releases on the terminal: one release's steps and how it ended, and the history of releases. Computes
nothing: the verdicts and the release left running come from the stored result."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from servewise.format import number
from servewise.report.gate import render_gate
from servewise.results import ReleaseOutcome, ReleaseResult

_STYLE = {
    "ok": "green", "failed": "bold red", "timeout": "bold red", "interrupted": "yellow",
    ReleaseOutcome.GOOD: "green", ReleaseOutcome.KEPT: "yellow", ReleaseOutcome.ROLLED_BACK: "yellow",
    ReleaseOutcome.NOT_DEPLOYED: "yellow", ReleaseOutcome.UNKNOWN: "bold red", ReleaseOutcome.RUNNING: "dim",
}  # fmt: skip


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def running_line(outcome: ReleaseOutcome, running: str | None) -> str:
    """The sentence every ending prints: which release is serving now."""
    if running is None:
        return "running: unknown (check the target by hand)"
    if outcome is ReleaseOutcome.UNKNOWN:
        return f"running: {running} (not confirmed good)"
    return f"running: {running}"


def steps_table(result: ReleaseResult) -> Table:
    table = Table(title=f"release {result.version} (run {result.run_id})", title_justify="left")
    for column in ("step", "status", "started (UTC)", "took s", "what happened"):
        table.add_column(column, justify="right" if column == "took s" else "left")
    for step in result.steps:
        style = _STYLE[step.status]
        table.add_row(str(step.name), f"[{style}]{step.status}[/]", _when(step.started_at),
                      number(step.duration_s, ".1f"), step.detail)  # fmt: skip
    return table


def render_release(result: ReleaseResult, console: Console) -> None:
    """The steps, each gate's table, the outcome and which release is running."""
    console.print(steps_table(result))
    for step in result.steps:
        if step.gate is not None:
            render_gate(step.gate, console)
    for step in result.steps:
        if step.status != "ok" and step.output_tail.strip():
            console.print(f"{step.name} output (last lines; all of it in {step.log_path}):", markup=False)
            console.print("\n".join(step.output_tail.strip().splitlines()[-10:]), markup=False, style="dim")
    style = _STYLE[result.status]
    console.print(f"outcome: [{style}]{result.status}[/]: ", end="")
    console.print(result.reason, markup=False)
    console.print(running_line(result.status, result.running), markup=False)


def history_table(releases: Sequence[ReleaseResult]) -> Table:
    table = Table(title=f"{len(releases)} release(s), newest first", title_justify="left")
    for column in (
        "release",
        "started (UTC)",
        "outcome",
        "gate",
        "ready s",
        "rolled back to",
        "running",
        "run",
    ):
        table.add_column(column, justify="right" if column == "ready s" else "left")
    for r in releases:
        style = _STYLE[r.status]
        table.add_row(
            r.version, _when(r.started_at), f"[{style}]{r.status}[/]", str(r.gate_verdict or "-"),
            number(r.time_to_ready_s, ".1f"), (r.previous or "-") if r.rolled_back else "-",
            r.running or ("-" if r.status is ReleaseOutcome.RUNNING else "unknown"), r.run_id,
        )  # fmt: skip
    return table
