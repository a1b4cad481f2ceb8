"""`servewise runs list|show|export`: the run history."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from servewise.analysis.metrics import e2e_ms, itl_gaps_ms, tpot_ms, ttft_ms
from servewise.analysis.repeatability import noise_floor, repeat_spread
from servewise.cli.bench import run_bench
from servewise.coldstart.render import summary_view as coldstart_view
from servewise.engine.loop import run as run_loop
from servewise.engine.target import TargetUnreachable
from servewise.report.terminal import summary_view
from servewise.spec import RunSpec, SpecError, parse_labels
from servewise.store import RunStore

runs_app = typer.Typer(help="List, show and export stored runs.", no_args_is_help=True)

CSV_COLUMNS = (
    "index", "worker", "phase", "t_sched", "t_send", "ttft_ms", "tpot_ms", "e2e_ms", "itl_mean_ms", "status",
    "error", "error_detail", "max_tokens", "input_tokens", "output_tokens", "output_tokens_source", "finish_reason",
)  # fmt: skip


def _fmt(value: Any, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


@runs_app.command("list")
def list_runs(
    label: list[str] = typer.Option([], "--label", help="Only runs with KEY=VALUE (repeatable)."),
    kind: str | None = typer.Option(None, help="bench | sweep | coldstart ..."),
    limit: int = typer.Option(20, help="How many (newest first)."),
    store: Path | None = typer.Option(None, help="Run store path."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The newest runs, optionally filtered by label."""
    with RunStore(store) as run_store:
        rows = run_store.list_runs(kind=kind, labels=parse_labels(label), limit=limit)
    if as_json:
        print(json.dumps([{"run_id": r.id, "kind": r.kind, "status": r.status, "created_at": r.created_at,
                           "labels": r.labels, "target": r.target.get("url")} for r in rows], indent=2))  # fmt: skip
        return
    table = Table(title=f"{len(rows)} run(s)", title_justify="left")
    for column in ("run", "kind", "when (UTC)", "status", "target", "load", "req/s", "TTFT p95 ms", "labels"):
        table.add_column(column)
    for r in rows:
        metrics = (r.summary or {}).get("metrics", {})
        table.add_row(
            r.id,
            r.kind,
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created_at)),
            r.status,
            str(r.target.get("url", "")),
            str((r.summary or {}).get("load", "")),
            _fmt(metrics.get("requests_per_s"), ",.2f"),
            _fmt((metrics.get("ttft_ms") or {}).get("p95")),
            " ".join(f"{k}={v}" for k, v in r.labels.items()),
        )
    Console().print(table)


@runs_app.command("show")
def show(
    run_id: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    store: Path | None = typer.Option(None, help="Run store path."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored summary as JSON."),
) -> None:
    """A stored run's summary, as `bench` or `coldstart` printed it."""
    with RunStore(store) as run_store:
        run = run_store.get_run(run_id)
    summary = run.summary or {}
    if run.kind in ("bench", "sweep", "sweep-step") and summary and not as_json:
        Console().print(summary_view(summary))
    elif run.kind == "coldstart" and summary.get("runs_ok") and not as_json:
        Console().print(coldstart_view(summary))
    else:  # asked for, or nothing finished to lay out
        print(json.dumps(summary or {"run_id": run.id, "status": run.status}, indent=2, default=str))


@runs_app.command("export")
def export(
    run_id: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    format: str = typer.Option(
        "json", "--format", "-f", help="json (summary + records) | csv (one row per request)."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default stdout)."),
    store: Path | None = typer.Option(None, help="Run store path."),
) -> None:
    """Every request of a run, for your own analysis. The API key is never part of a run."""
    if format not in ("json", "csv"):
        raise SpecError(f"--format must be json or csv, got {format!r}")
    with RunStore(store) as run_store:
        run = run_store.get_run(run_id)
        out = output.open("w", newline="") if output else sys.stdout
        try:
            if format == "csv":
                writer = csv.writer(out)
                writer.writerow(CSV_COLUMNS)
                for r in run_store.iter_records(run.id):
                    gaps = itl_gaps_ms(r)
                    writer.writerow([
                        r.index, r.worker, r.phase.value, f"{r.t_sched:.6f}", f"{r.t_send:.6f}",
                        _ms(ttft_ms(r)), _ms(tpot_ms(r)), _ms(e2e_ms(r)),
                        _ms(sum(gaps) / len(gaps) if gaps else None), r.status or "",
                        r.error.value if r.error else "", r.error_detail, r.max_tokens or "", r.input_tokens or "",
                        r.output_tokens if r.output_tokens is not None else "", r.output_tokens_source.value,
                        r.finish_reason or "",
                    ])  # fmt: skip
            else:
                out.write('{"run": ')
                json.dump({"run_id": run.id, "kind": run.kind, "status": run.status, "labels": run.labels,
                           "spec": run.spec, "target": run.target, "environment": run.environment,
                           "summary": run.summary}, out, default=str)  # fmt: skip
                out.write(', "records": [')
                for i, r in enumerate(run_store.iter_records(run.id)):
                    out.write(("," if i else "") + "\n")
                    json.dump({"index": r.index, "worker": r.worker, "phase": r.phase.value, "t_sched": r.t_sched,
                               "t_send": r.t_send, "t_first": r.t_first, "t_end": r.t_end, "status": r.status,
                               "error": r.error.value if r.error else None, "error_detail": r.error_detail,
                               "max_tokens": r.max_tokens, "input_tokens": r.input_tokens,
                               "output_tokens": r.output_tokens, "output_tokens_source": r.output_tokens_source.value,
                               "finish_reason": r.finish_reason, "chunk_times": r.chunk_times}, out)  # fmt: skip
                out.write("\n]}\n")
        finally:
            if output:
                out.close()


@runs_app.command("repeat")
def repeat(
    run_id: str = typer.Argument(..., help="Run whose stored spec to run again."),
    times: int = typer.Option(3, "--times", "-n", min=1, max=50, help="How many more runs."),
    store: Path | None = typer.Option(None, help="Run store path."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress."),
    as_json: bool = typer.Option(False, "--json", help="Print the spread as JSON."),
) -> None:
    """Run a stored spec again N times and report each metric's run-to-run spread.

    The spread is written into every run of the group; `servewise gate` uses it as its noise floor.
    """
    console = Console(stderr=as_json)
    with RunStore(store) as run_store:
        original = run_store.get_run(run_id)
        if original.kind != "bench" or not original.summary:
            raise SpecError(f"run {original.id} is a {original.kind} run; repeat takes a finished bench run")
        spec = RunSpec.model_validate(original.spec)
        spec = spec.model_copy(update={"labels": spec.labels | {"repeat_of": original.id}})
        summaries = [original.summary]
        for i in range(times):
            console.print(f"repeat {i + 1}/{times} of {original.id}", style="dim", markup=False)
            try:
                summaries.append(run_loop(run_bench(spec, run_store, console, quiet=quiet)))
            except TargetUnreachable as exc:
                Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False)
                raise typer.Exit(3) from None
        spread = repeat_spread(summaries)
        group = [s["run_id"] for s in summaries]
        for summary in summaries:
            run_store.update_summary(
                summary["run_id"], summary | {"repeat_spread": noise_floor(spread), "repeat_group": group}
            )
    if as_json:
        print(json.dumps({"runs": group, "spread": spread}, indent=2))
        return
    table = Table(title=f"Run-to-run spread over {len(group)} runs of one spec", title_justify="left")
    for column in ("metric", "median", "min", "max", "spread"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, s in spread.items():
        rel = s["relative"]
        table.add_row(
            name,
            _fmt(s["median"], ",.2f"),
            _fmt(s["min"], ",.2f"),
            _fmt(s["max"], ",.2f"),
            "-" if rel is None else f"{rel:.1%}",
        )
    console.print(table)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs", rich_help_panel="History")
