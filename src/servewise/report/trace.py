"""A trace on the terminal: what it holds, its token lengths, and its rate over time as bars (80 columns);
and the few lines `trace from-log` prints about the trace it wrote (never any prompt text)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from servewise.format import number, percent
from servewise.results import TraceLengths, TraceSummary
from servewise.results.trace import TraceConversion
from servewise.workload.trace import DEFAULT_BLOCK_SIZE

BAR_WIDTH = 40


def _seconds(value: float | None) -> str:
    spec = (
        ".2f" if value is not None and value < 10 else ".1f" if value is not None and value < 100 else ",.0f"
    )
    return number(value, spec, unit=" s")


def _overview(s: TraceSummary) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="dim")
    table.add_column()
    table.add_row("requests", f"{s.requests:,}")
    table.add_row("duration", _seconds(s.duration_s))
    table.add_row("mean rate", number(s.mean_rate_rps, ",.2f", unit=" req/s"))
    if s.peak_rate_rps is not None:
        table.add_row(
            "peak rate",
            f"{number(s.peak_rate_rps, ',.2f', unit=' req/s')} over {_seconds(s.peak_window_s)} "
            f"from {_seconds(s.peak_start_s)}",
        )
    if s.sessions is not None:
        table.add_row(
            "sessions",
            f"{s.sessions.count:,} ({s.sessions.requests:,} requests; "
            f"{s.sessions.mean_turns:,.1f} turns mean, {s.sessions.max_turns:,} max)",
        )
    else:
        table.add_row("sessions", "none in the trace")
    if s.format == "mooncake":
        table.add_row("with hash ids", f"{s.requests_with_hash_ids:,} of {s.requests:,} requests")
    hit = s.theoretical_prefix_hit_rate
    table.add_row(
        "prefix hit rate",
        "-" if hit is None else f"{percent(hit, 1)} of prompt tokens (theoretical, unbounded cache)",
    )
    return table


def _lengths(s: TraceSummary) -> Table:
    table = Table(title="Token lengths", title_justify="left")
    for column in ("", "count", "p50", "p90", "p99", "mean", "max"):
        table.add_column(column, justify="left" if not column else "right")
    rows: tuple[tuple[str, TraceLengths], ...] = (("input", s.input_tokens), ("output", s.output_tokens))
    for name, d in rows:
        table.add_row(
            name,
            f"{d.count:,}",
            number(d.p50, ",.0f"),
            number(d.p90, ",.0f"),
            number(d.p99, ",.0f"),
            number(d.mean, ",.1f"),
            number(d.max, ",d"),
        )
    return table


def _rate(s: TraceSummary) -> Table | Text:
    if not s.rate_over_time or s.bucket_s is None:
        return Text("rate over time: every request arrives at once (the trace spans no time)", style="dim")
    table = Table(title=f"Rate over time ({_seconds(s.bucket_s)} buckets)", title_justify="left")
    table.add_column("from", justify="right")
    table.add_column("req/s", justify="right")
    table.add_column("", no_wrap=True)
    top = max(b.rps for b in s.rate_over_time) or 1.0
    for bucket in s.rate_over_time:
        table.add_row(
            _seconds(bucket.start_s),
            number(bucket.rps, ",.2f"),
            Text("█" * round(BAR_WIDTH * bucket.rps / top), style="cyan"),
        )
    return table


def trace_view(summary: TraceSummary) -> Group:
    """Everything `trace analyze` prints, top to bottom."""
    scale = "" if summary.time_scale == 1 else f", {summary.time_scale:g}x faster"
    block = f", {summary.block_size}-token blocks" if summary.format == "mooncake" else ""
    title = Text.assemble(
        ("trace ", "dim"), (summary.path, "bold"), (f"  {summary.format}{block}{scale}", "dim")
    )
    return Group(title, _overview(summary), _lengths(summary), _rate(summary))


def conversion_view(c: TraceConversion) -> Group:
    """What `trace from-log` prints: what it wrote, where the lengths came from, and the prefix hit rate."""
    s = c.trace
    counter = f"tokens of {c.tokenizer}" if c.tokenizer else "word estimate (no tokenizer)"
    title = Text.assemble(
        ("wrote ", "dim"), (s.path, "bold"), (f"  mooncake, {s.block_size}-token blocks", "dim")
    )
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="dim")
    table.add_column()
    table.add_row("from", c.log)
    table.add_row("requests", f"{s.requests:,} over {_seconds(s.duration_s)}")
    table.add_row("sessions", f"{c.sessions:,}" if c.sessions else "none in the log")
    table.add_row("input tokens", f"{counter}, mean {number(s.input_tokens.mean, ',.0f')}")
    if c.prompt_tokens_ratio is not None:
        table.add_row(
            "vs usage",
            f"{c.prompt_tokens_ratio:.2f}x usage.prompt_tokens, on the "
            f"{c.requests_with_prompt_usage:,} that logged it",
        )
    table.add_row(
        "output tokens",
        f"{c.output_from_usage:,} from usage, {c.output_from_max_tokens:,} from max_tokens, "
        f"{c.output_defaulted:,} --output-tokens",
    )
    hit = s.theoretical_prefix_hit_rate
    table.add_row(
        "prefix hit rate",
        "-" if hit is None else f"{percent(hit, 1)} of prompt tokens (theoretical, unbounded cache)",
    )
    table.add_row("kept", "times, token counts, block and session ids; no text")
    block = "" if s.block_size == DEFAULT_BLOCK_SIZE else f" --block-size {s.block_size}"
    return Group(title, table, Text(f"more: servewise trace analyze {s.path}{block}", style="dim"))
