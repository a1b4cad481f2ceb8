"""The golden outputs of the fixture store tests/fixtures/store/v1-runs.db: which commands, how they are run,
and the one normalise() that both the generator (fixtures/store/make_v1_store.py) and test_store_compat use.

Every command runs as a user would run it (tests/cli_runner.py), on its own copy of the fixture in a fresh
folder, so the committed store is never written to and no command sees another's changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli_runner import servewise

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "store"
DB = FIXTURE_DIR / "v1-runs.db"
GOLDEN = FIXTURE_DIR / "golden"
MANIFEST = GOLDEN / "manifest.json"

# What the output may depend on besides the store: the terminal width, colour, the time zone. TTY_COMPATIBLE=0
# tells rich the output is no terminal even where FORCE_COLOR is set (CI), so no escape codes are written.
ENV = {"COLUMNS": "160", "NO_COLOR": "1", "TZ": "UTC", "TTY_COMPATIBLE": "0"}
STORE_NAME = "runs.db"  # the copy's name inside its folder
OUT = "{out}"  # stands for the file a command is told to write (report -o)

# 120 requests a side cannot bound the error rate within 1 point, nor ITL p95 within 10%: the fixture's gate
# allows more, here as when its verdict was stored
GATE_MAX_REGRESSION = "itl_p95=30%,errors=5%"
BENCH_KINDS = ("bench", "sweep", "sweep-step")  # runs with request records, which `diagnose` reads


@dataclass(frozen=True)
class Case:
    name: str  # golden file, relative to GOLDEN
    args: tuple[str, ...]
    writes: bool = False  # the golden is the file the command writes (OUT), not its stdout

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "args": list(self.args), "writes": self.writes}


def cases_for(runs: list[dict[str, Any]]) -> list[Case]:
    """Every command whose output must not change, for the runs in the store (each {id, kind, parent_id,
    labels}): the run history, the gate of release v2 against v1, and each run shown, exported and drawn."""
    cases = [
        Case("runs-list.txt", ("runs", "list")),
        Case("runs-list-json.json", ("runs", "list", "--json")),
        Case("runs-list-release-v1.txt", ("runs", "list", "--label", "release=v1")),
    ]
    v1 = [r["id"] for r in runs if r.get("labels") == {"release": "v1"}]  # not its repeats (repeat_of=...)
    v2 = [r["id"] for r in runs if r.get("labels") == {"release": "v2"}]
    if v1 and v2:  # the gate reads both runs' records and those of v1's repeat group
        gate = ("gate", "--baseline", v1[0], "--candidate", v2[0], "--max-regression", GATE_MAX_REGRESSION,
                "--no-record")  # fmt: skip
        cases += [Case("gate-v1-v2.txt", gate), Case("gate-v1-v2.json", (*gate, "--json"))]
    for run in runs:
        rid = run["id"]
        cases += [
            Case(f"{rid}/show.txt", ("runs", "show", rid)),
            Case(f"{rid}/export.csv", ("runs", "export", rid, "--format", "csv")),
            Case(f"{rid}/export.json", ("runs", "export", rid, "--format", "json")),
            Case(f"{rid}/report.html", ("report", rid, "-o", OUT), writes=True),
        ]
        if run["kind"] in BENCH_KINDS:
            cases.append(Case(f"{rid}/diagnose.txt", ("diagnose", rid)))
    return cases


# -- normalisation -------------------------------------------------------------------------------------

_GENERATED = re.compile(r"generated \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")


def normalise(text: str, workdir: Path) -> str:
    """What depends on where or when the command ran, replaced by a fixed token; nothing else is touched.

    - the folder holding the store copy and the written report (`report` prints the path it wrote):
      ``<WORKDIR>``, as given and as resolved (a symlinked /tmp prints the resolved one);
    - the HTML report's "generated YYYY-MM-DD HH:MM UTC" (the time the report was drawn, not the run's time,
      which is stored and stays): ``generated <GENERATED>``.
    """
    for path in sorted({str(workdir.resolve()), str(workdir)}, key=len, reverse=True):
        text = text.replace(path, "<WORKDIR>")
    return _GENERATED.sub("generated <GENERATED>", text)


# -- running -------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    text: str  # normalised stdout, or the normalised file the command wrote
    stdout: str  # normalised stdout
    stderr: str


def run_case(case: Case, workdir: Path, db: Path = DB) -> Outcome:
    """Run one case on a fresh copy of ``db`` inside ``workdir`` (created, must be empty or absent)."""
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / STORE_NAME
    shutil.copyfile(db, store)
    out = workdir / "out" / Path(case.name).name
    args = [str(out) if a == OUT else a for a in case.args]
    result = servewise(*args, store=store, env=ENV, timeout=120)
    stdout = normalise(result.stdout, workdir)
    text = normalise(out.read_text(encoding="utf-8"), workdir) if case.writes and out.exists() else stdout
    return Outcome(result.code, text, stdout, result.stderr)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())
