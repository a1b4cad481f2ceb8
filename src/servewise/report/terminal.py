"""Rich renderables for the terminal: live progress and the end-of-run summary."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from servewise.analysis.client import client_advice
from servewise.engine.progress import LiveStats
from servewise.format import ms as _ms
from servewise.format import number, percent
from servewise.results import CacheOutcome, Metrics, RunResult, TurnRow

STATUS_STYLE = {
    "ok": "bold green",
    "slo_failed": "bold red",
    "interrupted": "bold yellow",
    "failed": "bold red",
}


def progress_line(stats: LiveStats, elapsed_s: float, duration_s: float | None, label: str) -> Text:
    ttft = stats.ttft_p50_ms()
    total = f"/{duration_s:.0f}s" if duration_s else "s"
    line = Text.assemble(
        (f"{label}  ", "bold"),
        f"{elapsed_s:5.1f}{total}  ",
        ("done ", "dim"),
        f"{stats.done:,}  ",
        ("in flight ", "dim"),
        f"{stats.in_flight:,}  ",
        ("rate ", "dim"),
        f"{stats.rate():,.1f}/s  ",
        ("errors ", "dim"),
        (f"{stats.failed:,}", "red" if stats.failed else ""),
        ("  TTFT p50 ", "dim"),
        f"{_ms(ttft)} ms",
    )
    return line


def latency_table(metrics: Metrics) -> Table:
    table = Table(title="Latency (ms, steady state)", title_justify="left", expand=False)
    table.add_column("metric")
    for column in ("n", "p50", "p90", "p95", "p99", "p99.9", "mean", "max"):
        table.add_column(column, justify="right")
    for key, name in (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2e", "E2E")):
        dist = metrics.distribution(key)
        if not dist.count:
            continue
        table.add_row(
            name,
            f"{dist.count:,}",
            *(_ms(dist.stat(k)) for k in ("p50", "p90", "p95", "p99", "p99.9", "mean", "max")),
        )
    return table


def outcome_rows(result: RunResult) -> list[tuple[str, str]]:
    """documents/s for a reranker; images/s and the time per image for an image server."""
    outcome = result.outcome
    if outcome is None:
        return []
    rows = [(f"{outcome.unit}/s", f"{outcome.per_s:,.2f}")]
    if outcome.unit == "images" and outcome.ms_each_p50 is not None:
        rows.append(("latency per image p50", f"{outcome.ms_each_p50:,.1f} ms"))
    return rows


def throughput_table(result: RunResult) -> Table:
    m = result.metrics
    table = Table(title="Throughput", title_justify="left", show_header=False, expand=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("requests ok / failed", f"{m.requests_ok:,} / {m.requests_failed:,}")
    table.add_row("requests/s", f"{m.requests_per_s:,.2f}")
    for what, value in outcome_rows(result):
        table.add_row(what, value)
    writes = result.outcome is None  # a reranker or an image server makes no tokens: no rows of zeros
    if writes:
        table.add_row("output tokens/s", f"{m.output_tokens_per_s:,.1f}")
    if writes or m.input_tokens_per_s > 0:
        table.add_row("input tokens/s", f"{m.input_tokens_per_s:,.1f}")
    table.add_row("goodput (req/s meeting SLO)", f"{m.goodput_rps:,.2f}")
    table.add_row("mean concurrency", f"{m.concurrency_mean:,.1f}")
    if writes:
        source = m.output_tokens_source
        note = "" if source == "usage" else f" (estimate: {source})"
        tokens = m.mean_output_tokens
        table.add_row("mean output tokens", f"{tokens:,.1f}{note}" if tokens is not None else "-")
    if m.mean_input_tokens is not None:
        table.add_row("mean input tokens (server count)", f"{m.mean_input_tokens:,.1f}")
    table.add_row("steady window", f"{result.steady_s:,.1f} s")
    return table


def cache_line(cache: CacheOutcome) -> Text:
    def rate(value: float | None) -> str:
        return "unknown" if value is None else percent(value)

    return Text.assemble(
        ("prefix cache: ", "dim"),
        f"the workload could reuse {rate(cache.theoretical_hit_rate)} of prompt tokens; the server served "
        f"{rate(cache.cached_tokens_ratio)} from cache; the engine's hit rate {rate(cache.engine_hit_rate)}",
    )


def turns_table(rows: list[TurnRow]) -> Table:
    table = Table(title="TTFT by turn (ms)", title_justify="left", expand=False)
    for column in ("turn", "requests", "p50", "p95", "prompt tokens"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row.turn), f"{row.requests:,}", _ms(row.ttft_ms_p50), _ms(row.ttft_ms_p95),
            number(row.mean_input_tokens, ",.0f"),
        )  # fmt: skip
    return table


def summary_view(result: RunResult) -> Group:
    """Everything a person needs to read after a run, in the order they ask for it."""
    parts: list[Any] = []
    status = result.status
    target = result.target
    parts.append(
        Text.assemble(
            ("run ", "dim"),
            (result.run_id, "bold"),
            ("  status ", "dim"),
            (status.upper(), STATUS_STYLE.get(status, "bold")),
            ("  target ", "dim"),
            f"{target.get('url')} ({target.get('model')}, {target.get('api')})",
            ("  load ", "dim"),
            result.load,
        )
    )
    m = result.metrics
    parts.append(latency_table(m))
    parts.append(throughput_table(result))
    if m.cache is not None and m.cache.any_reuse:
        parts.append(cache_line(m.cache))
    if m.by_turn and len(m.by_turn) > 1:
        parts.append(turns_table(m.by_turn))
    if m.errors_by_class:
        errors = Table(title="Errors", title_justify="left", expand=False)
        errors.add_column("class")
        errors.add_column("count", justify="right")
        errors.add_column("example")
        for cls, count in sorted(m.errors_by_class.items(), key=lambda kv: -kv[1]):
            errors.add_row(cls, f"{count:,}", Text(m.error_examples.get(cls, "")[:100]))
        parts.append(errors)
    if m.stopped_early:
        parts.append(
            Text(
                f"{m.stopped_early:,} requests stopped before max_tokens: the server ignored ignore_eos "
                "or hit a stop condition, so output lengths are shorter than planned.",
                style="yellow",
            )
        )
    if m.arrived_whole:
        parts.append(
            Text(
                f"{m.arrived_whole:,} of {m.requests_ok:,} streamed answers arrived whole, in one read: their "
                "TTFT is their end-to-end time, and TPOT and ITL leave them out (their pace was not seen). "
                "A proxy that buffers the stream does this, or a server or load generator starved of CPU.",
                style="yellow",
            )
        )
    if result.slo.targets:
        table = Table(title="SLO", title_justify="left", expand=False)
        for column in ("target", "limit", "measured", "met"):
            table.add_column(column, justify="right" if column != "target" else "left")
        for t in result.slo.targets:
            is_errors = t.key == "errors"
            fmt = (lambda v: f"{v:.2%}") if is_errors else (lambda v: f"{_ms(v)} ms")
            value = "-" if t.value is None else fmt(t.value)
            table.add_row(
                t.key, fmt(t.limit), value, Text("yes", "green") if t.met else Text("NO", "bold red")
            )
        parts.append(table)
    client = result.client
    lag = client.schedule_lag_ms
    client_line = Text.assemble(
        ("load generator: ", "dim"),
        f"schedule lag p50 {_ms(lag.p50)} ms, p99 {_ms(lag.p99)} ms; CPU {client.cpu_percent:.0f}% of a core",
    )
    parts.append(client_line)
    if client.limited:
        parts.append(
            Text(
                f"CLIENT-LIMITED: {client.reason}. These numbers describe the load generator, not the server: "
                f"{client_advice(result.diagnosis.client_cause if result.diagnosis else None)}.",
                style="bold red",
            )
        )
    return Group(*parts)
