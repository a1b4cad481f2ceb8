"""`servewise stage`, `servewise probe` and `servewise report` through Typer's runner, on a real store."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import pytest
import typer
from aiohttp import web
from typer.testing import CliRunner

from report_fixtures import store_full_run
from servewise.cli import report as report_cli
from servewise.cli import stage as stage_cli
from servewise.cli.app import ServewiseGroup
from servewise.store import RunStore
from test_probes import KEY, bad_app, good_app


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer(cls=ServewiseGroup)
    stage_cli.register(app)
    report_cli.register(app)
    return app


def _serve_in_thread(app: web.Application) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


@pytest.fixture
def good_url() -> Iterator[str]:
    yield from _serve_in_thread(good_app())


@pytest.fixture
def bad_url() -> Iterator[str]:
    yield from _serve_in_thread(bad_app())


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_stage_probes_attaches_and_report_shows_it(cli, tmp_path, good_url, monkeypatch):
    db = tmp_path / "runs.db"
    run_id = store_full_run(db)
    answers = tmp_path / "answers.yaml"
    answers.write_text("users_depend: yes\nsla: no\n")
    monkeypatch.setenv("SW_KEY", KEY)
    result = CliRunner().invoke(
        cli,
        [
            "stage",
            good_url,
            "--answers",
            str(answers),
            "--store",
            str(db),
            "--api-key-env",
            "SW_KEY",
            "--burst",
            "8",
            "--attach",
            run_id,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["stage"] == "early product"
    assert any("depend on the system: yes" in r and "users_depend: yes" in r for r in data["reasons"])
    assert {p["name"]: p["status"] for p in data["probes"]}["bad_json"] == "pass"
    assert KEY not in result.output
    with RunStore(db) as store:
        summary = store.get_run(run_id).export_json()
    assert summary["stage"]["stage"] == "early product" and summary["probes"]

    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", run_id, "-o", str(out), "--store", str(db)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "Stage: early product" in html and KEY not in html


def test_stage_human_output_and_history_only(cli, tmp_path):
    db = tmp_path / "runs.db"
    store_full_run(db)
    result = CliRunner().invoke(cli, ["stage", "--store", str(db)])
    assert result.exit_code == 0, result.output
    assert "Stage: prototype" in result.output and "Readiness checklist" in result.output


def test_stage_usage_errors_are_one_line(cli, tmp_path):
    bad = tmp_path / "answers.yaml"
    bad.write_text("users_depnd: yes\n")
    result = CliRunner().invoke(cli, ["stage", "--answers", str(bad), "--store", str(tmp_path / "r.db")])
    assert result.exit_code == 2 and "unknown question 'users_depnd'" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(
        cli, ["stage", "--api-key-env", "SW_NOT_SET_ANYWHERE", "--store", str(tmp_path / "r.db")]
    )
    assert result.exit_code == 2 and "SW_NOT_SET_ANYWHERE" in result.output
    template = tmp_path / "new.yaml"
    result = CliRunner().invoke(cli, ["stage", "--init-answers", str(template)])
    assert result.exit_code == 0 and "users_depend: unknown" in template.read_text()


def test_stage_and_probe_unreachable_exit_3(cli, tmp_path):
    url = _closed_port_url()
    result = CliRunner().invoke(cli, ["stage", url, "--store", str(tmp_path / "r.db")])
    assert result.exit_code == 3 and "unreachable" in result.output
    assert CliRunner().invoke(cli, ["probe", url]).exit_code == 3


def test_probe_exit_1_on_failures(cli, bad_url):
    result = CliRunner().invoke(cli, ["probe", bad_url, "--burst", "0", "--timeout", "3", "--json"])
    assert result.exit_code == 1
    statuses = {r["name"]: r["status"] for r in json.loads(result.output)}
    assert statuses["bad_json"] == "fail" and statuses["overload"] == "unknown"
    assert CliRunner().invoke(cli, ["probe", "localhost:8000"]).exit_code == 2


def test_report_errors(cli, tmp_path):
    db = tmp_path / "runs.db"
    run_id = store_full_run(db)
    result = CliRunner().invoke(cli, ["report", "nope-no-such-run", "--store", str(db)])
    assert result.exit_code == 2 and "no run" in result.output
    (tmp_path / "plan.json").write_text("{not json")
    result = CliRunner().invoke(
        cli, ["report", run_id, "--plan", str(tmp_path / "plan.json"), "--store", str(db)]
    )
    assert result.exit_code == 2 and "not JSON" in result.output
    result = CliRunner().invoke(cli, ["report", run_id, "--coldstart", "latest", "--store", str(db)])
    assert result.exit_code == 2 and "not a coldstart run" in result.output
