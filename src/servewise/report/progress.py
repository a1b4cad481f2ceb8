"""Live progress on the terminal while a run sends: one line, redrawn four times a second."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

from rich.console import Console
from rich.live import Live
from rich.text import Text

from servewise.engine.progress import LiveStats
from servewise.report.terminal import progress_line


class TerminalProgress:
    """A ``ProgressView`` on a Rich console; ``quiet`` keeps the notices and drops the live line."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet

    def step(self, text: str) -> None:
        self.console.print(Text(text, style="bold"))

    def notice(self, text: str) -> None:
        self.console.print(text, style="dim", markup=False)

    @contextmanager
    def live(self, stats: LiveStats, label: str, duration_s: float | None) -> Iterator[None]:
        if self.quiet:
            yield
            return
        started = perf_counter()
        with Live(
            console=self.console,
            get_renderable=lambda: progress_line(stats, perf_counter() - started, duration_s, label),
            refresh_per_second=4,
            transient=True,
        ):
            yield
