"""The gate on a real llama-server with the default policy: like with like never fails, a release 30% slower
fails once each side has interleaved repeats, and a gross regression fails on one run a side.

Needs `bash tests/engines/install.sh`; skips with the reason when llama-server is missing. The 30% slower
release is the test gateway writing every chunk at 1.3x its time (tests/fixtures/gateway.py ``--stretch``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from servewise.cli import gate as gate_cli
from servewise.cli.app import ServewiseGroup
from servewise.flows.bench import SilentProgress
from servewise.flows.gate import GateRequest, run_gate
from servewise.results.gate import GateVerdict
from servewise.store import RunStore

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures.gateway import running_gateway

from engines.servers import LlamaServer

pytestmark = [pytest.mark.engines, pytest.mark.slow]

SERVEWISE = [sys.executable, "-c", "from servewise.cli.app import main; main()"]
WORKLOAD = ["--load", "concurrency:4", "--requests", "100", "--input-tokens", "64", "--output-tokens", "64",
            "--seed", "7", "--quiet"]  # fmt: skip
#: Release B: every chunk at 1.8x its time. In a closed loop a slower delivery also unloads the engine, so
#: the client sees less (1.45x gave +32% E2E p50 here, the 30% regression benchmarks/gate_noise.py measures;
#: 1.8x is clearly past it, so the test does not ride on that figure's 93%).
SLOWER = 1.8
LATENCY = {"ttft_p50", "ttft_p95", "e2e_p50", "e2e_p95", "itl_p50", "itl_p95", "tpot_p50", "tpot_p95"}


def bench(store: Path, url: str, model: str, label: str) -> str:
    """One stored, labelled run; bounded well inside pytest's timeout so the servers still stop cleanly."""
    try:
        done = subprocess.run(
            [*SERVEWISE, "bench", "--target", url, "--model", model, *WORKLOAD, "--label", f"config={label}",
             "--store", str(store), "--json", "-"],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"servewise bench ({label}) did not finish in 240 s: {exc.stdout!r} {exc.stderr!r}")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["run_id"]


def gate(store: Path, baseline: str, candidate: str, *args: str) -> tuple[int, dict]:
    app = typer.Typer(cls=ServewiseGroup)
    gate_cli.register(app)
    app.command("noop")(lambda: None)  # keeps typer from collapsing the app into `gate` itself
    result = CliRunner().invoke(app, ["gate", "--baseline", baseline, "--candidate", candidate, "--store",
                                      str(store), "--json", *args])  # fmt: skip
    assert result.exit_code in (0, 1, 3), result.output
    return result.exit_code, json.loads(result.stdout)


def _summary(report: dict) -> str:
    rows = [f"{m['name']}: {m['change_pct']} {m['ci']} {m['verdict']} ({m['reason']})" for m in report["metrics"]]
    return "\n".join([report["reason"], *rows])


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str, str, str]]:
    """A store, llama-server behind a pass-through gateway (release A), a 1.8x one (B) and a 3x one (C)."""
    reason = LlamaServer.missing_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("gate-engines")
    with (
        LlamaServer(slots=4, threads=1) as server,  # the other core is the load generator's
        running_gateway(server.base_url, root / "a.log") as a,
        running_gateway(server.base_url, root / "b.log", stretch=SLOWER) as b,
        running_gateway(server.base_url, root / "c.log", stretch=3.0) as c,
    ):
        yield root / "runs.db", a, b, c, server.model


class SecondJob(SilentProgress):
    """Another job on the runner: two busy loops (one per core) for as long as the repeat named ``during``
    runs, stopped at the next notice."""

    def __init__(self, during: str) -> None:
        self.during, self.loops = during, []

    def notice(self, text: str) -> None:
        self.stop()
        if text.startswith(self.during):
            self.loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]

    def stop(self) -> None:
        for loop in self.loops:
            loop.kill()
            loop.wait()
        self.loops = []


def test_same_release_twice_never_fails_and_a_run_another_job_slowed_is_made_up_for(releases):
    """A/A with ``--repeats 3`` while a second job holds both cores during the candidate's first repeat: that
    run is made up for by one more pair and set aside, the gate does not fail, and every run joins its group."""
    store, a, _, _, model = releases
    first, second = bench(store, a, model, "a"), bench(store, a, model, "a-again")
    job = SecondJob("repeat 1/3 of the candidate")
    try:
        with RunStore(store) as runs:
            report = run_gate(runs, GateRequest(baseline=first, candidate=second, repeats=3), job)
    finally:
        job.stop()
    shared = report.candidate_runs[1]  # the named run first, then its repeats in order
    summary = report.reason + "".join(f"\n{m.name}: {m.change_pct} {m.ci} {m.verdict}" for m in report.metrics)
    assert report.verdict is not GateVerdict.FAIL, summary
    assert len(report.baseline_runs) == len(report.candidate_runs) >= 5, summary  # 4 + a make-up pair
    assert shared in [r.run_id for r in report.set_aside], (shared, report.set_aside)
    with RunStore(store) as runs:  # a later gate of either run sees every run of its side
        assert runs.get_run(first).annotations.repeat.group == report.baseline_runs


def test_a_clearly_slower_release_fails_with_interleaved_repeats(releases):
    store, a, b, _, model = releases
    good, slow = bench(store, a, model, "good"), bench(store, b, model, "slow")
    code, report = gate(store, good, slow, "--repeats", "3")
    assert (code, report["verdict"]) == (1, "fail"), _summary(report)
    failed = {m["name"] for m in report["metrics"] if m["gated"] and m["verdict"] == "fail"}
    assert failed and failed <= LATENCY | {"throughput"}, _summary(report)
    e2e = next(m for m in report["metrics"] if m["name"] == "e2e_p50")
    assert e2e["change_pct"] > 25, _summary(report)
    splits = re.search(r"maxT over (\d+) run splits", e2e["method"])  # 70 for 4 + 4; more after make-up pairs
    assert splits and int(splits[1]) >= 70, (e2e["method"], report.get("set_aside"))


def test_a_gross_regression_fails_on_one_run_a_side(releases):
    """Every chunk at three times its time: no repeats needed, whatever the host's noise."""
    store, a, _, c, model = releases
    good, bad = bench(store, a, model, "before"), bench(store, c, model, "threefold")
    code, report = gate(store, good, bad)
    assert (code, report["verdict"]) == (1, "fail"), _summary(report)
    failed = {m["name"] for m in report["metrics"] if m["gated"] and m["verdict"] == "fail"}
    assert failed & {"ttft_p50", "e2e_p50", "e2e_p95", "throughput"}, _summary(report)
