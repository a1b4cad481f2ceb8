"""Readiness probes: safe, bounded questions asked of one serving endpoint before trusting it."""

from servewise.probes.readiness import (
    PROBE_NAMES,
    ProbeConfig,
    ProbeResult,
    ProbeStatus,
    run_probes,
    run_probes_sync,
)

__all__ = [
    "PROBE_NAMES",
    "ProbeConfig",
    "ProbeResult",
    "ProbeStatus",
    "run_probes",
    "run_probes_sync",
]
