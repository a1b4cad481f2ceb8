"""plan as a use case: project GPU tiers for a model and workload, calibrated on a stored run when asked."""

from __future__ import annotations

from typing import Any

from servewise.capacity import PlanResult
from servewise.capacity.projection import project
from servewise.store import open_store


def plan_tiers(*, from_run: str | None, store_path: str | None, **projection: Any) -> PlanResult:
    """``project(**projection)``; with ``from_run``, on that run's measured result and spec."""
    measured = None
    if from_run:
        with open_store(store_path) as runs:
            row = runs.get_run(from_run)
        measured = (row.measured, row.spec, row.id)
    return project(measured=measured, **projection)
