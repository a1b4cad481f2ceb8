"""Stage placement on hand-built histories and answers files, one per stage, with the reasons cited."""

from __future__ import annotations

from dataclasses import replace

import pytest

from servewise.analysis.stage import (
    ANSWER_QUESTIONS,
    AnswersError,
    Stage,
    TrafficPattern,
    answers_template,
    assess_stage,
    history_from_runs,
    parse_answers,
    traffic_pattern_from_series,
)
from servewise.results import (
    Annotations,
    ColdstartResult,
    DiagnosisResult,
    GateMark,
    ProbeRecord,
    RunResult,
    SweepResult,
)
from servewise.store import RunRow

DAY = 86400.0
T0 = 1_790_000_000.0


def _spec(rate: float = 4.0) -> dict:
    return {
        "target": {"url": "http://127.0.0.1:8000", "api": "chat", "model": "m"},
        "workload": {"input_tokens": {"kind": "fixed", "value": 256}},
        "load": {"kind": "poisson", "rate": rate},
        "labels": {},
    }


def _bench(
    day: float,
    *,
    tok_s: float,
    met: bool | None = True,
    capacity: float | None = None,
    diagnosis: dict | None = None,
    rate: float = 4.0,
) -> RunRow:
    status = "ok" if met is not False else "slo_failed"
    measured = {
        "run_id": f"b{day}",
        "status": status,
        "load": f"poisson {rate:g} req/s",
        "metrics": {"output_tokens_per_s": tok_s, "ttft_ms": {"p95": 120.0}},
        "slo": {"met": met, "targets": []},
        "diagnosis": DiagnosisResult.model_validate(diagnosis) if diagnosis else None,
    }
    # a run that found the max rate meeting the SLO is a sweep
    result = (
        SweepResult(**measured, max_rate_meeting_slo=capacity)
        if capacity is not None
        else RunResult(**measured)
    )
    return RunRow(
        f"b{day}",
        "sweep" if capacity is not None else "bench",
        None,
        T0 + day * DAY,
        T0 + day * DAY + 60,
        status,
        _spec(rate),
        {},
        "0.1",
        {},
        {},
        result,
        Annotations(),
    )


def _gated(run: RunRow, verdict: str) -> RunRow:
    """The run as `servewise gate` leaves it: its verdict noted beside the result."""
    gate = GateMark(verdict=verdict, baseline="b0", at=run.created_at)
    return replace(run, annotations=Annotations(gate=gate))


def _other(kind: str, day: float, result: ColdstartResult) -> RunRow:
    return RunRow(
        f"{kind}{day}", kind, None, T0 + day * DAY, None, "ok", {}, {}, "0.1", {}, {}, result, Annotations()
    )


def _coldstart_summary(*startup_s: float) -> ColdstartResult:
    """The shape `servewise coldstart` stores: per-run results; a failed start has no startup time."""
    runs = [{"status": "ok", "startup_s": v} for v in startup_s] + [{"status": "failed", "startup_s": None}]
    return ColdstartResult(runs=runs, runs_ok=len(startup_s), aggregate={}, verdicts=[])


DIAGNOSED = {"primary": "gpu_memory_bandwidth", "confidence": "high", "findings": []}
GOOD_PROBES = [
    ProbeRecord(name=n, status="pass", evidence=f"{n} ok")
    for n in (
        "health",
        "readiness",
        "metrics",
        "version",
        "streaming",
        "usage",
        "bad_json",
        "unknown_model",
        "oversized_prompt",
        "auth",
        "overload",
    )
]


def _answers(**values: str) -> dict:
    text = "".join(f"{k}: {v}\n" for k, v in values.items())
    return parse_answers(text)


def test_prototype_one_run_nobody_depends():
    history = history_from_runs([_bench(0, tok_s=800.0, met=None)])
    answers = _answers(users_depend="no", workload_stable="no")
    result = assess_stage(probes=[], history=history, answers=answers)
    assert result.stage is Stage.PROTOTYPE
    assert any("users_depend: no" in r for r in result.reasons)
    assert any("workload is still changing" in r for r in result.reasons)
    assert any("bottleneck" in r for r in result.reasons)
    assert result.optimize_for.startswith("speed")
    assert result.do_not_overdo == "heavy platform architecture"
    # growth and mature layers are named as overbuilding, not as next steps
    assert all(layer.needed_from <= Stage.EARLY_PRODUCT for layer in result.next_layers)
    assert {layer.key for layer in result.not_yet} >= {"gate", "operations"}


def test_early_product_users_depend_no_growth():
    runs = [_bench(d, tok_s=800.0 + d) for d in range(3)]
    history = history_from_runs(runs)
    answers = _answers(users_depend="yes", traffic_growing="no", deploy_routine="no", rollback_exercised="no")
    result = assess_stage(probes=GOOD_PROBES, history=history, answers=answers)
    assert result.stage is Stage.EARLY_PRODUCT
    assert "users depend on it (users_depend: yes)" in result.reasons
    assert any("no growth pressure" in r for r in result.reasons)
    assert any("not mature yet" in r and "an exercised rollback" in r for r in result.reasons)
    assert result.next_layers[0].key == "deploy"
    assert any("rollback_exercised: no" in why for why in result.next_layers[0].why)
    # the three repeat runs agree within 1%: repeatability passes with its evidence
    repeat = next(c for c in result.checklist if c.key == "repeat_runs")
    assert repeat.status == "pass" and "3 runs" in repeat.evidence


def test_growth_production_traffic_squeezes_measured_capacity():
    runs = [_bench(d, tok_s=800.0, capacity=10.0, diagnosis=DIAGNOSED) for d in range(4)]
    coldstarts = [_other("coldstart", 0.5, _coldstart_summary(20.0, 61.0, 24.0, 58.0))]
    traffic = TrafficPattern(
        periods=7, period_s=DAY, volume_cv=0.3, growth=1.8, peak_rps=8.0, size_drift=0.1, source="prometheus"
    )
    history = history_from_runs(runs + coldstarts, traffic=traffic)
    answers = _answers(users_depend="yes", sla="yes", on_call="no")
    result = assess_stage(probes=GOOD_PROBES, history=history, answers=answers)
    assert result.stage is Stage.GROWTH_PRODUCTION
    assert any("grew 1.8x" in r for r in result.reasons)
    assert any("80% of the 10 req/s capacity" in r for r in result.reasons)
    assert any("not mature yet" in r and "SLA and on-call" in r for r in result.reasons)
    # cold start varies 3x: pinning caches comes before autoscaling, at the top
    top = result.next_layers[0]
    assert top.key == "coldstart"
    assert "3.0x" in top.action and "before adding autoscaling" in top.action


def test_mature_production_commitments_and_discipline():
    runs = [
        _bench(d, tok_s=800.0 + (d % 2) * 10, capacity=20.0, diagnosis=DIAGNOSED) for d in range(0, 30, 3)
    ]
    runs = [_gated(run, "pass") if i % 2 == 0 else run for i, run in enumerate(runs)]
    rollback = _bench(13.1, tok_s=805.0, capacity=20.0, diagnosis=DIAGNOSED)
    rollback.labels["rollback"] = "true"
    gates = [rollback]
    coldstarts = [_other("coldstart", 1, _coldstart_summary(20.0, 21.0, 23.0, 20.5, 21.8))]
    traffic = TrafficPattern(
        periods=14,
        period_s=DAY,
        volume_cv=0.12,
        growth=1.05,
        peak_rps=9.0,
        size_drift=0.03,
        source="prometheus",
    )
    history = history_from_runs(runs + gates + coldstarts, traffic=traffic)
    answers = _answers(users_depend="yes", sla="yes", on_call="yes", deploy_routine="yes", cost_tracked="no")
    result = assess_stage(probes=GOOD_PROBES, history=history, answers=answers)
    assert result.stage is Stage.MATURE_PRODUCTION
    assert history.rollbacks == 1
    assert any("rollback exercised (1 rollback(s) recorded)" in r for r in result.reasons)
    assert any("volume CV 12%" in r for r in result.reasons)
    assert any("11 SLO verdicts over 27 days, 5 gate runs" in r for r in result.reasons)
    assert result.optimize_for == "reliability, capacity planning, cost discipline"
    assert result.next_layers[0].key == "cost"


def test_mature_needs_rollback_evidence():
    """Same as mature but nothing shows a rollback was ever done: not mature, and the reason says why."""
    runs = [_bench(d, tok_s=800.0, capacity=20.0, diagnosis=DIAGNOSED) for d in range(0, 30, 3)]
    traffic = TrafficPattern(14, DAY, 0.12, 1.5, 9.0, 0.03, "prometheus")
    history = history_from_runs(runs, traffic=traffic)
    answers = _answers(users_depend="yes", sla="yes", on_call="yes", rollback_exercised="unknown")
    result = assess_stage(probes=GOOD_PROBES, history=history, answers=answers)
    assert result.stage is Stage.GROWTH_PRODUCTION
    assert any("missing an exercised rollback" in r for r in result.reasons)


def test_repeat_runs_that_disagree_fail_with_their_spread():
    runs = [_bench(d, tok_s=tok) for d, tok in enumerate((500.0, 900.0, 650.0))]
    result = assess_stage(history=history_from_runs(runs), answers=_answers(users_depend="yes"))
    repeat = next(c for c in result.checklist if c.key == "repeat_runs")
    assert repeat.status == "fail"
    assert "throughput CV" in repeat.evidence


def test_probe_failures_reach_checklist_and_layers():
    probes = [
        p.model_copy(update={"status": "fail", "evidence": "malformed JSON: 500"})
        if p.name == "bad_json"
        else p
        for p in GOOD_PROBES
    ]
    result = assess_stage(probes=probes, history=history_from_runs([]), answers=_answers(users_depend="yes"))
    item = next(c for c in result.checklist if c.key == "bad_json")
    assert (item.status, item.evidence) == ("fail", "malformed JSON: 500")
    failure = next(layer for layer in result.next_layers if layer.key == "failure")
    assert any("malformed JSON: 500" in why for why in failure.why)


def test_traffic_pattern_from_series_reads_growth_and_drift():
    # three "days" of 10 points each: 1 req/s, 2 req/s, 3 req/s, then a partial fourth
    volume = [(d * 10 + i, float(d + 1)) for d in range(4) for i in range(10)][:35]
    size = [(d * 10 + i, 100.0 + 50 * d) for d in range(4) for i in range(10)]
    pattern = traffic_pattern_from_series(volume, size, period_s=10, source="test")
    assert pattern.periods == 3
    assert pattern.growth == pytest.approx(3.0)
    assert pattern.peak_rps == 4.0
    assert pattern.size_drift == pytest.approx(1.5)
    assert pattern.volume_cv == pytest.approx(0.5)


def test_answers_file_rejects_typos_and_bad_values():
    with pytest.raises(AnswersError, match="unknown question 'user_depend'"):
        parse_answers("user_depend: yes\n")
    with pytest.raises(AnswersError, match="maybe"):
        parse_answers("sla: maybe\n")
    parsed = parse_answers(answers_template())
    assert set(parsed) == set(ANSWER_QUESTIONS) and set(parsed.values()) == {"unknown"}
    assert parse_answers("sla: yes\non_call: no\n")["sla"] == "yes"


def test_assessment_serialises():
    result = assess_stage(history=history_from_runs([]), answers=_answers(users_depend="yes"))
    data = result.to_dict()
    assert data["stage"] == "early product"
    assert data["next_step"] == result.next_layers[0].action
    assert all(item["status"] in ("pass", "fail", "unknown") for item in data["checklist"])
