"""Did the load generator keep up? One rule, one threshold and one message for every reader of a run
(bench's summary, the diagnosis, the sweep's stop, the gate's warning), so they never disagree.

A send is late when its schedule lag tail is over ``LAG_LIMIT_MS`` and also a real share of what is being
measured (22 ms of lag on 5-second requests changes no conclusion; 15 ms on 30 ms embeddings changes all of
them). A worker at ``CPU_BUSY`` of its core is limited whatever its lag. Why it fell behind (its own CPU, a
machine it shares with a busy server, or waits outside it) is the diagnosis' to say; the advice follows it.
"""

from __future__ import annotations

from typing import Literal

from servewise.results import ClientCheck, LagSummary

LAG_LIMIT_MS = 10.0
LAG_SHARE = 0.05  # of the median end-to-end latency
CPU_BUSY = 85.0  # % of one core, for a single-threaded asyncio worker (the stricter of bench's 90 and the diagnosis' 85)
MIN_LAG_SAMPLES = 20

ClientCause = Literal["cpu", "starved", "outside"]


def late(lag_tail_ms: float | None, e2e_p50_ms: float | None) -> bool:
    """A lag tail large in itself and against the latency measured (unknown latency: the tail alone)."""
    if lag_tail_ms is None or lag_tail_ms <= LAG_LIMIT_MS:
        return False
    return e2e_p50_ms is None or e2e_p50_ms <= 0 or lag_tail_ms >= LAG_SHARE * e2e_p50_ms


def client_verdict(
    lag_ms: dict[str, float | int | None],
    cpu_percent: list[float],
    *,
    open_loop: bool,
    loop_lag_max_ms: float,
    e2e_p50_ms: float | None = None,
) -> ClientCheck:
    """Did the load generator keep its schedule? A run whose client fell behind is not a server result."""
    reasons = []
    count = lag_ms.get("count") or 0
    # a handful of sends cannot make a p99: judge the tail only where there is one
    stat = "p99" if count >= 100 else "p90"
    tail = lag_ms.get(stat)
    if open_loop and count >= MIN_LAG_SAMPLES and late(None if tail is None else float(tail), e2e_p50_ms):
        reasons.append(f"schedule lag {stat} {tail:.1f} ms > {LAG_LIMIT_MS:g} ms")
    busiest = max(cpu_percent, default=0.0)
    if busiest >= CPU_BUSY:
        reasons.append(f"a client worker used {busiest:.0f}% of a core")
    return ClientCheck(
        schedule_lag_ms=LagSummary(p50=lag_ms.get("p50"), p99=lag_ms.get("p99"), max=lag_ms.get("max")),
        cpu_percent=busiest,
        cpu_percent_per_worker=cpu_percent,
        loop_lag_max_ms=loop_lag_max_ms,
        limited=bool(reasons),
        reason="; ".join(reasons) or None,
    )


def client_advice(cause: str | None) -> str:
    """What to do about a client that fell behind, for the cause the diagnosis found."""
    if cause == "starved":
        return (
            "run the load generator on a quiet machine or cores of its own, away from the server and other"
            " busy processes (taskset pins the two apart)"
        )
    if cause == "outside":
        return (
            "its sends waited outside it (connection setup, back-pressure from the link or a full accept"
            " backlog), not on its CPU: check the path and the server's listen backlog"
        )
    return "add --workers or lower the rate"
