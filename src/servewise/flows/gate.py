"""The release gate as a use case: resolve both runs, compare them, note the verdict on the candidate,
name the run to roll back to; and the same verdict over HTTP for Argo Rollouts' web metric provider."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from servewise.analysis.gate import GatePolicy, RunSamples, evaluate_gate, run_samples, slo_checks
from servewise.analysis.gate_options import build_policy, build_slo
from servewise.analysis.host_load import HostLoad, busy_per_side, host_load
from servewise.analysis.run_fingerprint import diff_fingerprints, run_fingerprint, workload_shape
from servewise.errors import ServewiseError, StoreError, UsageError
from servewise.flows.bench import ProgressView, SilentProgress
from servewise.flows.refs import is_selector, passed_gate, resolve_run
from servewise.flows.runs import note_group, repeat_group, repeatable, rerun
from servewise.results import CheckRow, FingerprintDiff, GateMark, GateReport, RunPointer, RunResult
from servewise.results.gate import GateVerdict, RollbackTarget, SetAsideRun
from servewise.spec import SloSpec
from servewise.store import RunRow, Store, open_store


@dataclass(frozen=True)
class GateRequest:
    """What to compare and how strictly; built from flags or from a query string."""

    baseline: str
    candidate: str = "latest"
    policy: GatePolicy = field(default_factory=GatePolicy)
    slo: SloSpec | None = None
    record: bool = True
    allow_different_workload: bool = False
    #: runs of each side to add first, interleaved (baseline, candidate, baseline, ...) on their own targets
    repeats: int = 0
    #: when the baseline selector matches no run (a fresh CI store), record the candidate as the first baseline
    first_run_is_baseline: bool = False


def rollback_target(store: Store, candidate_id: str) -> RollbackTarget | None:
    """The newest labelled run, other than the candidate, that passed a gate: where to roll back to."""
    for run in store.list_runs():
        if run.id != candidate_id and run.labels and passed_gate(run):
            return RollbackTarget(run_id=run.id, labels=run.labels)
    return None


def stored_samples(store: Store, run: RunRow) -> RunSamples:
    """The gate's view of a stored run: its records, whether its load generator fell behind, and how much of
    the host other work held meanwhile."""
    client = run.measured.client if run.measured else None
    limited = (client.reason or "load generator fell behind") if client and client.limited else None
    return run_samples(store.iter_records(run.id), limited, _host(store, run))


def _host(store: Store, run: RunRow) -> HostLoad | None:
    return host_load(s for source in ("host", "process", "client") for s in store.samples(run.id, source))


def _sides(store: Store, baseline: RunRow, candidate: RunRow, repeats: int,
           progress: ProgressView) -> tuple[list[RunRow], list[RunRow]]:
    """Each side's runs: the named run and its repeat group, plus ``repeats`` new runs of each, interleaved
    so that a host getting busier or quieter reaches both sides alike. A new run that shared the host with
    other work is made up for by one more pair, up to ``repeats`` more. New runs join their side's group, so
    later gates of either release see them. Two named runs of one group gate as themselves alone."""
    base, cand = repeat_group(store, baseline), repeat_group(store, candidate)
    if {r.id for r in base} & {r.id for r in cand}:
        base, cand = [baseline], [candidate]
        if repeats:
            raise UsageError(f"{baseline.id} and {candidate.id} are repeats of one another; --repeats needs two "
                             "different runs")
    if not repeats:
        return base, cand
    repeatable(store, baseline.id), repeatable(store, candidate.id)
    sides = ([*base], [*cand])
    loads = ([_host(store, run) for run in base], [_host(store, run) for run in cand])
    added: tuple[list[RunResult], list[RunResult]] = ([], [])
    pairs, extra = 0, 0
    # a make-up pair while either side has more runs that shared the host than make-up pairs run so far
    while pairs < repeats or (extra < repeats and max(busy_per_side(*loads)) > extra):
        extra += pairs >= repeats
        pairs += 1
        label = f"repeat {pairs}/{repeats}" if pairs <= repeats else f"make-up pair {extra}/{repeats}"
        for side, run in enumerate((baseline, candidate)):
            progress.notice(f"{label} of the {('baseline', 'candidate')[side]} {run.id}")
            added[side].append(rerun(store, run, progress))
            sides[side].append(store.get_run(added[side][-1].run_id))
            loads[side].append(_host(store, sides[side][-1]))
    for runs, new in zip((base, cand), added, strict=True):
        note_group(store, [r.measured for r in runs if r.measured is not None] + new)
    return sides


def _fingerprint(run: RunRow) -> dict[str, str]:
    return run_fingerprint(
        target=run.target, environment=run.environment, spec=run.spec, tool_version=run.tool_version
    )


def _pointer(run: RunRow, asked: str) -> RunPointer:
    return RunPointer(run_id=run.id, asked=asked, labels=run.labels, created_at=run.created_at)


def run_gate(store: Store, request: GateRequest, progress: ProgressView | None = None) -> GateReport:
    """Resolve both runs (and run the repeats asked for), compare the sides and return the report; notes the
    verdict on the candidate."""
    candidate = resolve_run(store, request.candidate)
    try:
        baseline = resolve_run(store, request.baseline, exclude=candidate.id)
    except StoreError as missing:
        if not request.first_run_is_baseline or not is_selector(request.baseline):
            raise
        return _first_baseline(store, candidate, request, str(missing))
    if baseline.id == candidate.id:
        raise UsageError(f"baseline and candidate are the same run {candidate.id}")
    shape = diff_fingerprints(workload_shape(baseline.spec), workload_shape(candidate.spec))
    if shape and not request.allow_different_workload:
        named = "; ".join(f"{d.field} {d.baseline} vs {d.candidate}" for d in shape[:4])
        more = f" and {len(shape) - 4} more" if len(shape) > 4 else ""
        raise UsageError(
            f"baseline {baseline.id} and candidate {candidate.id} sent different workloads ({named}{more}): "
            "gate like with like, or pass --allow-different-workload"
        )
    sides = _sides(store, baseline, candidate, request.repeats, progress or SilentProgress())
    base_runs, cand_runs = sides
    result = evaluate_gate([stored_samples(store, run) for run in base_runs], [stored_samples(store, run) for run in cand_runs],
                           request.policy, request.slo)
    report = GateReport(
        verdict=result.verdict,
        reason=result.reason,
        baseline=_pointer(baseline, request.baseline),
        candidate=_pointer(candidate, request.candidate),
        baseline_runs=[run.id for run in base_runs],
        candidate_runs=[run.id for run in cand_runs],
        set_aside=[SetAsideRun(run_id=sides[a.side][a.index].id, reason=a.reason) for a in result.set_aside],
        metrics=[CheckRow.model_validate(check.to_json()) for check in result.checks],
        fingerprint_diff=[
            FingerprintDiff.model_validate(d.to_json())
            for d in diff_fingerprints(_fingerprint(baseline), _fingerprint(candidate))
        ],
        rollback_to=rollback_target(store, candidate.id) if result.verdict is GateVerdict.FAIL else None,
    )
    if request.record and candidate.result is not None:
        store.annotate(candidate.id, GateMark(verdict=result.verdict, baseline=baseline.id, at=time.time()))
    return report


def _first_baseline(store: Store, candidate: RunRow, request: GateRequest, missing: str) -> GateReport:
    """No baseline yet: the candidate becomes it, unless it breaks an absolute limit (an SLO) on its own."""
    checks = slo_checks(request.slo, stored_samples(store, candidate)) if request.slo else []
    broken = [c.name for c in checks if c.verdict is GateVerdict.FAIL]
    verdict = GateVerdict.FAIL if broken else GateVerdict.PASS
    reason = (f"failed: {', '.join(broken)} (no baseline yet: {missing})" if broken
              else f"first run: recorded as the baseline ({missing})")
    if request.record and candidate.result is not None:
        store.annotate(candidate.id, GateMark(verdict=verdict, baseline=None, at=time.time()))
    return GateReport(verdict=verdict, reason=reason, baseline=None, candidate=_pointer(candidate, request.candidate),
                      candidate_runs=[candidate.id], metrics=[CheckRow.model_validate(c.to_json()) for c in checks],
                      fingerprint_diff=[], rollback_to=None)


def make_server(
    store_path: str | None, defaults: dict[str, Any], host: str = "127.0.0.1", port: int = 8080
) -> ThreadingHTTPServer:
    """``GET /gate?baseline=&candidate=&max_regression=&slo=&confidence=`` -> the JSON report (200 for any
    verdict, 400 for bad input); ``GET /healthz`` -> ok. Each request opens the store afresh (SQLite
    connections belong to one thread) and so always sees the newest runs."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/healthz":
                self._send(HTTPStatus.OK, {"status": "ok"})
                return
            if url.path not in ("/gate", "/"):
                self._send(
                    HTTPStatus.NOT_FOUND,
                    {"verdict": "error", "error": "use GET /gate?baseline=...&candidate=..."},
                )
                return
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            params = {**defaults, **{k.replace("-", "_"): v for k, v in query.items()}}
            try:
                if not params.get("baseline"):
                    raise UsageError("baseline is required (e.g. ?baseline=label:release=stable)")
                request = GateRequest(
                    baseline=params["baseline"],
                    candidate=params.get("candidate") or "latest",
                    policy=build_policy(params.get("max_regression"), float(params.get("confidence", 0.95)),
                                        float(params["between_run"]) if params.get("between_run") else None),
                    slo=build_slo(params.get("slo")),
                    record=defaults.get("record", True),
                    allow_different_workload=str(params.get("allow_different_workload", "")).lower()
                    in ("1", "true", "yes"),
                )
                with open_store(store_path) as store:
                    report = run_gate(store, request)
            except (ServewiseError, ValueError) as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"verdict": "error", "error": str(exc)})
                return
            self._send(HTTPStatus.OK, report.to_json())

        def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"servewise gate --serve: {format % args}\n")

    return ThreadingHTTPServer((host, port), Handler)
