"""What the live progress display shows, folded from records as they stream in."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np


@dataclass
class LiveStats:
    """Done, failed, in flight, current completion rate and a rolling TTFT median."""

    planned: int | None = None
    started_at: float = field(default_factory=perf_counter)
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    _recent_ttft: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    _recent_ends: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    def add_rows(self, rows: list[tuple]) -> None:
        """Worker rows (``records.record_to_row`` layout), read without building records."""
        for row in rows:
            t_send, t_first, t_end, error = row[2], row[3], row[4], row[12]
            self.done += 1
            if error is not None:
                self.failed += 1
            elif t_first is not None:
                self._recent_ttft.append((t_first - t_send) * 1000)
            if t_end is not None:
                self._recent_ends.append(t_end)

    def rate(self, window_s: float = 5.0) -> float:
        now = perf_counter()
        recent = [t for t in self._recent_ends if t >= now - window_s]
        span = min(window_s, now - self.started_at)
        return len(recent) / span if span > 0 else 0.0

    def ttft_p50_ms(self) -> float | None:
        return float(np.median(self._recent_ttft)) if self._recent_ttft else None
