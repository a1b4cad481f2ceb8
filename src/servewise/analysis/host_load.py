"""Whether other work held the host's CPU during a run: a busy runner is not a slower release.

A run's own processes are the server's process tree (when it runs on this host and was found from its port)
and the load generator. Whatever else the host's cores did during the run was other work: a second job on
a shared CI runner, a build, another test suite. Each run's telemetry already holds the three series (host,
process, client), so the share is read from what was stored, after the fact.

It is judged relative to the other runs of one comparison, not against zero: their median shows what the
host does while it runs this workload, including what the sampler cannot attribute (an engine behind a
local proxy, whose port the proxy holds; the kernel), and a median is not moved by the one odd run. A run
whose other work exceeds it by a quarter of the host's cores shared the host: on the project's two-core
runner, another job holding half a core or more made runs two to four times slower. A host that is equally
busy for every run is no reason to set any aside: interleaving spreads that over both sides.

Pure: stored samples in, plain numbers out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median

from servewise.records import Sample

#: Other work beyond the median run's, as a share of the host's cores, that marks a run as sharing the host.
BUSY_SHARE = 0.25


@dataclass(frozen=True)
class HostLoad:
    """The host's cores, and how many of them other work kept busy during the run (mean over its ticks)."""

    cores: float
    others_cores: float


def host_load(samples: Iterable[Sample]) -> HostLoad | None:
    """From a run's telemetry; None when the host was not sampled (``--no-telemetry``, a run too short for a
    tick)."""
    host_percent, server_percent, client_percent = 0.0, 0.0, 0.0
    ticks, cores = 0, 0.0
    for s in samples:
        if s.source == "host" and s.name == "cpu_percent_total":
            host_percent += s.value
            ticks += 1
        elif s.source == "host" and s.name == "cpu_count":
            cores = s.value
        elif s.source == "process" and s.name == "cpu_percent":
            server_percent += s.value
        elif s.source == "client" and s.name == "cpu_percent":
            client_percent += s.value
    if not ticks or cores <= 0:
        return None
    busy = host_percent / ticks / 100 * cores  # cpu_percent_total is the mean over cores
    own = (server_percent + client_percent) / ticks / 100  # a process's 100 is one core
    return HostLoad(cores=cores, others_cores=max(0.0, busy - own))


def busy_reasons(loads: Sequence[HostLoad | None], share: float = BUSY_SHARE) -> list[str | None]:
    """For each run, why it shared the host with other work, or None (quiet, or not sampled)."""
    known = [load for load in loads if load is not None]
    if len(known) < 2:
        return [None] * len(loads)
    usual = median(load.others_cores for load in known)
    return [
        None
        if load is None or load.others_cores - usual < share * load.cores
        else f"other work held {load.others_cores - usual:.1f} more of the host's {load.cores:g} cores than "
        "in the median run"
        for load in loads
    ]


def busy_per_side(base: Sequence[HostLoad | None], cand: Sequence[HostLoad | None]) -> tuple[int, int]:
    """How many runs of each side shared the host, judged against the median of both sides together."""
    reasons = busy_reasons([*base, *cand])
    return sum(map(bool, reasons[: len(base)])), sum(map(bool, reasons[len(base):]))
