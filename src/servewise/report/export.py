"""Exports of stored runs for other tools: the result as JSON, every request as CSV or JSON lines.

Times are the run clock's seconds; latencies follow the glossary (``analysis.metrics``). The API key
is never part of a run, so it can never reach an export.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from servewise.analysis.metrics import e2e_ms, itl_gaps_ms, tpot_ms, ttfa_ms, ttft_ms
from servewise.format import number
from servewise.records import RequestRecord
from servewise.store import RunRow

CSV_COLUMNS = (
    "index", "worker", "phase", "t_sched", "t_send", "ttft_ms", "tpot_ms", "e2e_ms", "itl_mean_ms", "status",
    "error", "error_detail", "max_tokens", "input_tokens", "output_tokens", "output_tokens_source", "finish_reason",
    "session_id", "turn", "cached_tokens", "ttfa_ms", "reasoning_tokens",
)  # fmt: skip


def write_json(data: Any, destination: str | Path) -> None:
    """Indented JSON to a file, or to stdout for ``-``."""
    text = json.dumps(data, indent=2, default=str)
    if str(destination) == "-":
        print(text)
    else:
        Path(destination).write_text(text + "\n")


def _ms(value: float | None) -> str:
    return number(value, ".3f", missing="")


def _blank(value: int | None) -> int | str:
    return "" if value is None else value


def write_csv(records: Iterable[RequestRecord], out: TextIO) -> None:
    """One row per request, the glossary's latencies beside the raw times."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in records:
        gaps = itl_gaps_ms(r)
        writer.writerow([
            r.index, r.worker, r.phase.value, f"{r.t_sched:.6f}", f"{r.t_send:.6f}",
            _ms(ttft_ms(r)), _ms(tpot_ms(r)), _ms(e2e_ms(r)),
            _ms(sum(gaps) / len(gaps) if gaps else None), r.status or "",
            r.error.value if r.error else "", r.error_detail, r.max_tokens or "", r.input_tokens or "",
            r.output_tokens if r.output_tokens is not None else "", r.output_tokens_source.value,
            r.finish_reason or "", _blank(r.session), _blank(r.turn), _blank(r.cached_tokens),
            _ms(ttfa_ms(r)), _blank(r.reasoning_tokens),
        ])  # fmt: skip


def write_run_json(run: RunRow, records: Iterable[RequestRecord], out: TextIO) -> None:
    """The run (spec, target, environment, result with its notes) and every record, streamed."""
    out.write('{"run": ')
    json.dump({"run_id": run.id, "kind": run.kind, "status": run.status, "labels": run.labels,
               "spec": run.spec, "target": run.target, "environment": run.environment,
               "summary": run.export_json()}, out, default=str)  # fmt: skip
    out.write(', "records": [')
    for i, r in enumerate(records):
        out.write(("," if i else "") + "\n")
        json.dump({"index": r.index, "worker": r.worker, "phase": r.phase.value, "t_sched": r.t_sched,
                   "t_send": r.t_send, "t_first": r.t_first, "t_end": r.t_end, "status": r.status,
                   "error": r.error.value if r.error else None, "error_detail": r.error_detail,
                   "max_tokens": r.max_tokens, "input_tokens": r.input_tokens,
                   "output_tokens": r.output_tokens, "output_tokens_source": r.output_tokens_source.value,
                   "finish_reason": r.finish_reason, "chunk_times": r.chunk_times, "session_id": r.session,
                   "turn": r.turn, "cached_tokens": r.cached_tokens, "t_answer": r.t_answer,
                   "reasoning_tokens": r.reasoning_tokens}, out)  # fmt: skip
    out.write("\n]}\n")


def stdout_or(path: Path | None) -> TextIO:
    return path.open("w", newline="") if path else sys.stdout
