"""`servewise release`: the release file (every bad input one line), placeholders, the team's commands run
bounded, the decision of each next step and of the outcome, the history's rendering, and one release end to
end on the fake timing server, interrupted by Ctrl-C while it deploys."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from servewise.cli import release as release_cli
from servewise.cli.app import ServewiseGroup
from servewise.errors import UsageError
from servewise.release.config import EXAMPLE, check_version, fill, load_release_file, parse_release
from servewise.release.decide import Conclusion, Plan, conclude, next_step
from servewise.release.shell import mask_env, run_command
from servewise.report.release import history_table, render_release, running_line
from servewise.results.gate import GateVerdict
from servewise.results.release import ReleaseOutcome, ReleaseResult, ReleaseStep, StepName, StepStatus

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers.process import free_port

TIMING_SERVER = Path(__file__).resolve().parent / "servers" / "timing_server.py"
MINIMAL = {
    "target": "http://127.0.0.1:8080",
    "deploy": "./deploy.sh {version}",
    "rollback": "./deploy.sh {previous}",
    "bench": {"load": {"kind": "concurrency", "concurrency": 4}, "requests": 80, "duration_s": None},
}


def _cli(*args: str) -> tuple[int, str]:
    app = typer.Typer(cls=ServewiseGroup)
    release_cli.register(app)
    app.command("noop")(lambda: None)  # keeps typer from collapsing the app into `release` itself
    result = CliRunner().invoke(app, ["release", *args], env={"COLUMNS": "300"})
    return result.exit_code, result.output


# -- the release file --------------------------------------------------------------------------------------


def test_the_example_in_the_help_parses_and_fills_the_bench_target():
    release = parse_release(yaml.safe_load(EXAMPLE), "release.yaml")
    assert release.bench.target.url == release.target == "http://127.0.0.1:8080"
    assert release.ready == "http://127.0.0.1:8080/health"
    assert (release.timeouts.deploy, release.timeouts.ready, release.timeouts.bench) == (120, 300, 600)
    assert release.policy().allowed == {"ttft_p95": 0.10, "throughput": 0.05}
    assert release.slo() is not None and release.gate.on_inconclusive == "keep"


def test_defaults_and_durations():
    release = parse_release(MINIMAL | {"timeouts": {"ready": "15s", "bench": "2m", "deploy": 30}}, "r.yaml")
    assert release.ready == "http://127.0.0.1:8080/health"
    assert (release.timeouts.ready, release.timeouts.bench, release.timeouts.deploy) == (15, 120, 30)
    assert release.timeouts.rollback == 120 and release.probes and release.check_requests == 50
    assert release.slo() is None and release.gate.on_inconclusive == "keep"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"target": None}, "target: the release's base URL is missing"),
        ({"target": "localhost:8080"}, "target: not an http(s) URL"),
        ({"ready": "/health"}, "ready: not an http(s) URL"),
        ({"deploy": "./deploy.sh {versoin}"}, "deploy: Value error, unknown placeholder {versoin}"),
        ({"rollback": "  "}, "rollback: Value error, is empty"),
        ({"bench": None}, "bench: give a run spec"),
        ({"bench": MINIMAL["bench"] | {"target": {"url": "http://other:1"}}}, "bench.target.url: leave it out"),
        ({"bench": MINIMAL["bench"] | {"load": {"kind": "sweep"}}}, "bench.load: a sweep has no single run"),
        ({"bench": MINIMAL["bench"] | {"target": {"api": "embeddings"}}}, "bench.target.api: a release is timed"),
        ({"bench": MINIMAL["bench"] | {"target": "http://x"}}, "bench.target: a mapping"),
        ({"bench": MINIMAL["bench"] | {"requests": 0}}, "bench.requests: Input should be greater than or equal to 1"),
        ({"bench": {"load": {"kind": "concurrency", "concurrency": 4}, "duration_s": None}},
         "bench: Value error, give a duration or a number of requests"),
        ({"gate": {"repeats": 3}}, "gate.repeats: a release gates one run a side"),
        ({"gate": {"max_regression": "ttft=10%"}}, "gate: max-regression: cannot read 'ttft=10%'"),
        ({"gate": {"confidence": 2}}, "gate: confidence must be between 0.5 and 1"),
        ({"gate": {"on_inconclusive": "pray"}}, "gate.on_inconclusive: Input should be 'keep' or 'rollback'"),
        ({"timeouts": {"ready": "soon"}}, "not a duration: 'soon'"),
        ({"timeouts": {"ready": -1}}, "timeouts.ready: Input should be greater than 0"),
        ({"check_requests": 0}, "check_requests: Input should be greater than or equal to 1"),
        ({"deploys": "x"}, "deploys: Extra inputs are not permitted"),
        ({"deploy": None, "rollback": None}, "(and 1 more problem)"),
    ],
)  # fmt: skip
def test_every_bad_release_file_is_one_line_naming_the_field(change, said):
    data = {key: value for key, value in (MINIMAL | change).items() if value is not None}  # None: left out
    with pytest.raises(UsageError) as raised:
        parse_release(data, "release.yaml")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("release.yaml: "), message
    assert said in message, message


def test_unreadable_files_and_bad_flags_exit_2_with_one_line(tmp_path):
    not_yaml = tmp_path / "bad.yaml"
    not_yaml.write_text("target: [unclosed\n")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    for path, said in ((tmp_path / "missing.yaml", "cannot read"), (not_yaml, "not valid YAML"),
                       (listed, "must hold a mapping")):  # fmt: skip
        with pytest.raises(UsageError, match=said):
            load_release_file(path)
        code, output = _cli("run", "--file", str(path), "--version", "v1", "--store", str(tmp_path / "runs.db"))
        assert code == 2 and said in output and "Traceback" not in output, output
    good = tmp_path / "release.yaml"
    good.write_text(yaml.safe_dump(MINIMAL))
    code, output = _cli("run", "--file", str(good), "--version", "v1; rm -rf /", "--store", str(tmp_path / "r.db"))
    assert code == 2 and "--version 'v1; rm -rf /'" in output and "Traceback" not in output, output


def test_placeholders_are_filled_and_the_shells_own_left_alone():
    command = "VERSION={version} ./deploy.sh --image repo/app:{version} --replace {previous} --home ${HOME} $TOKEN"
    assert fill(command, "v2", "v1") == ("VERSION=v2 ./deploy.sh --image repo/app:v2 --replace v1 --home ${HOME} "
                                         "$TOKEN")  # fmt: skip
    assert fill("./deploy.sh {version} {previous}", "v1", None) == "./deploy.sh v1 "
    for good in ("v1.2.3", "sha256:abc", "repo/app:v2", "2026-12-02+build.7"):
        assert check_version(good, "--version") == good
    for bad in ("-rf", "v1 v2", "$(reboot)", "a;b", ""):
        with pytest.raises(UsageError, match="--version"):
            check_version(bad, "--version")


def test_values_of_the_variables_a_command_names_are_masked():
    env = {"DEPLOY_TOKEN": "s3cr3t-t0ken", "PORT": "1", "UNUSED": "s3cr3t-t0ken-other"}
    text = "login with s3cr3t-t0ken on port 1"
    assert mask_env(text, "deploy --token ${DEPLOY_TOKEN} --port $PORT", env) == "login with $DEPLOY_TOKEN on port 1"
    assert mask_env(text, "deploy", env) == text


# -- the team's commands -----------------------------------------------------------------------------------


def test_a_command_keeps_its_exit_code_and_output_tail_and_masks_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("RELEASE_TEST_SECRET", "hunter2-hunter2")
    log = tmp_path / "deploy.log"
    done = run_command("echo deploying; echo token $RELEASE_TEST_SECRET; seq 1 2000; exit 3", 10, log)
    assert (done.status, done.exit_code) == ("failed", 3)
    assert done.output_tail.endswith("2000\n") and len(done.output_tail.encode()) <= 4096
    assert "hunter2" not in log.read_text() and "token $RELEASE_TEST_SECRET" in log.read_text()
    assert run_command("true", 10, log).status == "ok"


def test_a_server_left_behind_holding_the_output_does_not_hold_the_step(tmp_path):
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    done = run_command(f"sleep 30 & echo $! > {pid_file}; echo started", 10, tmp_path / "deploy.log")
    try:
        assert done.status == "ok" and time.monotonic() - started < 5 and "started" in done.output_tail
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _gone(pid_file: Path) -> bool:
    """Exited (a zombie left to an init that does not reap counts: it runs nothing)."""
    try:
        state = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_a_timeout_or_ctrl_c_stops_the_commands_whole_process_group(tmp_path):
    pid_file = tmp_path / "pid"
    done = run_command(f"sleep 30 & echo $! > {pid_file}; wait", 0.5, tmp_path / "a.log", grace_s=2)
    assert (done.status, done.exit_code) == ("timeout", None)
    time.sleep(0.2)
    assert _gone(pid_file)
    # Ctrl-C as the CLI sees it (Python's own handler: KeyboardInterrupt), whatever an earlier test left installed
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        done = run_command(f"echo $$ > {pid_file}; exec sleep 30", 20, tmp_path / "b.log", grace_s=2)
        timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert done.status == "interrupted" and _gone(pid_file)


# -- deciding ----------------------------------------------------------------------------------------------

PLAN = Plan(version="v2", previous="v1", gated=True, check_gated=True, probes=True)


def step(name: StepName, status: StepStatus = "ok", verdict: GateVerdict | None = None, detail: str = "") -> ReleaseStep:
    return ReleaseStep(name=name, status=status, started_at=0.0, finished_at=1.0, verdict=verdict,
                       detail=detail or f"{name} {status}")  # fmt: skip


def walk(plan: Plan, outcomes: dict[StepName, ReleaseStep]) -> list[ReleaseStep]:
    """Every step ``next_step`` asks for, each ending as ``outcomes`` says (else ok)."""
    steps: list[ReleaseStep] = []
    while (name := next_step(plan, steps)) is not None:
        steps.append(outcomes.get(name, step(name)))
        assert len(steps) < 20
    return steps


def names(steps: list[ReleaseStep]) -> list[str]:
    return [str(s.name) for s in steps]


FORWARD = ["deploy", "ready", "probes", "bench", "gate"]
BACK = ["rollback", "rollback_ready", "check", "check_gate"]


def test_a_passing_release_is_kept():
    steps = walk(PLAN, {StepName.GATE: step(StepName.GATE, verdict=GateVerdict.PASS, detail="all within")})
    assert names(steps) == FORWARD
    assert conclude(PLAN, steps) == Conclusion(ReleaseOutcome.GOOD, "v2", "gate pass: all within")


def test_the_first_release_is_the_baseline_and_probes_may_be_off():
    plan = Plan(version="v1", previous=None, gated=False, check_gated=False, probes=False)
    steps = walk(plan, {})
    assert names(steps) == ["deploy", "ready", "bench"]
    assert conclude(plan, steps).outcome is ReleaseOutcome.GOOD
    assert conclude(plan, steps).reason == "first release: recorded as the baseline"


def test_a_failing_gate_rolls_back_and_the_previous_release_is_verified():
    gate = step(StepName.GATE, verdict=GateVerdict.FAIL, detail="failed: ttft_p95")
    check = step(StepName.CHECK_GATE, verdict=GateVerdict.INCONCLUSIVE)
    steps = walk(PLAN, {StepName.GATE: gate, StepName.CHECK_GATE: check})
    assert names(steps) == FORWARD + BACK
    ending = conclude(PLAN, steps)
    assert (ending.outcome, ending.running) == (ReleaseOutcome.ROLLED_BACK, "v1")
    assert ending.reason.startswith("gate fail: failed: ttft_p95; rolled back to v1: its check is within")


@pytest.mark.parametrize(("policy", "outcome", "path"), [
    ("keep", ReleaseOutcome.KEPT, FORWARD), ("rollback", ReleaseOutcome.ROLLED_BACK, FORWARD + BACK)
])  # fmt: skip
def test_an_inconclusive_gate_does_what_the_file_says(policy, outcome, path):
    plan = Plan(version="v2", previous="v1", gated=True, check_gated=True, probes=True, on_inconclusive=policy)
    steps = walk(plan, {StepName.GATE: step(StepName.GATE, verdict=GateVerdict.INCONCLUSIVE, detail="too few")})
    assert names(steps) == path
    assert conclude(plan, steps).outcome is outcome
    if outcome is ReleaseOutcome.KEPT:
        assert conclude(plan, steps).reason == "inconclusive (too few)"


@pytest.mark.parametrize(("name", "status"), [
    (StepName.DEPLOY, "failed"), (StepName.DEPLOY, "timeout"), (StepName.DEPLOY, "interrupted"),
    (StepName.READY, "timeout"), (StepName.READY, "interrupted"), (StepName.PROBES, "interrupted"),
    (StepName.BENCH, "failed"), (StepName.BENCH, "interrupted"), (StepName.GATE, "failed"),
])  # fmt: skip
def test_any_forward_step_that_breaks_rolls_back(name, status):
    steps = walk(PLAN, {name: step(name, status)})
    assert names(steps) == [*FORWARD[: FORWARD.index(str(name)) + 1], *BACK]
    ending = conclude(PLAN, steps)
    assert (ending.outcome, ending.running) == (ReleaseOutcome.ROLLED_BACK, "v1")
    assert ending.reason.startswith(f"{name} {status}: ")


def test_failed_probes_inform_and_the_release_goes_on():
    steps = walk(PLAN, {StepName.PROBES: step(StepName.PROBES, "failed"),
                        StepName.GATE: step(StepName.GATE, verdict=GateVerdict.PASS)})  # fmt: skip
    assert names(steps) == FORWARD and conclude(PLAN, steps).outcome is ReleaseOutcome.GOOD


@pytest.mark.parametrize(("name", "status", "running", "said"), [
    (StepName.ROLLBACK, "failed", None, "then rollback failed"),
    (StepName.ROLLBACK, "timeout", None, "then rollback timeout"),
    (StepName.ROLLBACK_READY, "timeout", None, "then rollback_ready timeout"),
    (StepName.CHECK, "failed", "v1", "v1 answers again but its check failed"),
    (StepName.CHECK, "interrupted", "v1", "v1 answers again but its check interrupted"),
    (StepName.CHECK_GATE, "failed", "v1", "v1 answers again but its check_gate failed"),
])  # fmt: skip
def test_a_rollback_that_does_not_confirm_the_previous_release_is_unknown(name, status, running, said):
    steps = walk(PLAN, {StepName.READY: step(StepName.READY, "timeout"), name: step(name, status)})
    assert names(steps)[-1] == name
    ending = conclude(PLAN, steps)
    assert (ending.outcome, ending.running) == (ReleaseOutcome.UNKNOWN, running)
    assert said in ending.reason


def test_a_previous_release_failing_its_own_gate_is_unknown_but_named():
    steps = walk(PLAN, {StepName.BENCH: step(StepName.BENCH, "failed"),
                        StepName.CHECK_GATE: step(StepName.CHECK_GATE, verdict=GateVerdict.FAIL, detail="slower")})  # fmt: skip
    ending = conclude(PLAN, steps)
    assert (ending.outcome, ending.running) == (ReleaseOutcome.UNKNOWN, "v1")
    assert "v1 is back but fails its own gate: slower" in ending.reason


def test_a_previous_release_without_a_bench_of_its_own_is_confirmed_by_a_clean_check():
    plan = Plan(version="v2", previous="v0", gated=True, check_gated=False, probes=True)
    steps = walk(plan, {StepName.GATE: step(StepName.GATE, verdict=GateVerdict.FAIL)})
    assert names(steps) == [*FORWARD, "rollback", "rollback_ready", "check"]
    ending = conclude(plan, steps)
    assert (ending.outcome, ending.running) == (ReleaseOutcome.ROLLED_BACK, "v0")
    assert "no bench of its own" in ending.reason


def test_with_nothing_to_roll_back_to_a_broken_release_is_unknown():
    plan = Plan(version="v1", previous=None, gated=False, check_gated=False, probes=True)
    never = walk(plan, {StepName.READY: step(StepName.READY, "timeout")})
    assert names(never) == ["deploy", "ready"]
    assert (conclude(plan, never).outcome, conclude(plan, never).running) == (ReleaseOutcome.UNKNOWN, None)
    broken = walk(plan, {StepName.BENCH: step(StepName.BENCH, "failed")})
    ending = conclude(plan, broken)
    assert (ending.outcome, ending.running) == (ReleaseOutcome.UNKNOWN, "v1")
    assert ending.reason.endswith("no previous release to roll back to")


def test_stopped_before_the_deploy_changed_nothing():
    assert conclude(PLAN, []) == Conclusion(ReleaseOutcome.NOT_DEPLOYED, "v1", "stopped (Ctrl-C) before the deploy began: nothing was changed")


# -- rendering ---------------------------------------------------------------------------------------------


def _release(version: str, status: ReleaseOutcome, running: str | None, **fields: object) -> ReleaseResult:
    return ReleaseResult(run_id=f"20261202-1200{len(version)}0-ab{len(version)}d", version=version,
                         previous=fields.pop("previous", "v1"), target={"url": "http://127.0.0.1:8080"}, status=status,
                         running=running, started_at=1_796_212_800.0, **fields)  # type: ignore[arg-type]  # fmt: skip


def test_history_lists_outcomes_gates_times_to_ready_rollbacks_and_what_runs():
    releases = [
        _release("v4", ReleaseOutcome.UNKNOWN, None, rolled_back=True),
        _release("v3", ReleaseOutcome.ROLLED_BACK, "v1", rolled_back=True, gate_verdict=GateVerdict.FAIL,
                 time_to_ready_s=12.34),
        _release("v2", ReleaseOutcome.KEPT, "v2", gate_verdict=GateVerdict.INCONCLUSIVE, time_to_ready_s=8.0),
        _release("v1", ReleaseOutcome.GOOD, "v1", previous=None, time_to_ready_s=9.5),
        _release("v0", ReleaseOutcome.RUNNING, None),
    ]  # fmt: skip
    console = Console(record=True, width=200)
    console.print(history_table(releases))
    lines = console.export_text().splitlines()
    row = {line.split()[1]: line for line in lines if line.startswith("│ v")}
    assert "unknown" in row["v4"] and row["v4"].count("unknown") == 2
    assert all(word in row["v3"] for word in ("rolled_back", "fail", "12.3", "v1"))
    assert all(word in row["v2"] for word in ("kept", "inconclusive", "8.0"))
    assert "good" in row["v1"] and "9.5" in row["v1"]
    assert "2026-12-02" in row["v1"] and "unknown" not in row["v0"]


def test_the_ending_says_which_release_runs():
    assert running_line(ReleaseOutcome.GOOD, "v2") == "running: v2"
    assert running_line(ReleaseOutcome.UNKNOWN, "v1") == "running: v1 (not confirmed good)"
    assert running_line(ReleaseOutcome.UNKNOWN, None).startswith("running: unknown")
    failed = ReleaseStep(name=StepName.ROLLBACK, status="failed", started_at=0, finished_at=2.5, detail="exited 1",
                         command="./deploy.sh v1", exit_code=1, output_tail="pulling\nno such image v1\n",
                         log_path="/logs/rollback.log")  # fmt: skip
    result = _release("v2", ReleaseOutcome.UNKNOWN, None, steps=[failed], reason="gate fail: x; then rollback failed")
    console = Console(record=True, width=160)
    render_release(result, console)
    text = console.export_text()
    assert "no such image v1" in text and "/logs/rollback.log" in text
    assert "outcome: unknown: gate fail: x; then rollback failed" in text
    assert text.rstrip().endswith("running: unknown (check the target by hand)")


# -- end to end, on the fake timing server -----------------------------------------------------------------

DEPLOY_SCRIPT = """#!/bin/sh
# deploy.sh VERSION: stop the release the PID file names, start VERSION on $PORT
dir=$(cd "$(dirname "$0")" && pwd)
if [ -f "$dir/server.pid" ]; then
  pid=$(cat "$dir/server.pid")
  kill -TERM "-$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" | cut -c1)" != Z ] && [ $i -lt 100 ]; do
    sleep 0.1; i=$((i+1))
  done
  kill -KILL "-$pid" 2>/dev/null
  rm -f "$dir/server.pid"
fi
case "$1" in
  good) setsid "$PYTHON" "$SERVER" --port "$PORT" --ttft-ms 20 --itl-ms 2 >"$dir/$1.log" 2>&1 </dev/null & ;;
  *) echo "no release $1"; exit 2 ;;
esac
echo $! > "$dir/server.pid"
echo "started $1 as $!"
"""


@pytest.fixture
def fake_releases(tmp_path: Path):
    """A deploy script for the timing server and a release file using it; the server it left running is
    stopped by its PID file afterwards, whatever the test did."""
    port = free_port()
    script = tmp_path / "deploy.sh"
    script.write_text(DEPLOY_SCRIPT.replace("$PORT", str(port)).replace("$PYTHON", sys.executable)
                      .replace("$SERVER", str(TIMING_SERVER)))  # fmt: skip
    script.chmod(0o755)
    release = {
        "target": f"http://127.0.0.1:{port}", "deploy": f"{script} {{version}}", "rollback": f"{script} {{previous}}",
        "bench": {"load": {"kind": "concurrency", "concurrency": 4}, "requests": 60, "duration_s": None,
                  "workload": {"input_tokens": {"kind": "fixed", "value": 16},
                               "output_tokens": {"kind": "fixed", "value": 8}}},
        "check_requests": 30, "probes": False, "timeouts": {"ready": "60s", "bench": "60s"},
    }  # fmt: skip
    (tmp_path / "release.yaml").write_text(yaml.safe_dump(release))
    try:
        yield tmp_path
    finally:
        pid_file = tmp_path / "server.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def _servewise(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "servewise", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=os.environ | {"COLUMNS": "200"})  # fmt: skip


@pytest.mark.slow
def test_ctrl_c_while_deploying_rolls_back_to_the_good_release(fake_releases: Path):
    store, file = str(fake_releases / "runs.db"), str(fake_releases / "release.yaml")
    first = _servewise("release", "run", "--file", file, "--version", "good", "--store", store, "--quiet")
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0 and "first release: recorded as the baseline" in out, out
    slow = yaml.safe_load(Path(file).read_text())
    slow["deploy"] = "sleep 60; " + slow["deploy"]
    Path(file).write_text(yaml.safe_dump(slow))
    second = _servewise("release", "run", "--file", file, "--version", "next", "--store", store, "--quiet")
    deadline = time.monotonic() + 30
    while len(list(fake_releases.glob("release-logs/*/deploy.log"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the deploy command of the second release is under way
    time.sleep(0.5)
    second.send_signal(signal.SIGINT)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 1, out
    assert "deploy interrupted: stopped (Ctrl-C); rolled back to good" in out and out.rstrip().endswith("running: good")
    history = subprocess.run([sys.executable, "-m", "servewise", "release", "history", "--store", store, "--json"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    newest, oldest = json.loads(history.stdout)
    assert (newest["version"], newest["status"], newest["running"], newest["interrupted"]) == (
        "next", "rolled_back", "good", True)
    assert [s["name"] for s in newest["steps"]] == ["deploy", "rollback", "rollback_ready", "check", "check_gate"]
    assert newest["steps"][0]["command"].startswith("sleep 60; ")
    assert (oldest["version"], oldest["status"], oldest["bench_run"]) == ("good", "good", newest["baseline_run"])
