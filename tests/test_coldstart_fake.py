"""Cold start against small scripted servers: phases from user regexes, a crash on start, a server that
never becomes ready, process-group cleanup (also on Ctrl-C and SIGTERM-ignoring servers), attach mode,
cache handling and storage."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import typer
from typer.testing import CliRunner

from servewise.cli.app import ServewiseGroup
from servewise.cli.app import app as servewise_app
from servewise.cli.coldstart import register
from servewise.coldstart import ColdstartConfig, ColdstartError, Endpoint, parse_user_phase
from servewise.coldstart.caches import CacheError, check_drop_caches
from servewise.flows.coldstart import run_coldstart
from servewise.store import RunStore

FIXTURES = Path(__file__).parent / "fixtures" / "coldstart"
FAKE = str(FIXTURES / "fake_server.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake(port: int, *args: str) -> tuple[str, ...]:
    return (sys.executable, FAKE, "--port", str(port), *args)


def endpoint(port: int) -> Endpoint:
    return Endpoint(
        base_url=f"http://127.0.0.1:{port}", ready_url=f"http://127.0.0.1:{port}/health", max_tokens=4
    )


def config(port: int, tmp_path: Path, *args: str, **kw: Any) -> ColdstartConfig:
    kw.setdefault("runs", 1)
    kw.setdefault("timeout_s", 30.0)
    kw.setdefault("warm_requests", 2)
    kw.setdefault("grace_s", 3.0)
    return ColdstartConfig(
        endpoint=endpoint(port), command=fake(port, *args), log_dir=tmp_path / "logs", **kw
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    with RunStore(tmp_path / "runs.db") as s:
        yield s


def cli() -> typer.Typer:
    app = typer.Typer(cls=ServewiseGroup)
    register(app)

    @app.callback()
    def main() -> None:
        """servewise"""

    return app


def gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def names(result: dict[str, Any]) -> list[str]:
    return [e["name"] for e in result["events"]]


def test_user_phases_appear_in_order_with_arrival_times(tmp_path: Path, store: RunStore) -> None:
    port = free_port()
    cfg = config(
        port, tmp_path,
        "--line", "0.4:step A: tokenizer ready",
        "--line", "1.0:step B: checkpoint restored in 0.55 s",
        "--listen-after", "1.3", "--healthy-after", "1.8",
        user_phases=(
            parse_user_phase("tokenizer=step A"),
            parse_user_phase(r"restore=checkpoint restored in (?P<seconds>[\d.]+) s"),
        ),
        runs=2,
    )  # fmt: skip
    summary = run_coldstart(cfg, store).to_json()
    assert summary["status"] == "ok" and summary["runs_ok"] == 2
    for run in summary["runs"]:
        order = names(run)
        assert order[:2] == ["tokenizer", "restore"]
        assert order[2:] == ["port_open", "health_ok", "models_listed", "first_token", "first_ok"]
        at = {e["name"]: e["t"] for e in run["events"]}
        # the lines were printed 0.6 s apart; arrival stamps keep that gap (loose: a busy 2-core machine)
        assert 0.4 < at["restore"] - at["tokenizer"] < 1.5
        assert at["health_ok"] - at["port_open"] > 0.2  # /health said 503 for ~0.5 s after listening
        restore = next(e for e in run["events"] if e["name"] == "restore")
        assert restore["reported_s"] == pytest.approx(0.55) and "checkpoint restored" in restore["line"]
        assert run["startup_s"] == pytest.approx(at["first_ok"])
        assert run["first_request"]["ttft_ms"] > 0 and run["warm"]["requests"] == 2
        assert sum(p["duration_s"] for p in run["phases"]) == pytest.approx(run["startup_s"])
    agg = summary["aggregate"]
    assert agg["phases"]["restore"]["count"] == 2 and agg["reported"]["restore"]["median"] == pytest.approx(
        0.55
    )
    assert {f["key"] for f in summary["verdicts"]} >= {
        "repeatability",
        "dominant_phase",
        "io_bound",
        "warm_up",
    }

    stored = store.get_run(summary["run_id"])
    assert (stored.kind, stored.status) == ("coldstart", "ok")
    assert stored.export_json() is not None and stored.export_json()["runs_ok"] == 2
    samples = store.samples(summary["run_id"], source="coldstart")
    launches = {dict(s.labels)["launch"] for s in samples}
    assert launches == {"1", "2"}
    assert {"rss_bytes", "cpu_percent", "host_disk_read_bytes"} <= {s.name for s in samples}
    rss = [s.value for s in samples if s.name == "rss_bytes"]
    assert max(rss) > 10e6  # a Python process with aiohttp loaded
    # ~10 Hz over ~2 s per start
    assert len([s for s in samples if s.name == "rss_bytes" and dict(s.labels)["launch"] == "1"]) >= 8

    # `runs show` lays the stored cold start out as `coldstart` printed it, not as raw JSON
    shown = CliRunner().invoke(servewise_app, ["runs", "show", summary["run_id"], "--store", str(store.path)],
                               env={"COLUMNS": "160", "NO_COLOR": "1"})
    assert shown.exit_code == 0, shown.output
    assert "restore" in shown.output and "repeatability:" in shown.output and not shown.output.lstrip().startswith("{")


def test_crash_on_start_is_reported_with_its_log_and_exit_code(tmp_path: Path, store: RunStore) -> None:
    port = free_port()
    summary = run_coldstart(config(port, tmp_path, "--crash-after", "0.2", runs=3), store).to_json()
    assert summary["status"] == "failed"
    assert len(summary["runs"]) == 1  # no point starting again
    run = summary["runs"][0]
    assert run["status"] == "crashed" and run["exit_code"] == 3
    assert "code 3" in run["error"]
    assert any("could not load the model" in line for line in run["log_tail"])
    assert store.get_run(summary["run_id"]).status == "failed"


def test_never_ready_times_out_shows_the_log_and_exits_nonzero(tmp_path: Path) -> None:
    port = free_port()
    pid_file = tmp_path / "child.pid"
    result = CliRunner().invoke(
        cli(),
        [
            "coldstart", "--runs", "2", "--timeout", "2.5", "--grace", "2",
            "--ready", f"http://127.0.0.1:{port}/health", "--store", str(tmp_path / "runs.db"),
            "--json", str(tmp_path / "out.json"),
            "--", *fake(port, "--never-ready", "--child", "--pid-file", str(pid_file)),
        ],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "not ready after 2.5 s" in result.output
    assert "health: HTTP 503" in result.output
    assert "listening on http://127.0.0.1" in result.output  # the last log lines are shown
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["status"] == "failed" and out["runs"][0]["status"] == "timeout"
    assert gone(int(pid_file.read_text())), "the server's child outlived the stop"
    assert gone(out["runs"][0]["pid"])


def test_a_server_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path, store: RunStore) -> None:
    port = free_port()
    started = time.monotonic()
    summary = run_coldstart(config(port, tmp_path, "--ignore-sigterm", grace_s=1.0, warm_requests=0), store).to_json()
    assert summary["status"] == "ok"
    run = summary["runs"][0]
    assert run["exit_code"] == -signal.SIGKILL
    assert gone(run["pid"])
    assert time.monotonic() - started < 20


def test_ctrl_c_stops_the_server_and_stores_the_run(tmp_path: Path, store: RunStore) -> None:
    port = free_port()
    pid_file = tmp_path / "child.pid"

    def interrupt(progress: Any) -> None:
        if progress.stage == "health":
            raise KeyboardInterrupt

    cfg = config(port, tmp_path, "--healthy-after", "30", "--child", "--pid-file", str(pid_file), runs=3)
    summary = run_coldstart(cfg, store, on_progress=interrupt).to_json()
    assert summary["status"] == "interrupted"
    assert [r["status"] for r in summary["runs"]] == ["interrupted"]
    assert gone(summary["runs"][0]["pid"]) and gone(int(pid_file.read_text()))
    assert store.get_run(summary["run_id"]).status == "interrupted"


def test_sigint_to_the_cli_process_stops_the_server(tmp_path: Path) -> None:
    port = free_port()
    pid_file = tmp_path / "child.pid"
    proc = subprocess.Popen(
        [
            sys.executable, str(FIXTURES / "cli_app.py"), "coldstart", "--timeout", "60", "--grace", "2",
            "--ready", f"http://127.0.0.1:{port}/health", "--store", str(tmp_path / "runs.db"),
            "--", *fake(port, "--never-ready", "--child", "--pid-file", str(pid_file)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pid_file.exists(), "the fake server never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out.decode()
    assert b"interrupted" in out
    assert gone(int(pid_file.read_text()))
    with RunStore(tmp_path / "runs.db") as s:
        (run,) = s.list_runs(kind="coldstart")
        assert run.status == "interrupted"
        assert run.export_json() is not None and gone(run.export_json()["runs"][0]["pid"])


def test_attach_measures_a_server_started_elsewhere_and_leaves_it_running(
    tmp_path: Path, store: RunStore
) -> None:
    port = free_port()
    server = subprocess.Popen(
        list(fake(port, "--listen-after", "1.0")), stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        cfg = ColdstartConfig(
            endpoint=endpoint(port), attach_pid=server.pid, runs=4, log_dir=tmp_path, timeout_s=30
        )
        summary = run_coldstart(cfg, store).to_json()
        assert summary["status"] == "ok" and len(summary["runs"]) == 1
        run = summary["runs"][0]
        assert names(run)[0] == "attached" and "port_open" in names(run)
        at = {e["name"]: e["t"] for e in run["events"]}
        # times count from the process's own start, so the port opened about 1 s in (not at attach time)
        assert 0.8 < at["port_open"] < 10
        assert server.poll() is None, "attach must not stop the server"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_attach_follows_the_servers_log_file_for_phases(tmp_path: Path, store: RunStore) -> None:
    """A server started elsewhere with its output in a file (`> server.log`): the lines written after
    attaching are timed as they arrive, so phases appear as they do for a launched server."""
    port = free_port()
    log_file = tmp_path / "server.log"
    log_file.write_text("written before attach: step A: tokenizer ready\n")
    with log_file.open("ab") as out:
        server = subprocess.Popen(
            list(fake(port, "--line", "0.8:step B: checkpoint restored in 0.3 s", "--listen-after", "1.2")),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        cfg = ColdstartConfig(
            endpoint=endpoint(port), attach_pid=server.pid, attach_log=log_file, log_dir=tmp_path / "logs",
            timeout_s=30, user_phases=(parse_user_phase("tokenizer=step A"), parse_user_phase("restore=step B")),
        )  # fmt: skip
        summary = run_coldstart(cfg, store).to_json()
        assert summary["status"] == "ok", summary
        run = summary["runs"][0]
        at = {e["name"]: e["t"] for e in run["events"]}
        assert "tokenizer" not in at  # written before attach: it cannot be timed, so it is not read
        assert 0.5 < at["restore"] < at["port_open"] < 10  # from the process's start, as it arrived
        assert "checkpoint restored" in Path(run["log_path"]).read_text()
        assert server.poll() is None, "attach must not stop the server"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_port_already_taken_refuses_before_launching(tmp_path: Path, store: RunStore) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ColdstartError, match="already answers"):
            run_coldstart(config(port, tmp_path), store)
    assert store.list_runs(kind="coldstart") == []


def test_compile_cache_state_and_clear(tmp_path: Path, store: RunStore) -> None:
    port = free_port()
    cache = tmp_path / "compile-cache"
    keep = config(port, tmp_path, "--write-cache", str(cache), runs=2, warm_requests=0, compile_cache=cache)
    states = [r["cache"]["compile_cache"]["existed"] for r in run_coldstart(keep, store).to_json()["runs"]]
    assert states == [False, True]  # the first start filled it
    cleared = config(
        port,
        tmp_path,
        "--write-cache",
        str(cache),
        runs=2,
        warm_requests=0,
        compile_cache=cache,
        clear_dirs=(cache,),
    )
    runs = run_coldstart(cleared, store).to_json()["runs"]
    assert [r["cache"]["compile_cache"]["existed"] for r in runs] == [False, False]
    assert [r["cache"]["cleared"] for r in runs] == [[str(cache)], [str(cache)]]


def test_model_files_are_sized_and_their_page_cache_share_recorded(tmp_path: Path, store: RunStore) -> None:
    port = free_port()
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(os.urandom(3_000_000))
    (model / "config.json").write_text("{}")
    summary = run_coldstart(config(port, tmp_path, runs=1, warm_requests=0, model_path=model), store).to_json()
    run = summary["runs"][0]
    assert run["model_bytes"] == 3_000_000  # weights only, not config.json
    share = run["cache"]["model_resident_share"]
    assert share is None or 0.0 <= share <= 1.0
    io = next(f for f in summary["verdicts"] if f["key"] == "io_bound")
    assert io["verdict"] != "inconclusive" and "3.0 MB model" in io["evidence"]


def test_drop_caches_is_refused_clearly_where_it_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match=r"drop_caches|root"):
        check_drop_caches(tmp_path / "no-such-dir" / "drop_caches")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--", "python", "x.py"], "--ready"),
        (["--ready", "http://127.0.0.1:1/health", "--phase", "oops", "--", "python"], "NAME=REGEX"),
        (["--ready", "http://127.0.0.1:1/health", "--attach", "1", "--", "python"], "not both"),
        (["--ready", "http://127.0.0.1:1/health", "--log", "x.log", "--", "python"], "--log follows the log"),
        (["--ready", "http://127.0.0.1:1/health", "--attach", "1", "--log", "/nonexistent/x.log"], "--log: no file"),
        (["--ready", "not a url", "--", "python"], "not an http"),
        (["--ready", "http://127.0.0.1:1/health"], "server command"),
    ],
)
def test_usage_errors_exit_2_with_one_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli(), ["coldstart", "--store", str(tmp_path / "runs.db"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
