"""Run history on the terminal: the list of runs, and a repeated spec's run-to-run spread."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from servewise.format import number as _fmt
from servewise.store import RunRow


def runs_table(rows: Sequence[RunRow]) -> Table:
    table = Table(title=f"{len(rows)} run(s)", title_justify="left")
    for column in ("run", "kind", "when (UTC)", "status", "target", "load", "req/s", "TTFT p95 ms", "labels"):
        table.add_column(column)
    for r in rows:
        measured = r.measured
        table.add_row(
            r.id,
            r.kind,
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created_at)),
            r.status,
            str(r.target.get("url", "")),
            measured.load if measured else "",
            _fmt(measured.metrics.requests_per_s if measured else None, ",.2f"),
            _fmt(measured.metrics.ttft_ms.p95 if measured else None),
            " ".join(f"{k}={v}" for k, v in r.labels.items()),
        )
    return table


def runs_json(rows: Sequence[RunRow]) -> list[dict[str, Any]]:
    return [
        {"run_id": r.id, "kind": r.kind, "status": r.status, "created_at": r.created_at,
         "labels": r.labels, "target": r.target.get("url")}
        for r in rows
    ]  # fmt: skip


def spread_table(group: Sequence[str], spread: dict[str, dict[str, float | None]]) -> Table:
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
    return table
