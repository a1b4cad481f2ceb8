"""`servewise diagnose RUN` recomputes the diagnosis from the store."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from servewise.cli import diagnose as diagnose_cli
from servewise.cli.app import ServewiseGroup
from servewise.results import RunResult
from servewise.store import RunStore
from test_diagnosis import RunBuilder, summary


def make_app() -> typer.Typer:
    app = typer.Typer(cls=ServewiseGroup)
    diagnose_cli.register(app)

    @app.callback()
    def _root() -> None:
        """Keep `diagnose` a subcommand even when it is the only one."""

    return app


def store_run(path, samples, run_summary) -> str:
    with RunStore(path) as store:
        run_id = store.create_run(
            kind="bench", spec={}, labels={}, tool_version="test", target={}, environment={}
        )
        store.append_samples(run_id, samples)
        store.finish_run(run_id, RunResult.model_validate(run_summary))
    return run_id


def cpu_bound_run() -> RunBuilder:
    run = RunBuilder()
    run.set("process", "cpu_percent", run.noisy(190, 5)).set("host", "cpu_percent_total", run.noisy(97, 2))
    return run


def test_diagnose_prints_the_table_and_primary(tmp_path):
    db = tmp_path / "runs.db"
    run_id = store_run(db, cpu_bound_run().samples(), summary())
    result = CliRunner().invoke(make_app(), ["diagnose", run_id, "--store", str(db)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "primary bottleneck: server CPU" in result.output
    assert "ruled out" in result.output and "bottleneck" in result.output
    assert "give the server more cores" in result.output


def test_diagnose_json_matches_the_shape(tmp_path):
    db = tmp_path / "runs.db"
    run_id = store_run(
        db, RunBuilder().samples(), summary(total=200, failed=100, by_class={"http_status": 100})
    )
    result = CliRunner().invoke(make_app(), ["diagnose", run_id[-4:], "--store", str(db), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["primary"] == "errors"
    assert {f["resource"] for f in out["findings"]} >= {"load_generator", "server_cpu", "network", "errors"}


def test_unknown_run_is_a_usage_error_without_traceback(tmp_path):
    result = CliRunner().invoke(make_app(), ["diagnose", "nope", "--store", str(tmp_path / "runs.db")])
    assert result.exit_code == 2
    assert "no run 'nope'" in result.output
    assert "Traceback" not in result.output


def test_run_without_any_data_is_inconclusive(tmp_path):
    db = tmp_path / "runs.db"
    with RunStore(db) as store:
        run_id = store.create_run(
            kind="bench", spec={}, labels={}, tool_version="t", target={}, environment={}
        )
    result = CliRunner().invoke(make_app(), ["diagnose", run_id, "--store", str(db)])
    assert result.exit_code == 3
    assert "no data" in result.output
