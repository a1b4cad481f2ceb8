"""Run references, resolved one way everywhere: ``RUN`` (an id or a unique part of one), ``latest``,
``latest-pass`` (the newest run that passed a gate) and ``label:K=V[,K=V]``."""

from __future__ import annotations

from servewise.errors import StoreError, UsageError
from servewise.results.gate import GateVerdict
from servewise.spec import parse_labels
from servewise.store import RunRow, Store

SELECTOR_HELP = "RUN id | latest | latest-pass | label:KEY=VALUE[,KEY=VALUE]"


def passed_gate(run: RunRow) -> bool:
    return run.annotations.gate is not None and run.annotations.gate.verdict is GateVerdict.PASS


def _labels(text: str) -> dict[str, str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    labels = parse_labels(items, "label selector (e.g. label:release=v1.3)")
    if not labels:
        raise UsageError("label selector is empty (e.g. label:release=v1.3)")
    return labels


def is_selector(ref: str) -> bool:
    """``latest``, ``latest-pass`` or ``label:...``: a reference that may match no run yet, unlike an id."""
    ref = ref.strip()
    return ref in ("latest", "latest-pass") or ref.startswith("label:")


def resolve_run(store: Store, ref: str, *, exclude: str | None = None) -> RunRow:
    """Selectors pick the newest finished run with metrics, never ``exclude`` (the other side of a gate);
    an id resolves to that run whatever it holds."""
    ref = ref.strip()
    if not is_selector(ref):
        return store.get_run(ref)
    labels = _labels(ref.removeprefix("label:")) if ref.startswith("label:") else None
    for run in store.list_runs(labels=labels):
        if run.id == exclude or run.status == "running" or run.measured is None:
            continue
        if ref == "latest-pass" and not passed_gate(run):
            continue
        return run
    wanted = {"latest": "finished run", "latest-pass": "run that passed a gate"}.get(ref, f"run with {ref}")
    raise StoreError(f"no {wanted} in {store.location}" + (f" other than {exclude}" if exclude else ""))


def latest_of_kind(store: Store, ref: str, kind: str) -> RunRow:
    """``latest`` (the newest run of ``kind``) or an id that must name a run of that kind."""
    run = store.latest_run(kind=kind) if ref == "latest" else store.get_run(ref)
    if run is None or run.kind != kind:
        raise UsageError(f"{ref!r} is not a {kind} run (see `servewise runs list`)")
    return run
