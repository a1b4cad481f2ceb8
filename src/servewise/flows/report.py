"""report as a use case: gather a stored run's pieces (and any given beside it) and write the HTML file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from servewise.errors import UsageError
from servewise.flows.refs import latest_of_kind
from servewise.report.html import bundle_from_store, write_report
from servewise.results import ColdstartResult, PlanRecord, StageRecord, UnitPlan
from servewise.results.base import Result
from servewise.store import Store

T = TypeVar("T", bound=Result)


def _load(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None


def _validate(path: Path, model: type[T], what: str, data: object) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UsageError(f"{path} is not a {what} JSON ({where}: {first['msg']})") from None


def _read(path: Path | None, model: type[T], what: str) -> T | None:
    return None if path is None else _validate(path, model, what, _load(path, what))


def _read_plan(path: Path | None) -> PlanRecord | UnitPlan | None:
    """``servewise plan --json``'s output: in tokens, or in images or documents (such a plan names its unit)."""
    if path is None:
        return None
    data = _load(path, "plan")
    model: type[PlanRecord | UnitPlan] = UnitPlan if isinstance(data, dict) and "unit" in data else PlanRecord
    return _validate(path, model, "plan", data)


def build_report(
    store: Store,
    run_ref: str,
    output: Path | None,
    *,
    plan_path: Path | None = None,
    stage_path: Path | None = None,
    coldstart_ref: str | None = None,
    title: str | None = None,
) -> Path:
    """Write the report of ``run_ref`` (an id or ``latest``); returns its path."""
    run = store.latest_run() if run_ref == "latest" else store.get_run(run_ref)
    if run is None:
        raise UsageError(f"no runs in {store.location}")
    coldstart = latest_of_kind(store, coldstart_ref, "coldstart").result if coldstart_ref else None
    bundle = bundle_from_store(
        store,
        run.id,
        plan=_read_plan(plan_path),
        stage=_read(stage_path, StageRecord, "stage"),
        coldstart=coldstart if isinstance(coldstart, ColdstartResult) else None,
    )
    if title:
        bundle.title = title
    path = output or Path(f"servewise-report-{run.id}.html")
    try:
        return write_report(path, bundle)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
