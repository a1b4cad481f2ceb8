"""The gate's verdict as a terminal table: one row per check, the fingerprint warning, the rollback."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from servewise.format import number
from servewise.results import CheckRow, GateReport
from servewise.results.gate import GateVerdict

_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


def _number(value: float | None, unit: str) -> str:
    return number(value, ".2f", unit="%") if unit == "%" else number(value, ",.1f", unit=f" {unit}")


def _change(check: CheckRow) -> tuple[str, str, str]:
    points = "pt" if check.unit == "%" else "%"
    change = "-" if check.change_pct is None else f"{check.change_pct:+.1f}{points}"
    low, high = check.ci or (None, None)
    interval = "-" if low is None or high is None else f"[{low:+.1f}, {high:+.1f}]{points}"
    allowed = "-" if check.allowed_pct is None else f"{check.allowed_pct:.1f}{points}"
    if check.noise_floor_pct:
        allowed += f" (noise {check.noise_floor_pct:.0f}%)"
    return change, interval, allowed


def render_gate(report: GateReport, console: Console) -> None:
    against = f"baseline {report.baseline.run_id}" if report.baseline else "no baseline (the first run)"
    table = Table(title=f"gate: {report.candidate.run_id} vs {against}")
    for column in ("check", "baseline", "candidate", "change", "interval", "allowed", "verdict", "why"):
        table.add_column(column, justify="right" if column in ("baseline", "candidate", "change") else "left")
    for check in report.metrics:
        change, interval, allowed = _change(check)
        verdict = check.verdict.value if check.gated else f"({check.verdict.value}, info)"
        style = _STYLE[check.verdict.value] if check.gated else "dim"
        table.add_row(
            check.name, _number(check.baseline, check.unit), _number(check.candidate, check.unit),
            change, interval, allowed, f"[{style}]{verdict}[/]", check.reason,
        )  # fmt: skip
    console.print(table)
    sides = (len(report.baseline_runs), len(report.candidate_runs))
    if max(sides) > 1:
        console.print(
            f"runs: {sides[0]} baseline ({', '.join(report.baseline_runs)}), {sides[1]} candidate "
            f"({', '.join(report.candidate_runs)})",
            markup=False,
        )
    for run in report.set_aside:
        console.print(f"set aside {run.run_id}: {run.reason}", markup=False)
    if report.fingerprint_diff:
        console.print("[yellow]warning: the runs differ in what they measured; compare with care:[/]")
        for diff in report.fingerprint_diff:
            console.print(f"  {diff.field}: {diff.baseline!s} -> {diff.candidate!s}", markup=False)
    verdict = report.verdict.value
    console.print(f"verdict: [{_STYLE[verdict]}]{verdict.upper()}[/] ({report.reason})")
    if report.verdict is GateVerdict.FAIL:
        target = report.rollback_to
        line = (
            f"roll back to {target.run_id} {target.labels}" if target else "no labelled run has passed a gate"
        )
        console.print(line, markup=False)
