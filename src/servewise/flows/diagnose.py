"""diagnose as a use case: the bottleneck of a stored run, recomputed from its result and samples."""

from __future__ import annotations

from servewise.analysis.diagnosis import diagnose
from servewise.results import DiagnosisResult
from servewise.store import Store


def diagnose_stored_run(store: Store, run_id: str) -> DiagnosisResult:
    """Exactly what bench computed at the end of the run, from what it stored (a sweep step's earlier steps
    included, for the engine's step time against its batch; the load window it read, where it kept one)."""
    run = store.get_run(run_id)
    measured = run.measured
    server = (measured.target if measured else {}).get("server") or run.target.get("server") or {}
    engine = server.get("engine") if isinstance(server, dict) else None
    earlier = [store.samples(step, source="metrics") for step in store.earlier_steps(run)]
    window = measured.load_window if measured else None
    return diagnose(measured, store.samples(run.id), server_engine=engine, earlier=earlier, window=window)
