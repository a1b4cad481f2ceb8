"""The capacity plan on the terminal: one row per GPU tier, what bounds each, the recommendation."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from servewise.capacity import PlanResult
from servewise.capacity.planner import KNEE
from servewise.format import number
from servewise.results import UnitPlan


def _fmt(value: float | None, spec: str, prefix: str = "", unit: str = "") -> str:
    return number(value, spec, missing="—", prefix=prefix, unit=unit)


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in columns:
        table.add_column(name, justify="left" if name == "GPU" else "right", no_wrap=name == "GPU")
    return table


def render_plan(result: PlanResult, console: Console) -> None:
    """Two tables, so each reads at 80 columns: what each tier does at this load, then what it costs."""
    speed = _table(
        "Capacity plan: per replica",
        ("GPU", "fits", "max conc", "out tok/s", "TTFT p50", "TPOT p50", "req/s"),
    )
    cost = _table("Cost", ("GPU", "replicas", "$/hour", "$/1M out", "$/1k req", "headroom"))
    for t in result.tiers:
        gpu = f"{t.num_gpus}x {t.gpu}"
        speed.add_row(
            gpu,
            "[green]yes[/]" if t.fits else "[red]no[/]",
            str(t.max_concurrency),
            _fmt(t.output_tokens_per_s, ",.0f"),
            _fmt(t.ttft_ms_p50, ",.0f", "≥" if t.near_knee else "", " ms"),
            _fmt(t.tpot_ms_p50, ".1f", unit=" ms"),
            _fmt(t.rate_per_replica, ".2f"),
        )
        cost.add_row(
            gpu,
            _fmt(t.replicas, "d"),
            _fmt(t.price_per_hour, ",.2f", "$"),
            _fmt(t.cost_per_million_output_tokens, ".3f", "$"),
            _fmt(t.cost_per_thousand_requests, ".3f", "$"),
            _fmt(t.headroom, "+.0%"),
        )
    console.print(speed)
    console.print(cost)
    for t in result.tiers:
        console.print(f"  [bold]{t.num_gpus}x {t.gpu}[/]: {t.bound if t.fits else t.reason}")
    knee = [f"{t.num_gpus}x {t.gpu}" for t in result.tiers if t.fits and t.near_knee]
    if knee:
        console.print(
            f"  ≥ TTFT on {', '.join(knee)}: the load is within {1 - KNEE:.0%} of saturation, where "
            "TTFT is mostly queueing: a lower bound, which small changes in load or lengths swing"
        )
    console.print(f"[bold]Recommendation:[/] {result.recommendation}")
    for note in result.notes:
        console.print(f"[dim]{note}[/]")


def render_unit_plan(plan: UnitPlan, console: Console) -> None:
    """One row per GPU: seconds per image (or document), the rate, replicas for the demand, and the cost of
    1,000 images (or 1M documents)."""
    one = plan.unit.removesuffix("s")
    table = _table(plan.title, ("GPU", f"s/{one}", f"{plan.unit}/s", "replicas", "$/hour", plan.cost_label))
    for t in plan.tiers:
        table.add_row(t.gpu + (" (measured)" if t.measured else ""), _fmt(t.seconds_each, ".3g", unit=" s"),
                      _fmt(t.per_s, ",.2f"), _fmt(t.replicas, "d"), _fmt(t.price_per_hour, ",.2f", "$"),
                      _fmt(t.cost, ",.3f", "$"))  # fmt: skip
    console.print(table)
    for note in plan.notes:
        console.print(f"[dim]{note}[/]")
