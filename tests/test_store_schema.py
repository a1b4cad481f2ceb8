"""The store's schema: versioned, upgraded from release 0.1.0, refused when newer; notes kept beside results."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from servewise.errors import StoreError
from servewise.results import GateMark, RepeatNote, RunResult
from servewise.results.gate import GateVerdict
from servewise.store import RunStore, open_store
from servewise.store.migrations import SCHEMA_VERSION

from cli_runner import servewise

V1_STORE = Path(__file__).parent / "fixtures" / "store" / "v1-runs.db"


def _bench(store: RunStore) -> str:
    run_id = store.create_run(kind="bench", spec={}, labels={}, tool_version="t", target={}, environment={})
    store.finish_run(run_id, RunResult(run_id=run_id, status="ok", load="poisson 1 req/s"))
    return run_id


def _stored_json(path: Path, run_id: str) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT summary_json FROM runs WHERE id = ?", (run_id,)).fetchone()[0]


def test_a_note_never_rewrites_the_measured_result(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as store:
        run_id = _bench(store)
    written = _stored_json(path, run_id)
    with RunStore(path) as store:
        store.annotate(run_id, GateMark(verdict=GateVerdict.PASS, baseline="b", at=time.time()))
        store.annotate(run_id, RepeatNote(spread={"ttft_ms_p50": 0.1}, group=[run_id]))
        store.annotate(run_id, GateMark(verdict=GateVerdict.FAIL, baseline="c", at=time.time()))
        run = store.get_run(run_id)
    assert _stored_json(path, run_id) == written
    assert run.annotations.gate is not None and run.annotations.gate.verdict is GateVerdict.FAIL
    assert run.annotations.order == ["repeat", "gate"]  # the newest note of a kind replaces the older
    assert run.export_json()["repeat_spread"] == {"ttft_ms_p50": 0.1}


def test_a_release_0_1_store_is_upgraded_once_and_keeps_its_notes(tmp_path):
    path = tmp_path / "runs.db"
    shutil.copy(V1_STORE, path)
    with RunStore(path) as store:
        runs = store.list_runs(include_children=True)
        gated = [r for r in runs if r.annotations.gate is not None]
    assert len(runs) == 8 and len(gated) == 1 and gated[0].annotations.gate.verdict is GateVerdict.PASS
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert all('"gate"' not in text for (text,) in db.execute("SELECT summary_json FROM runs"))
    with RunStore(path) as store:  # a second open finds nothing left to upgrade
        assert len(store.list_runs(include_children=True)) == 8


def test_a_store_from_a_newer_servewise_is_refused_with_one_line(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as store:
        _bench(store)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="newer servewise"):
        RunStore(path)
    result = servewise("runs", "list", store=path)
    assert result.code == 2 and "newer servewise" in result.stderr and "Traceback" not in result.stderr


def test_a_file_that_is_not_a_store_is_refused_with_one_line(tmp_path):
    path = tmp_path / "runs.db"
    path.write_bytes(b"not a database, just bytes" * 100)
    result = servewise("runs", "list", store=path)
    assert result.code == 2 and "cannot open the run store" in result.stderr and "Traceback" not in result.stderr


def test_a_sweep_step_finds_the_steps_before_it_oldest_first(any_store):
    """What a sweep step's diagnosis reads beside its own samples: the steps before it, never after."""
    with open_store(any_store) as store:
        sweep = store.create_run(kind="sweep", spec={}, labels={}, tool_version="t", target={}, environment={})
        steps = [
            store.create_run(
                kind="bench", spec={}, labels={}, tool_version="t", target={}, environment={}, parent_id=sweep
            )
            for _ in range(3)
        ]
        other = _bench(store)
        assert store.earlier_steps(store.get_run(steps[2])) == steps[:2]
        assert store.earlier_steps(store.get_run(steps[0])) == []
        assert store.earlier_steps(store.get_run(other)) == []
