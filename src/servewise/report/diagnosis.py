"""The diagnosis on the terminal: every resource's verdict and evidence, then the primary and next steps."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from servewise.analysis.diagnosis import RESOURCE_LABELS
from servewise.results import DiagnosisResult
from servewise.results.diagnosis import FindingStatus

_VERDICT_STYLE = {
    FindingStatus.BOTTLENECK: "bold red",
    FindingStatus.CONTRIBUTING: "yellow",
    FindingStatus.RULED_OUT: "green",
    FindingStatus.NO_DATA: "dim",
}


def render_diagnosis(diagnosis: DiagnosisResult, console: Console) -> None:
    table = Table(title="Bottleneck diagnosis (USE: utilisation, saturation, errors)", show_lines=False)
    table.add_column("resource")
    table.add_column("verdict")
    table.add_column("on", style="dim")  # which machine the evidence was read on: the server's or this one
    table.add_column("evidence", overflow="fold")
    for finding in diagnosis.findings:
        table.add_row(
            RESOURCE_LABELS.get(finding.resource, finding.resource),
            Text(finding.verdict.value, style=_VERDICT_STYLE.get(finding.verdict, "")),
            finding.read_on or "-",
            Text(finding.evidence),
        )
    console.print(table)
    if remote := sorted(
        {f.source for f in diagnosis.findings if f.source and f.source.startswith("node_exporter")}
    ):
        console.print(Text.assemble(("the serving host's CPU and disk read from ", "dim"), "; ".join(remote)))
    primary = RESOURCE_LABELS.get(diagnosis.primary, diagnosis.primary)
    console.print(
        Text.assemble(("primary bottleneck: ", "bold"), f"{primary} (confidence {diagnosis.confidence})")
    )
    for step in diagnosis.next_steps:
        console.print(f"  • {step}", markup=False)
