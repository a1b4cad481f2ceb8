"""Cold start: launch (or attach to) a server, time each phase to its first response, say what to fix."""

from servewise.coldstart.markers import (
    BUILTIN_PATTERNS,
    MarkerError,
    MarkerPattern,
    PhaseMark,
    parse_user_phase,
)
from servewise.coldstart.probe import Endpoint
from servewise.coldstart.runner import ColdstartConfig, ColdstartError, Progress, measure_start

__all__ = [
    "BUILTIN_PATTERNS",
    "ColdstartConfig",
    "ColdstartError",
    "Endpoint",
    "MarkerError",
    "MarkerPattern",
    "PhaseMark",
    "Progress",
    "measure_start",
    "parse_user_phase",
]
