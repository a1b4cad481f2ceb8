"""Readiness probes: safe, bounded questions asked of one serving endpoint before trusting it.

Each probe asks one question a production service must answer well (is it up, is it ready, can we see
inside it, does it fail cleanly on bad input and on overload) and returns a plain ``ProbeResult``.
Probes are safe to point at a live endpoint: they only touch the URL given (redirects are not followed),
every request carries a timeout, the overload burst is bounded in count, and generations are a few tokens
long. The API key is sent as a header and never appears in results, evidence or logs.
"""

from servewise.probes.results import PROBE_NAMES, ProbeConfig, ProbeResult, ProbeStatus
from servewise.probes.runner import run_probes, run_probes_sync

__all__ = [
    "PROBE_NAMES",
    "ProbeConfig",
    "ProbeResult",
    "ProbeStatus",
    "run_probes",
    "run_probes_sync",
]
