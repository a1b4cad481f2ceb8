"""Holding Ctrl-C and SIGTERM while something must finish: a server being stopped (coldstart), the previous
release being brought back (release). A stop asked for then waits; what holds them is bounded by its own
timeout."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def held_signals() -> Iterator[list[int]]:
    """Inside, SIGINT and SIGTERM are only noted (in the list yielded); outside, handled as before."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous = {sig: signal.signal(sig, lambda signum, _: pending.append(signum)) for sig in HELD}
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
