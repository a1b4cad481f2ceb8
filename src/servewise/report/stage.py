"""The stage on the terminal: the probes table, the placement with its reasons, the checklist and the
next production layers. Every server-derived string goes in as Text, never as markup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from servewise.analysis.stage import StageAssessment
from servewise.probes import ProbeResult

STATUS_STYLE = {"pass": "bold green", "fail": "bold red", "unknown": "yellow"}


def probes_table(probes: Sequence[ProbeResult]) -> Table:
    table = Table(title="Readiness probes", title_justify="left")
    for column in ("probe", "status", "evidence"):
        table.add_column(column, overflow="fold")
    for p in probes:
        table.add_row(p.name, Text(p.status.value, STATUS_STYLE[p.status.value]), Text(p.evidence))
    return table


def render_assessment(assessment: StageAssessment) -> Group:
    parts: list[Any] = [Text.assemble(("Stage: ", "bold"), (assessment.stage.label, "bold cyan"))]
    parts += [Text(f"  • {reason}") for reason in assessment.reasons]
    parts.append(Text.assemble(("Optimize for: ", "bold"), assessment.optimize_for))
    parts.append(Text.assemble(("Do not overdo: ", "bold"), assessment.do_not_overdo))
    table = Table(title="Readiness checklist", title_justify="left")
    for column in ("area", "item", "status", "evidence", "matters from"):
        table.add_column(column, overflow="fold")
    for item in assessment.checklist:
        table.add_row(
            item.area,
            item.title,
            Text(item.status, STATUS_STYLE[item.status]),
            Text(item.evidence),
            item.needed_from.label,
        )
    parts.append(table)
    if assessment.next_layers:
        parts.append(Text("Next production layers, ranked by the evidence", style="bold"))
        for rank, layer in enumerate(assessment.next_layers, 1):
            parts.append(Text.assemble(f"  {rank}. ", (layer.title, "bold"), f": {layer.action}"))
            parts += [Text(f"       - {why}", style="dim") for why in layer.why]
    if assessment.not_yet:
        later = "; ".join(f"{x.title} (from {x.needed_from.label})" for x in assessment.not_yet)
        parts.append(Text.assemble(("Not yet (would be overbuilding): ", "bold"), later))
    return Group(*parts)
