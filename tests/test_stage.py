"""Stage placement on hand-built histories, synthetic traffic and answers files, one per stage, with the
reasons cited; the defects the stage once had, each pinned; the trend and the forecast against known truth."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from servewise.analysis.stage import (
    ANSWER_QUESTIONS,
    AnswersError,
    Capacity,
    LatencyHistogram,
    Stage,
    TrafficEvidence,
    answers_template,
    assess_stage,
    forecast,
    history_from_runs,
    parse_answers,
    traffic_evidence,
)
from servewise.results import (
    Annotations,
    ColdstartResult,
    DiagnosisResult,
    GateMark,
    ProbeRecord,
    ReleaseResult,
    RunResult,
    SweepResult,
    SweepStep,
)
from servewise.store import RunRow

DAY = 86400.0
T0 = 1_790_000_000.0 - 1_790_000_000.0 % DAY  # a UTC midnight (a Tuesday)
STEP = 900.0


def _traffic(
    days: int = 28,
    *,
    rps: float = 2.0,
    growth: float = 0.0,
    active: float = 1.0,
    cycle: float = 0.6,
    weekend: float = 0.6,
    noise: float = 0.03,
    drift: float = 0.0,
    errors: float = 0.0,
    outage_day: int | None = None,
    end: float | None = None,
    seed: int = 3,
    read_days: int | None = None,
) -> TrafficEvidence:
    """15-minute request rates shaped like production: a daily cycle peaking at 15:00, quieter weekends,
    exponential growth per week, idle days, noise, an outage day with no samples at all; read over
    ``read_days`` (default: the ``days`` that hold points)."""
    rng = np.random.default_rng(seed)
    end = end if end is not None else T0 + 60 * DAY
    start = end - days * DAY
    idle = {d for d in range(days + 1) if rng.random() > active}
    volume, size, failed = [], [], []
    for i in range(int(days * DAY / STEP)):
        t = start + (i + 1) * STEP
        day = int((t - start) // DAY)
        if day == outage_day:
            continue
        weekday = int((t / DAY + 3) % 7)
        level = rps * (1 + growth) ** ((t - start) / DAY / 7) * (weekend if weekday >= 5 else 1.0)
        hour = (t % DAY) / 3600
        rate = 0.0 if day in idle else level * (1 + cycle * math.cos(2 * math.pi * (hour - 15) / 24))
        rate *= float(rng.lognormal(0, noise))
        volume.append((t, rate))
        size.append((t, 500.0 * (1 + drift * (t - start) / (days * DAY))))
        failed.append((t, rate * errors))
    read_from = end - (read_days or days) * DAY
    return traffic_evidence(
        volume, step_s=STEP, start=read_from, end=end, errors=failed, size=size, source="test"
    )


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
    # growth and mature layers are named as overbuilding, with the reason, not as next steps
    assert all(layer.needed_from <= Stage.EARLY_PRODUCT for layer in result.next_layers)
    later = {layer.key: layer for layer in result.not_yet}
    assert {"gate", "operations"} <= set(later)
    assert later["operations"].not_yet == "matters from mature production: nothing is promised yet (sla: unknown, on_call: unknown)"
    assert "no growth pressure read" in later["gate"].not_yet


def test_prototype_from_traffic_used_now_and_then():
    """No answers at all: traffic on a third of the days says nobody depends on it yet."""
    traffic = _traffic(28, active=0.3)
    result = assess_stage(history=history_from_runs([], traffic=traffic))
    assert result.stage is Stage.PROTOTYPE
    depend = result.signs["users_depend"]
    assert depend.status == "no" and f"traffic on {traffic.active_days} of 28 days" in depend.evidence
    assert traffic.active_days < 0.7 * 28


def test_unknown_is_shown_and_decides_nothing():
    """Nothing observed and nothing answered: every sign says unknown or no, with why; prototype."""
    result = assess_stage(history=history_from_runs([]))
    assert result.stage is Stage.PROTOTYPE
    assert result.signs["users_depend"].status == "unknown"
    assert "no production traffic read" in result.signs["users_depend"].evidence
    assert result.signs["pattern_repeats"].status == "unknown"
    assert result.forecast is None


def test_early_product_from_steady_traffic():
    runs = [_bench(d / 24, tok_s=800.0 + d) for d in range(3)]
    history = history_from_runs(runs, traffic=_traffic(28))
    result = assess_stage(probes=GOOD_PROBES, history=history)
    assert result.stage is Stage.EARLY_PRODUCT
    assert result.signs.met("users_depend") and result.signs.met("pattern_repeats")
    assert any("no growth pressure" in r for r in result.reasons)
    assert any("not mature yet" in r and "SLA and on-call" in r for r in result.reasons)
    assert result.next_layers[0].key == "deploy"
    # three runs an hour apart agree within 1%: repeatability passes with its evidence
    repeat = next(c for c in result.checklist if c.key == "repeat_runs")
    assert repeat.status == "pass" and "3 runs" in repeat.evidence


def _sweep(
    day: float, knee: float, *, slo_ms: float = 500.0, p95s: tuple[float, ...] = (), run: str = ""
) -> RunRow:
    """A stored sweep with its steps' p95 TTFT (ms) at 20%, 40%, ... of the knee and beyond."""
    row = _bench(day, tok_s=800.0, capacity=knee, diagnosis=DIAGNOSED)
    steps = [
        {"rate": knee * (i + 1) / 5, "run_id": f"s{i}", "slo_met": True, "why": "", "client_limited": False,
         "metrics": {"ttft_ms": {"p95": p95}}}
        for i, p95 in enumerate(p95s)
    ]  # fmt: skip
    assert isinstance(row.result, SweepResult)
    result = row.result.model_copy(update={"sweep": [SweepStep.model_validate(s) for s in steps]})
    spec = row.spec | {"slo": {"targets": [{"metric": "ttft", "stat": "p95", "limit": slo_ms}]}}
    return replace(row, id=run or row.id, result=result, spec=spec)


def test_growth_production_from_the_trend_and_the_knee():
    traffic = _traffic(35, growth=0.12)
    peak = traffic.peak_rps
    assert peak is not None
    sweep = _sweep(30, knee=peak * 1.5, p95s=(100.0, 105.0, 110.0, 200.0, 250.0))
    coldstarts = [_other("coldstart", 0.5, _coldstart_summary(20.0, 61.0, 24.0, 58.0))]
    history = history_from_runs([sweep, *coldstarts], traffic=traffic)
    result = assess_stage(probes=GOOD_PROBES, history=history, now=traffic.end)
    assert result.stage is Stage.GROWTH_PRODUCTION
    assert any("the daily peak grows +1" in r for r in result.reasons)
    outlook = result.forecast
    assert outlook is not None and outlook.crossing_date is not None
    # 1.5x headroom at 12%/week: ln 1.5 / ln 1.12 = 3.6 weeks
    assert outlook.crossing_days == pytest.approx(7 * math.log(1.5) / math.log(1.12), rel=0.15)
    assert outlook.growth_per_week == pytest.approx(0.12, abs=0.02)
    assert any(outlook.crossing_date in r for r in result.reasons)
    capacity = next(layer for layer in result.next_layers if layer.key == "capacity")
    assert "p95 TTFT doubles from 80% of the knee: add a replica before" in capacity.action
    assert f"needs {outlook.replicas_needed} replicas" in capacity.action
    # cold start varies 3x: knowing startup behaviour comes before scaling on it
    assert result.next_layers[0].key == "coldstart"
    assert "3.0x" in " ".join(result.next_layers[0].why)


def _release(day: float, *, rolled_back: bool, verdict: str) -> RunRow:
    result = ReleaseResult(
        run_id=f"r{day}", version=f"v{day}", previous="v0", target={"url": "http://127.0.0.1:8000"},
        status="rolled_back" if rolled_back else "good", rolled_back=rolled_back, gate_verdict=verdict,
        started_at=T0 + day * DAY,
    )  # fmt: skip
    return RunRow(
        f"r{day}", "release", None, T0 + day * DAY, None, "ok", {}, {}, "0.1", {}, {}, result, Annotations()
    )


def _mature_history(**changes: object) -> tuple[list[RunRow], TrafficEvidence]:
    runs = [
        _sweep(d, knee=20.0, p95s=(100.0, 104.0, 108.0, 150.0, 210.0), run=f"s{d}") for d in range(0, 30, 3)
    ]
    runs = [_gated(run, "pass") if i % 2 == 0 else run for i, run in enumerate(runs)]
    runs += [
        _release(12.0, rolled_back=True, verdict="fail"),
        _release(13.0, rolled_back=False, verdict="pass"),
    ]
    runs.append(_other("coldstart", 1, _coldstart_summary(20.0, 21.0, 23.0, 20.5, 21.8)))
    ttft = LatencyHistogram("ttft", ((0.25, 900.0), (0.5, 990.0), (1.0, 1000.0), (math.inf, 1000.0)))
    traffic = replace(_traffic(28, **changes), latency=(ttft,))  # type: ignore[arg-type]
    return runs, traffic


def test_mature_production_commitments_and_discipline():
    runs, traffic = _mature_history()
    history = history_from_runs(runs, traffic=traffic)
    answers = _answers(sla="yes", on_call="yes", cost_tracked="no")
    result = assess_stage(probes=GOOD_PROBES, history=history, answers=answers)
    assert result.stage is Stage.MATURE_PRODUCTION, result.reasons
    assert history.rollbacks == 1 and history.releases == 2
    assert all(s.status == "yes" for s in result.signs.production)
    assert all(s.status == "no" for s in result.signs.prototype)
    slo = next(c for c in result.checklist if c.key == "production_slo")
    assert slo.status == "pass" and "99.0% of requests within ttft 500 ms" in slo.evidence
    assert result.optimize_for == "reliability, capacity planning, cost discipline"
    assert result.next_layers[0].key == "cost"


def test_mature_needs_rollback_evidence():
    """Same as mature but nothing shows a rollback was ever done: not mature, and the reason says why."""
    runs, traffic = _mature_history()
    runs = [r for r in runs if r.kind != "release"]
    result = assess_stage(probes=GOOD_PROBES, history=history_from_runs(runs, traffic=traffic),
                          answers=_answers(sla="yes", on_call="yes"))  # fmt: skip
    assert result.stage is Stage.EARLY_PRODUCT
    assert result.signs["decisions_stable"].status == "no"
    assert any("missing infrastructure decisions now need to be stable" in r for r in result.reasons)


def test_a_diagnosis_of_none_names_no_bottleneck():
    none = {"primary": "none", "confidence": "medium", "findings": []}
    client = {"primary": "load_generator", "confidence": "high", "findings": []}
    for found in (none, client):
        history = history_from_runs([_bench(0, tok_s=800.0, diagnosis=found)])
        item = next(c for c in assess_stage(history=history).checklist if c.key == "bottleneck")
        assert item.status == "fail" and "none names a bottleneck" in item.evidence
    history = history_from_runs(
        [_bench(0, tok_s=800.0, diagnosis=none), _bench(1, tok_s=800.0, diagnosis=DIAGNOSED)]
    )
    assert history.bottleneck == "gpu_memory_bandwidth"


def test_repeat_runs_are_judged_within_one_release():
    """A real speed-up between releases is not poor repeatability; runs of one release that disagree are."""
    releases = [
        replace(_bench(d * 7, tok_s=tok), labels={"version": f"v{d}"})
        for d, tok in enumerate((500.0, 900.0, 650.0))
    ]
    result = assess_stage(history=history_from_runs(releases))
    repeat = next(c for c in result.checklist if c.key == "repeat_runs")
    assert repeat.status == "unknown", repeat
    later = [
        _bench(d * 7, tok_s=tok) for d, tok in enumerate((500.0, 900.0, 650.0))
    ]  # a week apart, no label
    assert (
        next(
            c for c in assess_stage(history=history_from_runs(later)).checklist if c.key == "repeat_runs"
        ).status
        == "unknown"
    )
    close = [_bench(d / 48, tok_s=tok) for d, tok in enumerate((500.0, 900.0, 650.0))]  # half an hour apart
    repeat = next(
        c for c in assess_stage(history=history_from_runs(close)).checklist if c.key == "repeat_runs"
    )
    assert repeat.status == "fail" and "throughput CV" in repeat.evidence


def test_twin_runs_are_not_evidence_about_the_server():
    twin = _sweep(0, knee=30.0, p95s=(100.0, 300.0))
    assert isinstance(twin.result, SweepResult)
    twin = replace(
        twin,
        result=twin.result.model_copy(update={"target": {"url": "http://127.0.0.1:9", "simulated": True}}),
    )
    history = history_from_runs([twin])
    assert history.bench_runs == 0 and history.simulated_runs == 1
    assert history.capacity is None and history.bottleneck is None
    result = assess_stage(history=history)
    assert "1 run against the twin not counted" in result.signs["limits_measurable"].evidence


def test_headroom_comes_from_where_latency_climbs_not_a_constant():
    traffic = _traffic(28)
    peak = traffic.peak_rps
    assert peak is not None
    # latency doubles at 40% of the knee; the peak is 50% of it: headroom fails though capacity is 2x
    climbing = _sweep(27, knee=2 * peak, p95s=(100.0, 210.0, 300.0, 400.0, 450.0))
    item = next(c for c in assess_stage(history=history_from_runs([climbing], traffic=traffic)).checklist
                if c.key == "headroom")  # fmt: skip
    assert item.status == "fail" and "p95 TTFT doubles from" in item.evidence
    flat = _sweep(27, knee=2 * peak, p95s=(100.0, 101.0, 103.0, 104.0, 150.0))
    item = next(c for c in assess_stage(history=history_from_runs([flat], traffic=traffic)).checklist
                if c.key == "headroom")  # fmt: skip
    assert item.status == "pass" and "50% of the" in item.evidence


def test_a_loopback_only_fact_never_ranks_first():
    auth = ProbeRecord(name="auth", status="fail", evidence="not required: 200 without a key (fine on loopback)",
                       facts={"required": False, "loopback": True})  # fmt: skip
    probes = [auth if p.name == "auth" else p for p in GOOD_PROBES]
    result = assess_stage(probes=probes, history=history_from_runs([]), answers=_answers(users_depend="yes"))
    assert result.next_layers and result.next_layers[0].key != "failure"
    failure = [layer for layer in (*result.next_layers, *result.not_yet) if layer.key == "failure"]
    assert all("require a key" not in layer.action or layer.score <= 0 for layer in failure)
    remote = [replace_probe(auth, facts={"required": False, "loopback": False}) if p.name == "auth" else p
              for p in GOOD_PROBES]  # fmt: skip
    result = assess_stage(probes=remote, history=history_from_runs([]), answers=_answers(users_depend="yes"))
    assert any(layer.key == "failure" and layer.score > 0 for layer in result.next_layers)


def replace_probe(probe: ProbeRecord, **update: object) -> ProbeRecord:
    return probe.model_copy(update=update)


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
    assert failure.action == "fix: malformed json gets a 4xx"


def test_trend_recovers_growth_through_weekends_noise_and_an_outage():
    traffic = _traffic(42, growth=0.08, noise=0.08, outage_day=20, errors=0.01)
    trend = traffic.trend
    assert trend is not None and trend.days == 41  # the outage day left out
    low, high = trend.interval()
    assert low < 0.08 < high and high - low < 0.04
    assert traffic.weekend_ratio == pytest.approx(0.6, abs=0.05)
    assert traffic.daily_cycle is not None and traffic.daily_cycle > 0.8
    assert traffic.down_hours == pytest.approx(24.0, abs=0.5)
    assert traffic.error_share == pytest.approx(0.01, rel=0.01)
    flat = _traffic(42, noise=0.3, cycle=0.0, seed=9)
    assert flat.daily_cycle is not None and flat.daily_cycle < 0.2


def test_a_short_window_keeps_weekends_out_of_the_trend():
    """Ten days hold one or two weekends; wherever they fall in the window, they are a level apart, not a
    slope (read as one level, a weekend at the window's end took 10% growth for 0% or 25%)."""
    for weekday in range(7):
        trend = _traffic(10, growth=0.10, end=T0 + (60 + weekday) * DAY).trend
        assert trend is not None and trend.growth_per_week == pytest.approx(0.10, abs=0.03), weekday


def test_days_before_prometheus_holds_data_are_not_idle_days():
    """Asked for 28 days of a Prometheus that keeps 15 (its default retention): 15 days seen, every one with
    traffic, not 13 idle days that would say nobody depends on the service."""
    traffic = _traffic(15, read_days=28)
    assert (traffic.observed_days, traffic.active_days) == (15, 15)
    assert traffic.trend is not None and traffic.trend.days == 15


def test_forecast_dates_and_their_edges():
    traffic = _traffic(42, growth=0.10)
    now = traffic.end
    assert traffic.peak_rps is not None
    over = forecast(traffic, Capacity(traffic.peak_rps * 0.9, 1, "x"), now)
    assert over is not None and over.crossing_days == 0.0 and "already" in over.note
    far = forecast(traffic, Capacity(traffic.peak_rps * 1000, 1, "x"), now)
    assert far is not None and far.crossing_date is None and "for a year" in far.note
    shrinking = forecast(_traffic(42, growth=-0.05), Capacity(traffic.peak_rps * 2, 1, "x"), now)
    assert shrinking is not None and shrinking.crossing_date is None
    two = forecast(traffic, Capacity(traffic.peak_rps, 2, "x"), now)  # two replicas: twice the capacity
    assert two is not None and two.crossing_days == pytest.approx(7 * math.log(2) / math.log(1.1), rel=0.1)
    assert two.crossing_earliest is not None and two.crossing_latest is not None
    assert two.crossing_earliest <= two.crossing_date <= two.crossing_latest  # type: ignore[operator]
    data = two.to_dict()
    assert set(data) >= {"peak_rps", "capacity_rps", "growth_per_week", "crossing_date"}
    assert data["capacity_rps"] == pytest.approx(2 * traffic.peak_rps, rel=1e-3)


def test_histogram_share_and_quantile():
    h = LatencyHistogram("ttft", ((0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)))
    assert h.share_within(0.1) == pytest.approx(0.5)
    assert h.share_within(0.3) == pytest.approx(0.7)
    assert h.share_within(5.0) == pytest.approx(1.0)
    assert h.quantile(0.5) == pytest.approx(0.1)
    assert h.quantile(0.95) == pytest.approx(0.75)
    assert LatencyHistogram("ttft", ()).share_within(1.0) is None


def test_traffic_growing_answer_counts_only_without_a_trend():
    history = history_from_runs([])
    answers = _answers(users_depend="yes", traffic_growing="yes")
    result = assess_stage(history=history, answers=answers)
    assert result.stage is Stage.GROWTH_PRODUCTION
    assert any("traffic_growing: yes" in r for r in result.reasons)
    flat = assess_stage(history=history_from_runs([], traffic=_traffic(28)), answers=answers)
    assert flat.stage is Stage.EARLY_PRODUCT


def test_answers_file_rejects_typos_and_bad_values():
    with pytest.raises(AnswersError, match="unknown question 'user_depend'"):
        parse_answers("user_depend: yes\n")
    with pytest.raises(AnswersError, match="maybe"):
        parse_answers("sla: maybe\n")
    parsed = parse_answers(answers_template())
    assert set(parsed) == set(ANSWER_QUESTIONS) and set(parsed.values()) == {"unknown"}
    assert parse_answers("sla: yes\non_call: no\n")["sla"] == "yes"


def test_assessment_serialises():
    runs, traffic = _mature_history()
    result = assess_stage(
        history=history_from_runs(runs, traffic=traffic), answers=_answers(users_depend="yes")
    )
    data = result.to_dict()
    assert data["next_step"] == result.next_layers[0].action
    assert all(item["status"] in ("pass", "fail", "unknown") for item in data["checklist"])
    assert [s["key"] for s in data["moving_to_production_if"]] == [
        "users_depend", "pattern_repeats", "limits_measurable", "decisions_stable"]  # fmt: skip
    assert data["forecast"]["capacity_rps"] == 20.0 and len(data["traffic"]["days"]) >= 28
    assert result.record().forecast is not None


def test_probes_move_the_stage():
    """The same mature evidence, but the endpoint cannot tell loading from ready: a deploy cannot rely on
    it, so decisions are not stable yet, and the stage says which probe."""
    runs, traffic = _mature_history()
    history = history_from_runs(runs, traffic=traffic)
    answers = _answers(sla="yes", on_call="yes")
    unready = [
        p.model_copy(update={"status": "fail", "evidence": "ready while loading"}) if p.name == "readiness" else p
        for p in GOOD_PROBES
    ]
    assert assess_stage(probes=GOOD_PROBES, history=history, answers=answers).stage is Stage.MATURE_PRODUCTION
    result = assess_stage(probes=unready, history=history, answers=answers)
    assert result.stage is Stage.EARLY_PRODUCT
    assert "readiness probe fails: ready while loading" in result.signs["decisions_stable"].evidence
