"""Copying runs between two stores (``servewise runs push|pull``): a laptop's SQLite store and the team's
PostgreSQL one, either way. Idempotent: runs keep their ids, and a second copy finds nothing to do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from servewise.store import Store

NoteRow = tuple[Any, ...]  # (run_id, kind, created_at, value_json), as the store keeps notes


@dataclass(frozen=True)
class CopyProgress:
    """How far the copy of one run has got."""

    run_id: str
    records_done: int
    records: int
    run_number: int
    runs: int


@dataclass(frozen=True)
class SyncOutcome:
    copied: list[str]  # runs copied whole (new there, or finished here and unfinished there)
    records: int  # their records
    notes: int  # notes brought up to date on runs the target already had
    already_there: int  # runs the target already had (their newer notes brought over)


def runs_to_copy(source: dict[str, str], target: dict[str, str]) -> list[str]:
    """The runs the target lacks, or holds only unfinished while the source has them finished; oldest first."""
    return sorted(rid for rid, status in source.items()
                  if rid not in target or (target[rid] == "running" and status != "running"))  # fmt: skip


def newer_notes(source: list[NoteRow], target: list[NoteRow]) -> list[NoteRow]:
    """The source's notes of a kind the target has not, or has an older one of (the newest note of a kind wins)."""
    held = {kind: created for _, kind, created, _ in target}
    return [note for note in source if note[1] not in held or held[note[1]] < note[2]]


def sync_runs(
    source: Store, target: Store, on_progress: Callable[[CopyProgress], None] | None = None
) -> SyncOutcome:
    """Bring ``target`` up to date with ``source``: each run copied in full (records, samples and notes, the
    run's row last, so it is never seen half copied) and the newer notes of the runs it already holds."""
    statuses, held = source.run_statuses(), target.run_statuses()
    copying = runs_to_copy(statuses, held)
    records = 0
    for number, run_id in enumerate(copying, 1):
        copy = source.read_copy(run_id)
        page = _pages_counted(on_progress, run_id, copy.records, number, len(copying))
        page(0)
        target.write_copy(copy, on_page=page)
        records += copy.records
    notes = 0
    for run_id in sorted(set(statuses) - set(copying)):
        newer = newer_notes(source.note_rows(run_id), target.note_rows(run_id))
        target.put_notes(newer)
        notes += len(newer)
    return SyncOutcome(copied=copying, records=records, notes=notes, already_there=len(statuses) - len(copying))


def _pages_counted(
    on_progress: Callable[[CopyProgress], None] | None, run_id: str, records: int, number: int, runs: int
) -> Callable[[int], None]:
    """Called with each page's record count as it is written; reports the run's progress so far."""
    done = 0

    def page(count: int) -> None:
        nonlocal done
        done += count
        if on_progress is not None:
            on_progress(CopyProgress(run_id, done, records, number, runs))

    return page
