"""The capacity plan on the terminal: one row per GPU tier, what bounds each, the recommendation."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from servewise.capacity import PlanResult
from servewise.format import number


def _fmt(value: float | None, spec: str, prefix: str = "", unit: str = "") -> str:
    return number(value, spec, missing="—", prefix=prefix, unit=unit)


def render_plan(result: PlanResult, console: Console) -> None:
    table = Table(title="Capacity plan", title_justify="left")
    for name in (
        "GPU",
        "fits",
        "max conc",
        "out tok/s",
        "TTFT p50",
        "TPOT p50",
        "req/s/rep",
        "replicas",
        "$/hour",
        "$/1M out",
        "$/1k req",
        "headroom",
    ):
        table.add_column(name, justify="left" if name == "GPU" else "right")
    for t in result.tiers:
        table.add_row(
            f"{t.num_gpus}x {t.gpu}",
            "[green]yes[/]" if t.fits else "[red]no[/]",
            str(t.max_concurrency),
            _fmt(t.output_tokens_per_s, ",.0f"),
            _fmt(t.ttft_ms_p50, ",.0f", unit=" ms"),
            _fmt(t.tpot_ms_p50, ".1f", unit=" ms"),
            _fmt(t.rate_per_replica, ".2f"),
            _fmt(t.replicas, "d"),
            _fmt(t.price_per_hour, ",.2f", "$"),
            _fmt(t.cost_per_million_output_tokens, ".3f", "$"),
            _fmt(t.cost_per_thousand_requests, ".3f", "$"),
            _fmt(t.headroom, "+.0%"),
        )
    console.print(table)
    for t in result.tiers:
        console.print(f"  [bold]{t.num_gpus}x {t.gpu}[/]: {t.bound if t.fits else t.reason}")
    console.print(f"[bold]Recommendation:[/] {result.recommendation}")
    for note in result.notes:
        console.print(f"[dim]{note}[/]")
