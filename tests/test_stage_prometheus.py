"""The stage and the outgrown forecast against a real Prometheus holding weeks of backfilled production
traffic (diurnal and weekly cycles, growth, noise, an outage; tests/fixtures/prom_history.py), with the run
history in a real store: each of the four stages is reached from evidence alone (answers only for an SLA
and on-call), the crossing date lands within 10% of the synthetic history's true crossing, and an empty
Prometheus is said to be empty."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fixtures.prom_history import TrafficShape, prometheus_with_history
from servewise.analysis.stage import Stage
from servewise.analysis.stage.traffic import iso_date
from servewise.cli import stage as stage_cli
from servewise.cli.app import ServewiseGroup
from servewise.flows.stage import assess, build_history, probe_config
from servewise.results import GateMark, ReleaseResult, StepDiagnosis, SweepResult
from servewise.store import RunStore

pytestmark = pytest.mark.slow

CONFIG = probe_config(None, None, 0, 5.0)
SLO = {"targets": [{"metric": "ttft", "stat": "p95", "limit": 500.0}]}


def _sweep(store: RunStore, knee: float, p95s: tuple[float, ...]) -> str:
    """A finished sweep as `servewise bench --load sweep` stores it: steps at 20..100% of the knee."""
    spec = {
        "target": {"url": "http://gpu-box:8000", "api": "chat", "model": "m"},
        "load": {"kind": "sweep"},
        "slo": SLO,
    }
    run_id = store.create_run(kind="sweep", spec=spec, labels={}, tool_version="t", target={}, environment={})
    steps = [
        {"rate": knee * (i + 1) / len(p95s), "run_id": f"{run_id}-{i}", "slo_met": True, "why": "",
         "client_limited": False, "metrics": {"ttft_ms": {"p95": p95}}}
        for i, p95 in enumerate(p95s)
    ]  # fmt: skip
    result = SweepResult.model_validate(
        {"run_id": run_id, "status": "ok", "metrics": {"output_tokens_per_s": 900.0}, "sweep": steps,
         "max_rate_meeting_slo": knee, "target": {"url": "http://gpu-box:8000"}}
    )  # fmt: skip
    store.finish_run(run_id, result)
    return run_id


def _mature_history(store: RunStore, knee: float) -> None:
    """What a disciplined team's store holds: a diagnosed sweep, gated candidates, a release rolled back."""
    sweep = _sweep(store, knee, (120.0, 125.0, 130.0, 250.0, 300.0))
    found = {"primary": "gpu_compute", "confidence": "high", "findings": [], "run_id": f"{sweep}-4"}
    store.annotate(sweep, StepDiagnosis.model_validate(found))
    for verdict in ("pass", "pass", "fail"):
        candidate = _sweep(store, knee, (120.0, 126.0, 131.0, 255.0, 300.0))
        store.annotate(candidate, GateMark(verdict=verdict, baseline=sweep, at=time.time()))
    for version, rolled_back in (("v2", True), ("v3", False)):
        run_id = store.create_run(
            kind="release", spec={}, labels={}, tool_version="t", target={}, environment={}
        )
        release = ReleaseResult(
            run_id=run_id, version=version, previous="v1", target={"url": "http://gpu-box:8000"},
            status="rolled_back" if rolled_back else "good", rolled_back=rolled_back,
            gate_verdict="fail" if rolled_back else "pass", started_at=time.time(),
        )  # fmt: skip
        store.finish_run(run_id, release)


def _assess(tmp_path: Path, shape: TrafficShape | None, *, answers: str = "", history=None, **kwargs):
    answers_path = None
    if answers:
        answers_path = tmp_path / "answers.yaml"
        answers_path.write_text(answers)
    with (
        prometheus_with_history(tmp_path / "prom", shape) as url,
        RunStore(tmp_path / "runs.db") as store,
    ):
        if history is not None:
            history(store)
        end = shape.history_end if shape else time.time()
        days = shape.days if shape else 28.0  # the whole history written: the forecast's precision is its length
        return assess(store, url=None, answers_path=answers_path, config=CONFIG, prometheus_url=url, days=days,
                      now=end, **kwargs)  # fmt: skip


def test_prototype_from_traffic_now_and_then(tmp_path):
    outcome = _assess(tmp_path, TrafficShape(days=28, active_days=0.3, seed=4))
    result = outcome.assessment
    assert result.stage is Stage.PROTOTYPE, result.reasons
    depend = result.signs["users_depend"]
    assert depend.status == "no" and "vllm series" in depend.evidence
    assert result.traffic is not None and result.traffic.active_days < 0.7 * result.traffic.observed_days


def test_early_product_from_steady_daily_traffic(tmp_path):
    result = _assess(tmp_path, TrafficShape(days=28, outage=(10.0, 5.0), error_share=0.004)).assessment
    assert result.stage is Stage.EARLY_PRODUCT, result.reasons
    assert result.signs.met("users_depend") and result.signs.met("pattern_repeats")
    depend = result.signs["users_depend"].evidence
    assert "users saw 0.40% errors" in depend and "5 h down" in depend
    assert any("no growth pressure" in r for r in result.reasons)
    traffic = result.traffic
    assert traffic is not None and traffic.weekend_ratio == pytest.approx(0.6, abs=0.06)
    assert traffic.daily_cycle is not None and traffic.daily_cycle > 0.8


def test_growth_production_and_its_crossing_date(tmp_path):
    shape = TrafficShape(days=42, growth_per_week=0.12, day_noise=0.03, outage=(30.0, 8.0))
    now = shape.history_end
    knee = 1.6 * shape.true_daily_peak(now)
    result = _assess(
        tmp_path, shape, history=lambda store: _sweep(store, knee, (100.0, 110.0, 120.0, 130.0, 150.0))
    )
    assessment = result.assessment
    assert assessment.stage is Stage.GROWTH_PRODUCTION, assessment.reasons
    outlook = assessment.forecast
    assert outlook is not None and outlook.crossing_days is not None
    truth = shape.true_crossing_s(knee, now)
    assert truth is not None
    assert abs(outlook.crossing_days - truth / 86400) <= 0.10 * truth / 86400, (outlook, truth / 86400)
    assert outlook.growth_per_week == pytest.approx(0.12, abs=0.015)
    data = assessment.to_dict()["forecast"]
    assert data["crossing_date"] == outlook.crossing_date and data["capacity_rps"] == pytest.approx(
        knee, rel=1e-3
    )
    assert data["growth_per_week"] == pytest.approx(outlook.growth_per_week, abs=1e-4)


@pytest.mark.parametrize(
    ("growth", "headroom", "within"), [(0.05, 1.5, None), (0.10, 2.0, 0.10), (0.20, 3.0, 0.10)]
)
def test_crossing_within_ten_percent_of_the_truth(tmp_path, growth, headroom, within):
    """A capacity given with --capacity, two replicas: the date the projected peak reaches it, within 10%
    at 10% and 20% growth a week; at 5% six weeks of 3% day-to-day noise cannot pin it that close (75.8% of
    histories, benchmarks/RESULTS.md), and the forecast's interval is what holds the truth."""
    shape = TrafficShape(days=42, growth_per_week=growth, day_noise=0.03, outage=(12.0, 6.0), seed=7)
    now = shape.history_end
    per_replica = headroom * shape.true_daily_peak(now) / 2
    outlook = _assess(tmp_path, shape, capacity_rps=per_replica, replicas=2).assessment.forecast
    assert outlook is not None and outlook.capacity_source == "--capacity" and outlook.replicas == 2
    truth_days = (shape.true_crossing_s(2 * per_replica, now) or math.inf) / 86400
    assert truth_days == pytest.approx(7 * math.log(headroom) / math.log(1 + growth))
    assert outlook.crossing_days is not None and outlook.crossing_earliest is not None
    if within is not None:
        assert abs(outlook.crossing_days - truth_days) <= within * truth_days, (
            outlook.crossing_days,
            truth_days,
        )
    truth_date = iso_date(now + truth_days * 86400)
    assert outlook.crossing_earliest <= truth_date <= (outlook.crossing_latest or "9999"), outlook


def test_mature_production_from_evidence_and_two_answers(tmp_path):
    shape = TrafficShape(days=28, ttft_median_s=0.2, ttft_sigma=0.5)
    knee = 2.5 * shape.true_daily_peak(shape.history_end)
    outcome = _assess(
        tmp_path, shape, answers="sla: yes\non_call: yes\n", history=lambda s: _mature_history(s, knee)
    )
    result = outcome.assessment
    assert result.stage is Stage.MATURE_PRODUCTION, result.reasons
    assert all(sign.status == "yes" for sign in result.signs.production)
    production = next(c for c in result.checklist if c.key == "production_slo")
    share = shape.slo_share("ttft", 0.5)
    assert (
        production.status == "pass" and f"{share:.1%} of requests within ttft 500 ms" in production.evidence
    )
    assert (
        result.forecast is not None and result.forecast.crossing_date is None
    )  # no growth: not within a year
    # without the two answers the same evidence stops short of mature, and says what is missing
    short = _assess(tmp_path / "again", shape, history=lambda s: _mature_history(s, knee)).assessment
    assert short.stage is Stage.EARLY_PRODUCT
    assert any("an SLA and on-call (sla: unknown, on_call: unknown)" in r for r in short.reasons)


def test_an_empty_prometheus_says_so(tmp_path):
    app = typer.Typer(cls=ServewiseGroup)
    stage_cli.register(app)
    with prometheus_with_history(tmp_path / "prom", None) as url:
        done = CliRunner().invoke(
            app, ["stage", "--prometheus", url, "--store", str(tmp_path / "runs.db"), "--json"]
        )
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert "no production traffic in Prometheus" in data["traffic_note"]
    assert data["traffic"] is None and data["forecast"] is None and data["stage"] == "prototype"
    depend = next(s for s in data["moving_to_production_if"] if s["key"] == "users_depend")
    assert depend["status"] == "unknown"
    assert "no production traffic in Prometheus" in done.stderr


def test_a_targets_history_keeps_its_releases(tmp_path):
    """`servewise release` stores the release file as the spec (its target a plain URL): `stage URL` counts
    that target's releases and rollbacks, and no other target's."""
    with RunStore(tmp_path / "runs.db") as store:
        for url, rolled_back in (("http://gpu-box:8000", True), ("http://other:8000", True)):
            run_id = store.create_run(kind="release", spec={"target": url, "version": "v2"}, labels={},
                                      tool_version="t", target={"url": url}, environment={})  # fmt: skip
            store.finish_run(run_id, ReleaseResult(run_id=run_id, version="v2", previous="v1", target={"url": url},
                                                   status="rolled_back", rolled_back=rolled_back, started_at=time.time()))  # fmt: skip
        history = build_history(store, "http://gpu-box:8000/v1")
    assert (history.releases, history.rollbacks) == (1, 1)
