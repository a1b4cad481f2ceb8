"""`servewise gate`: is the candidate run as good as the baseline? Exit 0 pass, 1 fail, 2 usage, 3 inconclusive.

Also `servewise gate --serve`: the same verdict over HTTP for Argo Rollouts' web metric provider
(``GET /gate?baseline=...&candidate=...`` -> JSON with ``verdict``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlparse

import typer
from rich.console import Console
from rich.table import Table

from servewise.analysis.fingerprint import diff_fingerprints, run_fingerprint
from servewise.analysis.gate import (
    ALL_CHECKS,
    GatePolicy,
    RunSamples,
    Verdict,
    evaluate_gate,
    run_samples,
)
from servewise.spec import SloSpec, SpecError, parse_labels, parse_slo
from servewise.store import RunRow, RunStore, StoreError

EXIT_CODES = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.INCONCLUSIVE: 3}
USAGE_EXIT = 2
_NOT_FINISHED = ("running",)


class GateUsageError(ValueError):
    """Bad flags or a run reference that does not resolve: exit 2 with one clear line."""


# -- parsing -----------------------------------------------------------------------------------------


def parse_max_regression(text: str | None) -> dict[str, float]:
    """``ttft_p95=10%,tpot_p50=5%,throughput=-5%,errors=1%`` -> check -> allowed fraction.

    A throughput allowance is a drop, so ``-5%`` and ``5%`` mean the same; errors are percentage points.
    """
    allowed: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in ALL_CHECKS:
            raise GateUsageError(
                f"--max-regression: cannot read {item!r}; use CHECK=PERCENT with CHECK one of {', '.join(ALL_CHECKS)}"
            )
        try:
            percent = abs(float(value.strip().rstrip("%")))
        except ValueError:
            raise GateUsageError(f"--max-regression: {item!r} needs a percentage like {name}=10%") from None
        if not math.isfinite(percent) or percent > 1000:
            raise GateUsageError(f"--max-regression: {item!r} is not a sensible percentage")
        allowed[name] = percent / 100
    return allowed


def _parse_labels(text: str) -> dict[str, str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    try:
        labels = parse_labels(items, "label selector (e.g. label:release=v1.3)")
    except SpecError as exc:
        raise GateUsageError(str(exc)) from None
    if not labels:
        raise GateUsageError("label selector is empty (e.g. label:release=v1.3)")
    return labels


# -- resolving runs ----------------------------------------------------------------------------------


def _gate_verdict(run: RunRow) -> str | None:
    return ((run.summary or {}).get("gate") or {}).get("verdict")


def _has_metrics(run: RunRow) -> bool:
    return run.status not in _NOT_FINISHED and "metrics" in (run.summary or {})


def resolve_run(store: RunStore, ref: str, *, exclude: str | None = None) -> RunRow:
    """``RUN`` (id or unique part of one) | ``latest`` | ``latest-pass`` | ``label:k=v[,k=v]``.

    Selectors pick the newest finished run with metrics, never ``exclude`` (the other side of the gate).
    """
    ref = ref.strip()
    if ref in ("latest", "latest-pass") or ref.startswith("label:"):
        labels = _parse_labels(ref.removeprefix("label:")) if ref.startswith("label:") else None
        for run in store.list_runs(labels=labels):
            if run.id == exclude or not _has_metrics(run):
                continue
            if ref == "latest-pass" and _gate_verdict(run) != Verdict.PASS.value:
                continue
            return run
        wanted = {"latest": "finished run", "latest-pass": "run that passed a gate"}.get(
            ref, f"run with {ref}"
        )
        raise GateUsageError(f"no {wanted} in {store.path}" + (f" other than {exclude}" if exclude else ""))
    try:
        return store.get_run(ref)
    except StoreError as exc:
        raise GateUsageError(str(exc)) from None


def rollback_target(store: RunStore, candidate_id: str) -> dict[str, Any] | None:
    """The newest labelled run, other than the candidate, that passed a gate: where to roll back to."""
    for run in store.list_runs():
        if run.id != candidate_id and run.labels and _gate_verdict(run) == Verdict.PASS.value:
            return {"run_id": run.id, "labels": run.labels}
    return None


def _fingerprint(run: RunRow) -> dict[str, str]:
    return run_fingerprint(
        target=run.target, environment=run.environment, spec=run.spec, tool_version=run.tool_version
    )


# -- the gate ----------------------------------------------------------------------------------------


def run_gate(
    store: RunStore, baseline_ref: str, candidate_ref: str, policy: GatePolicy, slo: SloSpec | None,
    *, record: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Resolve both runs, compare them and return the JSON report; records the verdict on the candidate."""
    candidate = resolve_run(store, candidate_ref)
    baseline = resolve_run(store, baseline_ref, exclude=candidate.id)
    if baseline.id == candidate.id:
        raise GateUsageError(f"baseline and candidate are the same run {candidate.id}")
    inputs = [_samples(store, run) for run in (baseline, candidate)]
    result = evaluate_gate(inputs[0], inputs[1], policy, slo)
    report = {
        "verdict": result.verdict.value,
        "reason": result.reason,
        "baseline": _run_ref(baseline, baseline_ref),
        "candidate": _run_ref(candidate, candidate_ref),
        "metrics": [check.to_json() for check in result.checks],
        "fingerprint_diff": [
            d.to_json() for d in diff_fingerprints(_fingerprint(baseline), _fingerprint(candidate))
        ],
        "rollback_to": rollback_target(store, candidate.id) if result.verdict is Verdict.FAIL else None,
    }
    if record and candidate.summary is not None:
        gate = {"verdict": result.verdict.value, "baseline": baseline.id, "at": time.time()}
        store.update_summary(candidate.id, {**candidate.summary, "gate": gate})
    return report


def _samples(store: RunStore, run: RunRow) -> RunSamples:
    summary = run.summary or {}
    client = summary.get("client") or {}
    limited = (client.get("reason") or "load generator fell behind") if client.get("limited") else None
    return run_samples(store.iter_records(run.id), summary.get("repeat_spread"), limited)


def _run_ref(run: RunRow, asked: str) -> dict[str, Any]:
    return {"run_id": run.id, "asked": asked, "labels": run.labels, "created_at": run.created_at}


def build_policy(max_regression: str | None, confidence: float, seed: int) -> GatePolicy:
    if not 0.5 < confidence < 1:
        raise GateUsageError(f"--confidence must be between 0.5 and 1 (e.g. 0.95), got {confidence}")
    allowed = parse_max_regression(max_regression)
    return GatePolicy(allowed=allowed, alpha=1 - confidence, seed=seed)


def build_slo(text: str | None) -> SloSpec | None:
    if not text:
        return None
    try:
        return parse_slo(text)
    except SpecError as exc:
        raise GateUsageError(str(exc)) from None


# -- output ------------------------------------------------------------------------------------------

_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f} {unit}" if unit != "%" else f"{value:.2f}%"


def _change(check: dict[str, Any]) -> tuple[str, str, str]:
    points = "pt" if check["unit"] == "%" else "%"
    change = "-" if check["change_pct"] is None else f"{check['change_pct']:+.1f}{points}"
    interval = "-" if not check["ci"] else f"[{check['ci'][0]:+.1f}, {check['ci'][1]:+.1f}]{points}"
    allowed = "-" if check["allowed_pct"] is None else f"{check['allowed_pct']:.1f}{points}"
    if check["noise_floor_pct"]:
        allowed += f" (noise {check['noise_floor_pct']:.1f})"
    return change, interval, allowed


def render(report: dict[str, Any], console: Console) -> None:
    table = Table(title=f"gate: {report['candidate']['run_id']} vs baseline {report['baseline']['run_id']}")
    for column in ("check", "baseline", "candidate", "change", "interval", "allowed", "verdict", "why"):
        table.add_column(column, justify="right" if column in ("baseline", "candidate", "change") else "left")
    for check in report["metrics"]:
        change, interval, allowed = _change(check)
        verdict = check["verdict"] if check["gated"] else f"({check['verdict']}, info)"
        style = _STYLE[check["verdict"]] if check["gated"] else "dim"
        table.add_row(
            check["name"], _number(check["baseline"], check["unit"]), _number(check["candidate"], check["unit"]),
            change, interval, allowed, f"[{style}]{verdict}[/]", check["reason"],
        )  # fmt: skip
    console.print(table)
    if report["fingerprint_diff"]:
        console.print("[yellow]warning: the runs differ in what they measured; compare with care:[/]")
        for diff in report["fingerprint_diff"]:
            console.print(f"  {diff['field']}: {diff['baseline']!s} -> {diff['candidate']!s}", markup=False)
    console.print(
        f"verdict: [{_STYLE[report['verdict']]}]{report['verdict'].upper()}[/] ({report['reason']})"
    )
    if report["verdict"] == Verdict.FAIL.value:
        target = report["rollback_to"]
        line = (
            f"roll back to {target['run_id']} {target['labels']}"
            if target
            else "no labelled run has passed a gate"
        )
        console.print(line, markup=False)


# -- web provider ------------------------------------------------------------------------------------


def make_server(
    store_path: Path | None, defaults: dict[str, Any], host: str = "127.0.0.1", port: int = 8080
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
                policy = build_policy(params.get("max_regression"), float(params.get("confidence", 0.95)), 0)
                if not params.get("baseline"):
                    raise GateUsageError("baseline is required (e.g. ?baseline=label:release=stable)")
                with RunStore(store_path) as store:
                    report = run_gate(
                        store, params["baseline"], params.get("candidate") or "latest", policy,
                        build_slo(params.get("slo")), record=defaults.get("record", True),
                    )  # fmt: skip
            except (GateUsageError, StoreError, ValueError) as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"verdict": "error", "error": str(exc)})
                return
            self._send(HTTPStatus.OK, report)

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


# -- command -----------------------------------------------------------------------------------------


def gate(
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", "-b", help="RUN id | label:KEY=VALUE[,KEY=VALUE] | latest-pass"),
    ] = None,
    candidate: Annotated[
        str, typer.Option("--candidate", "-c", help="RUN id | label:KEY=VALUE | latest")
    ] = "latest",
    slo: Annotated[
        str | None, typer.Option(help="Absolute limits that fail at once, e.g. ttft_p95=500ms,errors=1%")
    ] = None,
    max_regression: Annotated[
        str | None,
        typer.Option(
            "--max-regression",
            help="Allowed worsening per check (default 10%, errors 1 point), e.g. ttft_p95=10%,throughput=-5%. "
            "Naming a p99 check gates it.",
        ),
    ] = None,
    confidence: Annotated[float, typer.Option(help="One-sided confidence of each decision")] = 0.95,
    seed: Annotated[int, typer.Option(help="Bootstrap seed (verdicts are repeatable)")] = 0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the JSON report instead of a table")
    ] = False,
    store_path: Annotated[
        Path | None, typer.Option("--store", help="Run store (default $SERVEWISE_STORE)")
    ] = None,
    record: Annotated[
        bool, typer.Option(help="Store the verdict on the candidate (feeds latest-pass)")
    ] = True,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve verdicts over HTTP for Argo's web provider")
    ] = False,
    host: Annotated[str, typer.Option(help="--serve address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="--serve port")] = 8080,
) -> None:
    """Decide whether CANDIDATE is as good as BASELINE: exit 0 pass, 1 fail, 2 usage, 3 inconclusive."""
    err = Console(stderr=True)
    try:
        policy = build_policy(max_regression, confidence, seed)
        slo_spec = build_slo(slo)
        if serve:
            defaults = {"baseline": baseline, "candidate": candidate, "max_regression": max_regression, "slo": slo,
                        "confidence": confidence, "record": record}  # fmt: skip
            server = make_server(store_path, defaults, host, port)
            err.print(
                f"servewise gate serving on http://{host}:{server.server_address[1]}/gate", markup=False
            )
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
            finally:
                server.server_close()
            return
        if not baseline:
            raise GateUsageError("--baseline is required (RUN | label:KEY=VALUE | latest-pass)")
        with RunStore(store_path) as store:
            report = run_gate(store, baseline, candidate, policy, slo_spec, record=record)
    except (GateUsageError, StoreError) as exc:
        err.print(f"servewise gate: {exc}", markup=False)
        raise typer.Exit(USAGE_EXIT) from None
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    else:
        render(report, Console())
    raise typer.Exit(EXIT_CODES[Verdict(report["verdict"])])


def register(app: typer.Typer) -> None:
    app.command("gate")(gate)
