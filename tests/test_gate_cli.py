"""`servewise gate` against runs written into a temporary store: resolution, exit codes, JSON, --serve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from gate_service import get_json, serve_gate
from servewise.analysis import gate_options
from servewise.analysis.metrics import MetricsAccumulator
from servewise.cli import gate as gate_cli
from servewise.cli.app import ServewiseGroup
from servewise.errors import UsageError
from servewise.flows.refs import resolve_run
from servewise.records import ErrorClass, Phase, RequestRecord, TokenSource
from servewise.results import ClientCheck, RepeatNote, RunResult
from servewise.store import RunStore

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
ENVIRONMENT = {"hostname": "bench-1", "cpu_model": "Xeon", "python": "3.11.9", "gpus": []}
TARGET = {"url": "http://127.0.0.1:8000", "api": "chat", "model": "tiny", "server": {"engine": "llama.cpp"}}


def make_records(
    seed: int, requests: int = 400, *, ttft_scale: float = 1.0, failed: int = 0, tokens: int = 16
) -> list[RequestRecord]:
    """Poisson-ish arrivals at 4 req/s with lognormal TTFT and steady decode; the last ``failed`` fail."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(requests):
        t_send = i * 0.25 + rng.uniform(0, 0.01)
        if i >= requests - failed:
            records.append(
                RequestRecord(
                    index=i,
                    t_sched=t_send,
                    t_send=t_send,
                    t_end=t_send + 0.01,
                    status=503,
                    error=ErrorClass.HTTP_STATUS,
                    phase=Phase.STEADY,
                )
            )
            continue
        ttft = rng.lognormal(np.log(0.15), 0.2) * ttft_scale
        gaps = rng.lognormal(np.log(0.02), 0.1, tokens - 1)
        chunks = list(t_send + ttft + np.concatenate([[0.0], np.cumsum(gaps)]))
        records.append(
            RequestRecord(
                index=i,
                t_sched=t_send,
                t_send=t_send,
                t_first=chunks[0],
                t_end=chunks[-1],
                chunk_times=chunks,
                input_tokens=64,
                output_tokens=tokens,
                output_tokens_source=TokenSource.USAGE,
                status=200,
                phase=Phase.STEADY,
            )
        )
    return records


def add_run(
    store: RunStore, records: list[RequestRecord], labels: dict[str, str] | None = None, *,
    environment: dict | None = None, seed: int = 42, load: dict | None = None,
) -> str:  # fmt: skip
    spec = {
        "target": {"url": TARGET["url"]},
        "workload": {"seed": seed},
        "load": load or {"kind": "poisson", "rate": 4},
    }
    run_id = store.create_run(
        kind="bench", spec=spec, labels=labels or {}, tool_version="0.1.0", target=TARGET,
        environment=environment or ENVIRONMENT,
    )  # fmt: skip
    store.append_records(run_id, records)
    store.finish_run(
        run_id, RunResult(run_id=run_id, status="ok", metrics=MetricsAccumulator().add_all(records).result())
    )
    return run_id


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer(cls=ServewiseGroup)
    gate_cli.register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing the app into `gate` itself
        """unused"""

    return app


def invoke(app: typer.Typer, store_path: Path, *args: str):
    return CliRunner().invoke(app, ["gate", "--store", str(store_path), *args])


#: These runs are drawn without any run-to-run drift: a team on such a host says so, and one run a side decides.
QUIET = ("--between-run", "0.02")


def test_like_with_like_passes_and_records_the_verdict(app, store_path):
    with RunStore(store_path) as store:
        base = add_run(store, make_records(1), {"release": "v1"})
        cand = add_run(store, make_records(2), {"release": "v2"})
    result = invoke(app, store_path, "--baseline", "label:release=v1", "--candidate", cand, "--json", *QUIET)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["verdict"] == "pass"
    assert report["baseline"]["run_id"] == base
    assert report["fingerprint_diff"] == []
    assert report["rollback_to"] is None
    names = {m["name"] for m in report["metrics"]}
    assert {"ttft_p50", "ttft_p95", "tpot_p50", "itl_p95", "e2e_p95", "throughput", "errors"} <= names
    assert all(
        {"name", "baseline", "candidate", "change_pct", "ci", "verdict"} <= set(m) for m in report["metrics"]
    )
    with RunStore(store_path) as store:
        assert store.get_run(cand).export_json()["gate"]["verdict"] == "pass"
        assert store.get_run(cand).export_json()["metrics"]["requests_ok"] == 400


def test_regression_fails_with_rollback_to_the_last_run_that_passed(app, store_path):
    with RunStore(store_path) as store:
        add_run(store, make_records(1), {"release": "v1"})
        good = add_run(store, make_records(2), {"release": "v2"})
        bad = add_run(store, make_records(3, ttft_scale=1.5), {"release": "v3"})
    assert invoke(app, store_path, "-b", "label:release=v1", "-c", good, *QUIET).exit_code == 0
    result = invoke(app, store_path, "-b", "latest-pass", "-c", bad, "--json", *QUIET)
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["verdict"] == "fail"
    assert report["baseline"]["run_id"] == good  # latest-pass
    assert report["rollback_to"] == {"run_id": good, "labels": {"release": "v2"}}
    failed = {m["name"] for m in report["metrics"] if m["verdict"] == "fail" and m["gated"]}
    assert "ttft_p50" in failed
    ttft = next(m for m in report["metrics"] if m["name"] == "ttft_p50")
    assert ttft["ci"][0] > 10 and ttft["change_pct"] == pytest.approx(50, abs=8)
    # a failed candidate is never the next latest-pass
    with RunStore(store_path) as store:
        assert resolve_run(store, "latest-pass").id == good


def test_label_selector_takes_the_newest_match_other_than_the_candidate(store_path):
    with RunStore(store_path) as store:
        older = add_run(store, make_records(1, 50), {"release": "v1", "model": "a"})
        newer = add_run(store, make_records(2, 50), {"release": "v1", "model": "a"})
        add_run(store, make_records(3, 50), {"release": "v1", "model": "b"})
        assert resolve_run(store, "label:release=v1,model=a").id == newer
        assert resolve_run(store, "label:release=v1,model=a", exclude=newer).id == older
        with pytest.raises(UsageError, match="no run with label:release=v9"):
            resolve_run(store, "label:release=v9")
        with pytest.raises(UsageError, match="passed a gate"):
            resolve_run(store, "latest-pass")


def test_all_errors_candidate_fails_and_table_names_it(app, store_path):
    with RunStore(store_path) as store:
        add_run(store, make_records(1), {"release": "v1"})
        cand = add_run(store, make_records(2, failed=400))
    result = invoke(app, store_path, "-b", "label:release=v1", "-c", cand)
    assert result.exit_code == 1
    assert "errors" in result.output and "FAIL" in result.output


def test_tiny_runs_are_inconclusive(app, store_path):
    with RunStore(store_path) as store:
        base = add_run(store, make_records(1, 8))
        cand = add_run(store, make_records(2, 8, ttft_scale=2.0))
    result = invoke(app, store_path, "-b", base, "-c", cand, "--json")
    assert result.exit_code == 3, result.output
    assert json.loads(result.output)["verdict"] == "inconclusive"


def test_empty_candidate_is_inconclusive_not_pass(app, store_path):
    with RunStore(store_path) as store:
        base = add_run(store, make_records(1))
        cand = add_run(store, [])
    assert invoke(app, store_path, "-b", base, "-c", cand).exit_code == 3


def test_slo_breach_fails_at_once(app, store_path):
    with RunStore(store_path) as store:
        base = add_run(store, make_records(1))
        cand = add_run(store, make_records(2))
    result = invoke(app, store_path, "-b", base, "-c", cand, "--slo", "ttft_p50=50ms", "--json")
    assert result.exit_code == 1
    slo = next(m for m in json.loads(result.output)["metrics"] if m["name"] == "slo ttft_p50")
    assert slo["verdict"] == "fail" and slo["candidate"] > 50


def test_unlike_runs_are_flagged_in_table_and_json(app, store_path):
    with RunStore(store_path) as store:
        base = add_run(store, make_records(1))
        cand = add_run(
            store, make_records(2), environment={**ENVIRONMENT, "gpus": [{"name": "H100"}]}, seed=7
        )
    result = invoke(app, store_path, "-b", base, "-c", cand, "--json")
    fields = {d["field"] for d in json.loads(result.output)["fingerprint_diff"]}
    assert {"environment.gpus", "workload.seed", "spec_hash"} <= fields
    table = invoke(app, store_path, "-b", base, "-c", cand, "--no-record")
    assert "warning" in table.output and "workload.seed" in table.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["-b", "nope-run"], "no run"),
        (["-b", "latest", "--max-regression", "ttft=10%"], "--max-regression"),
        (["-b", "latest", "--max-regression", "ttft_p95=lots"], "percentage"),
        (["-b", "latest", "--slo", "ttft_p95"], "slo"),
        (["-b", "label:"], "label selector"),
        (["-b", "latest", "--confidence", "2"], "--confidence"),
        (["-b", "latest", "--between-run", "3"], "--between-run"),
        (["-b", "latest-pass"], "no run that passed a gate"),
        (["-b", "nope-run", "--first-run-is-baseline"], "no run"),  # an id is never "no baseline yet"
        ([], "--baseline is required"),
    ],
)
def test_usage_errors_exit_2_with_one_line(app, store_path, args, message):
    with RunStore(store_path) as store:
        add_run(store, make_records(1, 30))
        add_run(store, make_records(2, 30))
    result = invoke(app, store_path, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_max_regression_parsing():
    assert gate_options.parse_max_regression(
        "ttft_p95=10%, throughput=-5%,errors=0.5%,ttft_p99=20"
    ) == pytest.approx({"ttft_p95": 0.10, "throughput": 0.05, "errors": 0.005, "ttft_p99": 0.20})


def test_web_provider_serves_the_json_verdict(store_path):
    with RunStore(store_path) as store:
        add_run(store, make_records(1), {"release": "stable"})
        add_run(store, make_records(2, ttft_scale=3.0), {"release": "canary"})  # gross: fails on one run a side
    server, base = serve_gate(store_path)
    try:
        status, report = get_json(f"{base}/gate?baseline=label:release=stable&candidate=label:release=canary")
        assert status == 200 and report["verdict"] == "fail"
        assert get_json(f"{base}/healthz") == (200, {"status": "ok"})
        status, report = get_json(f"{base}/gate?candidate=latest")
        assert status == 400 and report["verdict"] == "error" and "baseline" in report["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_argo_templates_match_what_the_gate_accepts(app, store_path):
    documents = [
        doc for path in sorted(DEPLOY.glob("argo/*.yaml")) for doc in yaml.safe_load_all(path.read_text())
    ]
    templates = {
        doc["metadata"]["name"]: doc for doc in documents if doc and doc["kind"] == "AnalysisTemplate"
    }
    job = templates["servewise-gate-job"]["spec"]["metrics"][0]
    container = job["provider"]["job"]["spec"]["template"]["spec"]["containers"][0]
    argv = [*container["command"], *container.get("args", [])]
    assert argv[:2] == ["servewise", "gate"]
    with RunStore(store_path) as store:
        add_run(store, make_records(1), {"release": "stable"})
        add_run(store, make_records(2), {"release": "canary"})
    assert argv[argv.index("--repeats") + 1] == "3"  # both releases are up during a canary: rerun both
    at = argv.index("--repeats")
    argv = argv[:at] + argv[at + 2:]  # no engines here to rerun against
    args = [a.replace("{{args.baseline}}", "label:release=stable").replace("{{args.candidate}}", "label:release=canary")
            for a in argv[2:] if not a.startswith("--store")]  # fmt: skip
    # one run a side under the default between-run prior: accepted, and like with like never fails
    assert invoke(app, store_path, *args).exit_code in (0, 3)

    web = templates["servewise-gate-web"]["spec"]["metrics"][0]
    assert web["provider"]["web"]["jsonPath"] == "{$.verdict}"
    assert "pass" in web["successCondition"] and "fail" in web["failureCondition"]
    url = web["provider"]["web"]["url"].replace("{{args.baseline}}", "label:release=stable")
    url = url.replace("{{args.candidate}}", "label:release=canary")
    server, base = serve_gate(store_path)
    try:
        path = url.split("://", 1)[1].split("/", 1)[1]
        status, report = get_json(f"{base}/{path}")
        assert status == 200 and report["verdict"] in ("pass", "inconclusive")
    finally:
        server.shutdown()
        server.server_close()


def test_github_actions_step_runs_the_gate():
    workflow = yaml.safe_load((DEPLOY / "github-actions" / "servewise-gate.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    assert any("servewise gate" in step.get("run", "") for step in steps)


def test_client_limited_run_makes_the_gate_inconclusive(app, store_path):
    with RunStore(store_path) as store:
        base = add_run(store, make_records(1))
        cand = add_run(store, make_records(2))
        summary = store.get_run(cand).measured
        store.finish_run(
            cand, summary.model_copy(update={"client": ClientCheck(limited=True, reason="schedule lag p99 90 ms > 10 ms")})
        )
    result = invoke(app, store_path, "-b", base, "-c", cand, "--json")
    assert result.exit_code == 3
    assert "client-limited (schedule lag p99 90 ms" in json.loads(result.output)["reason"]


def test_runs_of_different_workloads_are_refused_unless_allowed(app, store_path):
    with RunStore(store_path) as store:
        base = add_run(store, make_records(1))
        cand = add_run(store, make_records(2), load={"kind": "sessions", "users": 4, "turns": {"kind": "fixed", "value": 3}})
    refused = invoke(app, store_path, "-b", base, "-c", cand, "--no-record")
    assert refused.exit_code == 2 and "different workloads" in refused.output and "load.kind" in refused.output
    allowed = invoke(app, store_path, "-b", base, "-c", cand, "--no-record", "--allow-different-workload", "--json")
    assert allowed.exit_code in (0, 1, 3), allowed.output
    assert "spec_hash" in {d["field"] for d in json.loads(allowed.output)["fingerprint_diff"]}


def test_a_fresh_store_records_the_first_run_as_the_baseline(app, store_path):
    """CI's first run: latest-pass matches nothing, so the candidate becomes the baseline the next run gates
    against; an SLO the first run breaks still fails it."""
    with RunStore(store_path) as store:
        first = add_run(store, make_records(1), {"release": "v1"})
    result = invoke(app, store_path, "-b", "latest-pass", "-c", first, "--first-run-is-baseline", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["verdict"] == "pass" and report["baseline"] is None
    assert "recorded as the baseline" in report["reason"]
    with RunStore(store_path) as store:
        assert resolve_run(store, "latest-pass").id == first
        second = add_run(store, make_records(2, ttft_scale=3.0), {"release": "v2"})
    result = invoke(app, store_path, "-b", "latest-pass", "-c", second, "--first-run-is-baseline", "--json")
    assert result.exit_code == 1 and json.loads(result.output)["baseline"]["run_id"] == first
    fresh = store_path.with_name("fresh.db")
    with RunStore(fresh) as store:
        slow = add_run(store, make_records(3, ttft_scale=3.0))
    result = invoke(app, fresh, "-b", "latest-pass", "-c", slow, "--first-run-is-baseline", "--slo", "ttft_p95=200ms")
    assert result.exit_code == 1 and "slo ttft_p95" in result.output


def test_a_runs_repeat_group_is_one_side(app, store_path):
    """Runs noted as one repeat group all count: the gate measures their spread instead of assuming it."""
    with RunStore(store_path) as store:
        base = [add_run(store, make_records(10 + i), {"release": "v1"}) for i in range(4)]
        cand = [add_run(store, make_records(20 + i), {"release": "v2"}) for i in range(4)]
        for group in (base, cand):
            for run_id in group:
                store.annotate(run_id, RepeatNote(spread={}, group=group))
    result = invoke(app, store_path, "-b", base[0], "-c", cand[0], "--json")
    report = json.loads(result.output)
    assert report["baseline_runs"] == base and report["candidate_runs"] == cand
    ttft = next(m for m in report["metrics"] if m["name"] == "ttft_p50")
    assert ttft["noise_floor_pct"] < 10  # the groups' own spread (none here) pulls the prior's 10% down
    assert "runs: 4 baseline" in invoke(app, store_path, "-b", base[0], "-c", cand[0]).output
