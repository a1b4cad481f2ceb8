"""A stored sweep with every report piece, built by hand; hostile strings wherever a server's text goes."""

from __future__ import annotations

import math
import random
from pathlib import Path

from servewise.analysis.stage import (
    Capacity,
    assess_stage,
    history_from_runs,
    parse_answers,
    traffic_evidence,
)
from servewise.records import Phase, RequestRecord, Sample, TokenSource
from servewise.results import (
    ColdstartResult,
    PlanNote,
    PlanRecord,
    ProbeRecord,
    RunResult,
    StageNote,
    StageRecord,
    StepDiagnosis,
    SweepResult,
    SweepStep,
)
from servewise.store import RunStore

HOSTILE = "<script>alert('pwned')</script>"


def records(n: int = 300, seed: int = 1) -> list[RequestRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        send = i * 0.1
        ttft = rng.lognormvariate(-2.3, 0.3)  # ~100 ms
        tokens = 64
        itl = rng.uniform(0.018, 0.026)
        out.append(
            RequestRecord(
                index=i,
                t_sched=send,
                t_send=send,
                t_first=send + ttft,
                t_end=send + ttft + itl * (tokens - 1),
                output_tokens=tokens,
                output_tokens_source=TokenSource.USAGE,
                status=200,
                phase=Phase.STEADY,
                input_tokens=256,
            )
        )
    return out


def samples(seconds: int = 30) -> list[Sample]:
    out = []
    for t in range(seconds):
        out += [
            Sample(float(t), "host", "cpu_percent_total", 35.0 + 10 * (t % 3)),
            Sample(float(t), "metrics", "kv_cache_usage", min(1.0, 0.3 + t / seconds)),
            Sample(float(t), "metrics", "requests_waiting", float(max(0, t - 15))),
            Sample(float(t), "metrics", "requests_running", 8.0),
            Sample(float(t), "client", "schedule_lag_ms", 0.4),
        ]
    return out


def sweep() -> list[SweepStep]:
    steps = []
    for rate in (1.0, 2.0, 4.0, 6.0, 8.0):
        ttft = 80 + 15 * rate**2
        steps.append(
            SweepStep.model_validate(
                {
                    "rate": rate,
                    "run_id": f"step-{rate:g}",
                    "why": "met" if ttft <= 800 else "ttft_p95",
                    "client_limited": False,
                    "metrics": {
                        "ttft_ms": {"p50": ttft * 0.7, "p95": ttft, "p99": ttft * 1.3},
                        "tpot_ms": {"p50": 18 + rate, "p95": 20 + 2 * rate},
                        "output_tokens_per_s": 60 * rate,
                    },
                    "slo_met": ttft <= 800,
                }
            )
        )
    return steps


def plan() -> PlanRecord:
    def tier(gpu: str, price: float, cost: float | None, fits: bool = True) -> dict:
        return {
            "gpu": gpu,
            "num_gpus": 1,
            "fits": fits,
            "max_concurrency": 64,
            "output_tokens_per_s": 2400.0,
            "ttft_ms_p50": 90.0,
            "tpot_ms_p50": 14.0,
            "rate_per_replica": 7.5,
            "replicas": 2,
            "price_per_hour": price,
            "cost_per_million_output_tokens": cost,
        }

    return PlanRecord.model_validate(
        {
            "tiers": [
                tier("RTX 4090", 0.69, 0.16),
                tier("A100 80GB", 1.89, 0.31),
                tier(HOSTILE, 3.99, 0.52),
                tier("T4", 0.35, None, fits=False),
            ],
            "recommendation": "cheapest tier meeting the SLO " + HOSTILE,
        }
    )


DAY_S = 86400.0
TRAFFIC_END = 1_790_000_000.0 - 1_790_000_000.0 % DAY_S  # a UTC midnight


def _traffic_points(
    days: int = 21, *, rps: float = 2.0, growth: float = 0.12, end: float = TRAFFIC_END
) -> list[tuple[float, float]]:
    """15-minute request rates over ``days`` ending at a UTC midnight: a daily cycle peaking at 15:00,
    quieter weekends, ``growth`` a week, a little deterministic noise."""
    rng = random.Random(7)
    start, step = end - days * DAY_S, 900.0
    points = []
    for i in range(1, int(days * DAY_S / step) + 1):
        t = start + i * step
        weekend = 0.6 if int((t / DAY_S + 3) % 7) >= 5 else 1.0
        cycle = 1 + 0.6 * math.cos(2 * math.pi * ((t % DAY_S) / 3600 - 15) / 24)
        level = rps * (1 + growth) ** ((t - start) / DAY_S / 7) * weekend
        points.append((t, level * cycle * rng.lognormvariate(0, 0.03)))
    return points


def stage_record(*, traffic: bool = False) -> StageRecord:
    """The stage as stored: by default from the answers file alone (no traffic in Prometheus, said in
    ``traffic_note``); with ``traffic``, three weeks of growing production traffic read from Prometheus
    and a stated capacity, so the record carries the trend, the forecast and every day for the charts.

    Hostile strings reach the report through a probe's evidence, and with traffic through the source
    (in the "users depend" sign's evidence) and the capacity's source."""
    probes = [ProbeRecord(name="bad_json", status="fail", evidence=f"malformed JSON: 500: {HOSTILE}")]
    if not traffic:
        answers = parse_answers("users_depend: yes\ntraffic_growing: yes\n")
        note = "no production traffic in Prometheus at http://127.0.0.1:9090: nothing is guessed from it"
        return assess_stage(probes, history_from_runs([]), answers, traffic_note=note).record()
    points = _traffic_points()
    end = points[-1][0]
    evidence = traffic_evidence(
        points, step_s=900.0, start=end - 21 * DAY_S, end=end, source=f"prometheus {HOSTILE}"
    )
    peak = evidence.peak_rps or 1.0
    capacity = Capacity(peak * 1.6, 1, f"--capacity {HOSTILE}", degrade_share=0.8)
    return assess_stage(probes, history_from_runs([], traffic=evidence), capacity=capacity, now=end).record()


def coldstart() -> ColdstartResult:
    """A cold-start run's result, given to the report beside the sweep (`report RUN --coldstart ID`)."""
    return ColdstartResult.model_validate(
        {
            "runs": [{"status": "ok", "startup_s": v} for v in (21.0, 24.5, 22.1, 58.0)],
            "runs_ok": 4,
            "aggregate": {"startup_s": {"count": 4, "min": 21.0, "median": 23.3, "max": 58.0, "cv": 0.6}},
            "verdicts": [
                {"key": "repeatability", "verdict": "not repeatable", "evidence": HOSTILE, "advice": None}
            ],
            "status": "ok",
        }
    )


def store_full_run(store_path: Path, *, simulated: bool = True) -> str:
    """A sweep with records, samples, and doctor's notes (diagnosis, plan, stage and probes) stored.

    The cold start is a run of its own in real use: give ``coldstart()`` to the report beside this one."""
    with RunStore(store_path) as store:
        target = {
            "url": "http://127.0.0.1:8000",
            "api": "chat",
            "model": f"llama-{HOSTILE}",
            "simulated": simulated,
            "server": {"simulates": "Llama-3.1-8B on RTX 4090"},
        }
        run_id = store.create_run(
            kind="sweep",
            spec={"target": target},
            labels={},
            tool_version="0.1",
            target=target,
            environment={},
        )
        store.append_records(run_id, records())
        store.append_samples(run_id, samples())
        result = {
            "run_id": run_id,
            "status": "ok",
            "target": target,
            "load": "sweep to the SLO knee",
            "steady_s": 30.0,
            "metrics": {
                "ttft_ms": {
                    "count": 300,
                    "p50": 100.0,
                    "p90": 130.0,
                    "p95": 140.0,
                    "p99": 170.0,
                    "mean": 104.0,
                },
                "tpot_ms": {"count": 300, "p50": 22.0, "p90": 25.0, "p95": 25.5, "p99": 25.9, "mean": 22.0},
                "requests_ok": 300,
                "requests_failed": 0,
                "requests_per_s": 10.0,
                "output_tokens_per_s": 640.0,
                "goodput_rps": 9.8,
                "output_tokens_source": "usage",
                "errors_by_class": {},
            },
            "slo": {
                "met": True,
                "targets": [
                    {"key": "ttft_p95", "limit": 800.0, "value": 140.0, "met": True},
                    {"key": "tpot_p95", "limit": 40.0, "value": 25.5, "met": True},
                ],
            },
            "client": {"limited": False, "reason": None},
            "sweep": sweep(),
            "max_rate_meeting_slo": 6.0,
        }
        store.finish_run(run_id, SweepResult.model_validate(result))
        diagnosis = {
            "run_id": "step-6",
            "primary": "kv_cache",
            "confidence": "high",
            "findings": [
                {
                    "resource": "kv_cache",
                    "verdict": "bottleneck",
                    "evidence": f"kv usage 100% while queue grows {HOSTILE}",
                    "read_on": "server",
                    "source": f"the engine's /metrics {HOSTILE}",
                }
            ],
        }
        store.annotate(run_id, StepDiagnosis.model_validate(diagnosis))
        store.annotate(run_id, PlanNote(plan=plan()))
        probes = [ProbeRecord(name="version", status="pass", evidence=f"/version: {HOSTILE}")]
        store.annotate(run_id, StageNote(stage=stage_record(), probes=probes))
        return run_id


def session_result(
    cache: dict | None = None, turns: int = 3, *, model: str = f"llama-{HOSTILE}", run_id: str = "sessions-1"
) -> RunResult:
    """A session run as a 0.2 bench stores it: the prefix cache's rates and TTFT at each turn.

    By default the engine hit 41% of what could have been 72%, and TTFT grows with the history."""
    by_turn = [
        {
            "turn": turn,
            "requests": 120 - 10 * turn,
            "ttft_ms_p50": 80.0 + 35.0 * turn,
            "ttft_ms_p95": 140.0 + 60.0 * turn,
            "mean_input_tokens": 1000.0 + 850.0 * turn,
        }
        for turn in range(1, turns + 1)
    ]
    return RunResult.model_validate(
        {
            "run_id": run_id,
            "status": "ok",
            "target": {"url": "http://127.0.0.1:8000", "model": model, "server": {"engine": HOSTILE}},
            "load": "sessions: 8 users, 3 turns, think 1s",
            "metrics": {
                "ttft_ms": {"count": 330, "p50": 150.0, "p95": 290.0},
                "requests_ok": 330,
                "cache": cache
                if cache is not None
                else {"theoretical_hit_rate": 0.7234, "cached_tokens_ratio": None, "engine_hit_rate": 0.41},
                "by_turn": by_turn,
            },
        }
    )
