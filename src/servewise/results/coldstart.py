"""A stored cold-start run: every start's phases and requests, their spread, and the verdicts.

The per-start records and the aggregate keep the shape `coldstart.verdicts` builds (nested JSON);
only the top level is typed so far.
"""

from __future__ import annotations

from typing import Any

from servewise.results.base import Result


class ColdstartResult(Result):
    runs: list[dict[str, Any]]
    runs_ok: int
    engine: str | None = None
    model_bytes: int | None = None
    aggregate: dict[str, Any] = {}
    verdicts: list[dict[str, Any]] = []
    status: str = "failed"
    run_id: str = ""
    kind: str = "coldstart"
    target: dict[str, Any] = {}
    runs_requested: int = 0
    log_dir: str = ""

    def startup_times(self) -> list[float]:
        """Seconds to first response of each successful start."""
        return [
            float(r["startup_s"])
            for r in self.runs
            if r.get("status") == "ok" and isinstance(r.get("startup_s"), int | float)
        ]
