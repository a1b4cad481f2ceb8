"""Terminal output for cold starts: the progress line, a table per run, the min/median/max/CV summary
and the verdicts in plain words. Computes nothing new."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from servewise.coldstart.runner import Progress
from servewise.format import megabytes, number
from servewise.results import ColdStart, ColdstartResult, StartStats


def _s(value: float | None, digits: int = 2) -> str:
    return number(value, f".{digits}f", missing="–")


def _ms(value: float | None) -> str:
    return number(value, ".0f", missing="–")


def _mb(value: float | None) -> str:
    return megabytes(value, missing="–")


_STAGE_WORDS = {
    "port": "waiting for the port",
    "health": "waiting for health OK",
    "models": "waiting for the model list",
    "first request": "waiting for a first response",
    "warm requests": "warm requests",
    "stopping": "stopping the server",
}


def progress_text(progress: Progress) -> str:
    marker = f" · last log phase: {progress.last_marker}" if progress.last_marker else ""
    stage = _STAGE_WORDS.get(progress.stage, progress.stage)
    return f"run {progress.run}/{progress.runs} · {stage}{marker} · {progress.elapsed_s:.1f} s"


def run_table(start: ColdStart) -> Group:
    """One start: its events in time order with the phase each one ends, then requests and resources."""
    title = f"run {start.index}: {start.status}"
    if start.startup_s is not None:
        title += f" · first response at {start.startup_s:.2f} s"
    table = Table(title=title, title_justify="left")
    table.add_column("event")
    table.add_column("at (s)", justify="right")
    table.add_column("phase (s)", justify="right")
    table.add_column("server says (s)", justify="right")
    table.add_column("from")
    phase_by_name = {p.name: p for p in start.phases}
    for event in start.events:
        phase = phase_by_name.get(event.name)
        table.add_row(
            event.name,
            _s(event.t),
            _s(phase.duration_s if phase is not None else None),
            _s(event.reported_s),
            event.source,
        )
    parts: list[Any] = [table]
    first, warm, res = start.first_request, start.warm, start.resources
    if first.ttft_ms is not None:
        parts.append(
            Text(
                f"first request: TTFT {_ms(first.ttft_ms)} ms, E2E {_ms(first.e2e_ms)} ms "
                f"({first.attempts} attempt(s)); steady E2E {_ms(warm.steady_e2e_ms)} ms "
                f"over {warm.requests - warm.failed} warm request(s)"
            )
        )
    cache = start.cache
    compile_state = "warm" if cache.compile_cache_warm() else "empty"
    resident = cache.model_resident_share
    page = f"{resident:.0%} of the model in page cache" if resident is not None else "page cache not measured"
    parts.append(
        Text(
            f"peak RSS {_mb(res.peak_rss_bytes)} MB · "
            f"peak CPU {_s(res.peak_cpu_percent, 0)} % · "
            f"disk read {_mb(res.disk_read_bytes)} MB · compile cache {compile_state} · {page}"
            + (" (dropped)" if cache.page_cache_dropped else "")
            + (f" · VRAM peak {_mb(res.peak_vram_bytes)} MB" if res.peak_vram_bytes else "")
        )
    )
    if start.status != "ok":
        parts.append(Text(f"error: {start.error}", style="bold red"))
        if start.log_tail:
            parts.append(Text(f"last {len(start.log_tail)} log lines ({start.log_path}):", style="red"))
            parts.append(Text("\n".join("  " + line for line in start.log_tail)))
    return Group(*parts)


def summary_table(result: ColdstartResult) -> Table:
    """min/median/max/CV per phase and per milestone over the successful runs."""
    agg = result.aggregate
    table = Table(title=f"{result.runs_ok} successful run(s): seconds unless marked", title_justify="left")
    for name, justify in (
        ("", "left"),
        ("min", "right"),
        ("median", "right"),
        ("max", "right"),
        ("CV", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]

    def row(label: str, s: StartStats, fmt: Callable[[float | None], str] = _s) -> None:
        if s.count:
            cv = "–" if s.cv is None else f"{s.cv:.1%}"
            table.add_row(label, fmt(s.min), fmt(s.median), fmt(s.max), cv)

    after: dict[str, str] = {}
    for run in result.runs:
        for phase in run.phases:
            after.setdefault(phase.name, phase.after)
    row("time to first response", agg.startup_s)
    for name, s in agg.phases.items():
        row(f"  {after.get(name, '…')} → {name}", s)
    for name, s in agg.reported.items():
        row(f"  {name} (server's own figure)", s)
    row("first request TTFT (ms)", agg.first_ttft_ms, _ms)
    row("first request E2E (ms)", agg.first_e2e_ms, _ms)
    row("steady request E2E (ms)", agg.steady_e2e_ms, _ms)
    row("peak RSS (MB)", agg.resources.peak_rss_bytes, _mb)
    return table


def verdict_lines(result: ColdstartResult) -> list[str]:
    lines = []
    for finding in result.verdicts:
        line = f"{finding.key.replace('_', ' ')}: {finding.verdict} — {finding.evidence}"
        if finding.advice:
            line += f"\n    next: {finding.advice}"
        lines.append(line)
    return lines


def summary_view(result: ColdstartResult) -> Group:
    """The summary table and the verdicts, as `coldstart` prints them and `runs show` shows them again."""
    return Group(summary_table(result), *(Text(line) for line in verdict_lines(result)))
