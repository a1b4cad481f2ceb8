"""A store written by servewise 0.1.0 (tests/fixtures/store/v1-runs.db) still opens, and every command that
reads a stored run prints exactly what 0.1.0 printed (tests/fixtures/store/golden/, made by
fixtures/store/make_v1_store.py). A mismatch means a stored run now reads differently: fix the code, not the
golden.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from store_golden import DB, ENV, GOLDEN, Case, Outcome, load_manifest, run_case, sha256

from cli_runner import servewise

MANIFEST = load_manifest()
CASES = [(Case(c["name"], tuple(c["args"]), c["writes"]), c) for c in MANIFEST["cases"]]
DIFF_LINES = 60


def _diff(expected: str, got: str, name: str) -> str:
    lines = list(
        difflib.unified_diff(
            expected.splitlines(), got.splitlines(), f"golden/{name}", "now", lineterm="", n=2
        )
    )
    shown = [line[:300] for line in lines[:DIFF_LINES]]
    if len(lines) > DIFF_LINES:
        shown.append(f"... {len(lines) - DIFF_LINES} more diff lines")
    return "\n".join(shown)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case run once, a few at a time (each is its own `python -m servewise` on its own store copy)."""
    root = tmp_path_factory.mktemp("store-compat")
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        futures = {
            case.name: pool.submit(run_case, case, root / f"case{n}") for n, (case, _) in enumerate(CASES)
        }
        return {name: future.result() for name, future in futures.items()}


def test_fixture_is_the_committed_v1_store() -> None:
    """The fixture is the file the goldens were made from, and it is a schema-1 store (read without servewise)."""
    assert sha256(DB) == MANIFEST["db_sha256"], "v1-runs.db changed: it is a fixture, never rewrite it"
    db = sqlite3.connect(f"file:{DB}?immutable=1", uri=True)
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
        ids = {row[0] for row in db.execute("SELECT id FROM runs")}
    finally:
        db.close()
    assert ids == {run["id"] for run in MANIFEST["runs"]}
    assert DB.stat().st_size < 1_000_000


def test_old_store_opens_and_lists_every_run(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    shutil.copyfile(DB, store)
    for _ in range(2):  # the second open sees whatever the first did to the file (a migration, say)
        result = servewise("runs", "list", "--json", "--limit", "1000", store=store, env=ENV)
        assert result.code == 0, result.stderr
        listed = {(r["run_id"], r["kind"]) for r in result.json()}
        top_level = {(r["id"], r["kind"]) for r in MANIFEST["runs"] if r["parent_id"] is None}
        assert listed == top_level
    kinds = {r["kind"] for r in MANIFEST["runs"]}
    assert {"bench", "sweep", "sweep-step", "coldstart"} <= kinds


@pytest.mark.parametrize(("case", "expected"), CASES, ids=[c.name for c, _ in CASES])
def test_output_matches_the_golden(case: Case, expected: dict, outcomes: dict[str, Outcome]) -> None:
    got = outcomes[case.name]
    assert got.code == expected["exit_code"], (
        f"exit {got.code}, was {expected['exit_code']}\n{got.stderr[-2000:]}"
    )
    if case.writes:
        assert got.stdout == expected["stdout"], _diff(
            expected["stdout"], got.stdout, case.name + " (stdout)"
        )
    golden = (GOLDEN / case.name).read_text(encoding="utf-8")
    assert got.text == golden, (
        f"{case.name} differs from 0.1.0's output:\n{_diff(golden, got.text, case.name)}"
    )


def test_every_stored_run_has_its_goldens() -> None:
    named = {c.name.split("/")[0] for c, _ in CASES}
    for run in MANIFEST["runs"]:
        assert run["id"] in named
    assert json.loads((GOLDEN / "runs-list-json.json").read_text())  # not empty
