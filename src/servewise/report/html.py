"""The self-contained HTML report: one file, no CDN, no JavaScript, every server or user string escaped.

``render_report(bundle)`` renders whatever the bundle holds and says what is missing; ``bundle_from_store``
gathers a stored run's pieces so ``servewise report RUN`` (and ``doctor``) re-render any run without
touching the target. Charts are inline SVG from :mod:`servewise.report.charts`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from servewise.analysis.metrics import request_latencies
from servewise.format import money, number, percent
from servewise.records import Sample
from servewise.report.terminal import outcome_rows
from servewise.results import (
    ChecklistRecord,
    ColdstartResult,
    DiagnosisResult,
    PlanRecord,
    ProbeRecord,
    RunResult,
    SignRecord,
    StageRecord,
    StartStats,
    SweepResult,
    SweepStep,
    TurnRow,
    UnitPlan,
)
from servewise.store import RunRow, Store

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(slots=True)
class ReportBundle:
    """Everything a report can show; every piece optional. ``target`` is the server's self-description."""

    run_id: str | None = None
    created_at: float | None = None
    kind: str | None = None
    result: RunResult | SweepResult | None = None
    target: Mapping[str, Any] | None = None
    ttft_ms: Sequence[float] = ()
    tpot_ms: Sequence[float] = ()
    samples: Sequence[Sample] = ()
    diagnosis: DiagnosisResult | None = None
    plan: PlanRecord | UnitPlan | None = None  # in tokens, or in images or reranked documents
    stage: StageRecord | None = None
    coldstart: ColdstartResult | None = None
    probes: Sequence[ProbeRecord] = ()
    title: str = "servewise report"
    notes: list[str] = field(default_factory=list)  # where a section's data came from


def bundle_from_store(
    store: Store,
    run_id: str,
    *,
    plan: PlanRecord | UnitPlan | None = None,
    stage: StageRecord | None = None,
    probes: Sequence[ProbeRecord] | None = None,
    coldstart: ColdstartResult | None = None,
) -> ReportBundle:
    """A stored run's report pieces; parts given here win over those noted on the run.

    A coldstart run's own result is its cold start; a bench's diagnosis is its own, a sweep's doctor's note.
    """
    run = store.get_run(run_id)
    measured = run.measured
    own_coldstart = run.result if isinstance(run.result, ColdstartResult) else None
    notes = run.annotations
    knee = measured.max_rate_meeting_slo if isinstance(measured, SweepResult) else None
    report_notes: list[str] = []
    record_runs, sample_runs = [run.id], [run.id]
    steps = store.list_runs(parent_id=run.id)
    if steps and not store.count_records(run.id):
        # a sweep keeps its records and samples in one child run per rate step
        steps.sort(key=lambda r: r.created_at)
        at_knee = [r for r in steps if _ran_at(r, knee)]
        record_runs = [r.id for r in at_knee] or [r.id for r in steps]
        sample_runs = [r.id for r in steps]
        if at_knee:
            report_notes.append(f"TTFT/TPOT distributions are from the knee step ({knee:g} req/s)")
    latencies = (
        request_latencies(record for rid in record_runs for record in store.iter_records(rid))
        if run.kind != "coldstart"
        else {}
    )
    return ReportBundle(
        run_id=run.id,
        created_at=run.created_at,
        kind=run.kind,
        result=measured,
        target=(run.result.target if run.result else None) or run.target,
        ttft_ms=[float(v) for v in latencies.get("ttft_ms", ())],
        tpot_ms=[float(v) for v in latencies.get("tpot_ms", ())],
        samples=[sample for rid in sample_runs for sample in store.samples(rid)],
        diagnosis=notes.diagnosis or (measured.diagnosis if measured else None),
        plan=plan or (notes.plan.plan if notes.plan else None),
        stage=stage or (notes.stage.stage if notes.stage else None),
        coldstart=coldstart or own_coldstart,
        probes=list(probes if probes is not None else notes.stage.probes if notes.stage else []),
        notes=report_notes,
    )


def _ran_at(step: RunRow, rate: float | None) -> bool:
    """Did this sweep step offer ``rate`` req/s?"""
    offered = (step.spec.get("load") or {}).get("rate")
    if not rate or not offered:
        return False
    return math.isclose(offered, rate, rel_tol=1e-6)


def _num(value: Any, digits: int = 1) -> str:
    return number(value, f",.{digits}f", missing="–")


def _summary_card(bundle: ReportBundle) -> list[dict[str, str]]:
    """Five answers at the top; each says where it came from or what would fill it."""
    stage, diagnosis = bundle.stage, bundle.diagnosis
    card = []
    reasons = (stage.reasons if stage else None) or ["run `servewise stage` to place it"]
    card.append(
        {"label": "Stage", "value": (stage.stage if stage else None) or "not assessed", "note": reasons[0]}
    )
    primary = diagnosis.primary if diagnosis else None
    confidence = f"{diagnosis.confidence} confidence" if diagnosis and primary else "no diagnosis stored"
    card.append({"label": "Bottleneck", "value": primary or "not diagnosed", "note": confidence})
    knee = _knee(bundle.result)
    card.append(
        {
            "label": "Capacity at SLO",
            "value": f"{_num(knee, 2)} req/s" if knee else "not measured",
            "note": "highest rate meeting every SLO in the sweep"
            if knee
            else "sweep with an SLO to find the knee",
        }
    )
    card.append(_cost_card(bundle.plan))
    layer = stage.next_step if stage else None
    card.append(
        {
            "label": "Next step",
            "value": layer or (bundle.plan.recommendation if isinstance(bundle.plan, PlanRecord) else None) or "–",
            "note": "the top-ranked production layer" if layer else "",
        }
    )
    return card


def _cost_card(plan: PlanRecord | UnitPlan | None) -> dict[str, str]:
    """The cheapest fitting tier's cost, in the plan's unit: 1M output tokens, 1,000 images, 1M documents."""
    if isinstance(plan, UnitPlan):
        cheapest = plan.cheapest()
        label = plan.cost_label.replace("$ per", "Cost per")
        if cheapest is None:
            return {"label": label, "value": "not priced", "note": "give the GPU's price: plan --price GPU=$/hour"}
        measured = " (measured)" if cheapest.measured else ""
        return {"label": label, "value": money(cheapest.cost), "note": f"1× {cheapest.gpu}{measured}"}
    fit = plan.cheapest_fit() if plan else None
    return {
        "label": "Cost per 1M output tokens",
        "value": money(fit.cost_per_million_output_tokens) if fit else "not planned",
        "note": f"{fit.num_gpus}× {fit.gpu} at the SLO rate" if fit else "no plan stored",
    }


def _knee(result: RunResult | None) -> float | None:
    return result.max_rate_meeting_slo if isinstance(result, SweepResult) else None


def _sweep(result: RunResult | None) -> list[SweepStep]:
    return result.sweep if isinstance(result, SweepResult) else []


_METRIC_ROWS = (("TTFT", "ttft"), ("TPOT", "tpot"), ("ITL", "itl"), ("E2E", "e2e"))


def _metric_rows(result: RunResult | None) -> list[dict[str, str]]:
    if result is None:
        return []
    rows = []
    for label, metric in _METRIC_ROWS:
        stats = result.metrics.distribution(metric)
        if stats.count:
            cells = {q: _num(stats.stat(q)) for q in ("p50", "p90", "p95", "p99", "mean")}
            rows.append({"name": f"{label} (ms)", "count": str(stats.count), **cells})
    return rows


def _throughput(result: RunResult | None) -> list[tuple[str, str]]:
    if result is None:
        return []
    m = result.metrics
    return [
        ("requests ok / failed", f"{m.requests_ok} / {m.requests_failed}"),
        ("requests/s", _num(m.requests_per_s, 2)),
        *outcome_rows(result),
        ("output tokens/s", _num(m.output_tokens_per_s)),
        ("goodput (req/s meeting the SLO)", _num(m.goodput_rps, 2)),
        ("output token counts from", m.output_tokens_source),
        ("errors by class", ", ".join(f"{k}: {v}" for k, v in m.errors_by_class.items()) or "none"),
    ]


# (field, label, what it means): the workload's bound first, then what the server and the engine say
_CACHE_RATES = (
    ("theoretical_hit_rate", "theoretical", "the share of prompt tokens the workload could have reused"),
    ("cached_tokens_ratio", "served from cache", "the share the server said it served from its cache"),
    ("engine_hit_rate", "engine", "the hit rate the engine's own prefix-cache counters report"),
)
_CACHE_GAP = 0.10  # an engine this far below what could be reused evicted or missed it


def _known(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _cache_view(result: RunResult | None) -> dict[str, Any] | None:
    """The prefix-cache rates, or None for a run that shows nothing to say (unknown, or a cache-cold zero)."""
    cache = result.metrics.cache if result else None
    if cache is None or not cache.any_reuse:  # every rate unknown or zero: a cache-cold run
        return None
    rates = {name: _known(getattr(cache, name)) for name, _, _ in _CACHE_RATES}
    theoretical, engine = rates["theoretical_hit_rate"], rates["engine_hit_rate"]
    gap = theoretical - engine if theoretical is not None and engine is not None else None
    return {
        "rates": [
            (label, "unknown" if rates[name] is None else percent(rates[name] or 0.0, 1), meaning)
            for name, label, meaning in _CACHE_RATES
        ],
        "gap": (
            f"The engine's hit rate is {gap * 100:.0f} points below the theoretical one: "
            "the cache evicted or missed what it could have reused."
            if gap is not None and gap > _CACHE_GAP
            else None
        ),
    }


def _turns_view(result: RunResult | None) -> dict[str, Any] | None:
    """TTFT by conversation turn, for a run of two turns or more; single-turn runs show nothing."""
    rows: list[TurnRow] = sorted(result.metrics.by_turn or [], key=lambda r: r.turn) if result else []
    if len(rows) < 2:
        return None
    return {"rows": rows, "chart": _markup(_charts().ttft_by_turn(rows))}


def _from_knee(result: RunResult | None) -> str | None:
    """A sweep's top-level metrics are its knee step's: the sections drawn from them say so."""
    knee = _knee(result)
    return f"From the knee step ({knee:g} req/s)." if knee else None


def _coldstart_view(coldstart: ColdstartResult | None) -> dict[str, Any] | None:
    """A coldstart result (as `servewise coldstart` stores it): per-start chart, spread, verdicts."""
    if coldstart is None:
        return None
    runs = coldstart.startup_times()
    stats = coldstart.aggregate.startup_s
    if runs and not stats.count:
        ordered = sorted(runs)
        stats = StartStats(
            count=len(runs), min=ordered[0], median=ordered[len(ordered) // 2], max=ordered[-1]
        )
    spread = (("min", stats.min), ("median", stats.median), ("max", stats.max), ("cv", stats.cv))
    return {
        "chart": _markup(_charts().coldstart_runs(runs)),
        "stats": [("count", str(stats.count))]
        + [(name, _num(value, 2)) for name, value in spread if value is not None],
        "findings": coldstart.verdicts,
    }


_TICKS = {"yes": "✓", "no": "✗", "unknown": "?"}


def _signs_view(signs: Sequence[SignRecord], production: bool) -> list[dict[str, str]]:
    """Each sign ticked; ``toward`` is pass where it points to production, fail where to prototype."""
    out = []
    for sign in signs:
        known = sign.status in ("yes", "no")
        toward = "unknown" if not known else "pass" if (sign.status == "yes") == production else "fail"
        out.append(
            {
                "tick": _TICKS.get(sign.status, "?"),
                "status": sign.status,
                "toward": toward,
                "text": sign.text,
                "evidence": sign.evidence,
            }
        )
    return out


def _stage_view(stage: StageRecord | None) -> dict[str, Any] | None:
    """The stage section's signs, traffic, forecast and chart, in the terminal's words."""
    if stage is None:
        return None
    from servewise.report.stage import forecast_lines, traffic_summary

    traffic, outlook = stage.traffic, stage.forecast
    return {
        "production": _signs_view(stage.moving_to_production_if, True),
        "prototype": _signs_view(stage.closer_to_prototype_if, False),
        "traffic": traffic_summary(traffic) if traffic else [],
        "source": traffic.source if traffic else None,
        "forecast": forecast_lines(outlook) if outlook else [],
        "forecast_note": outlook.note if outlook else None,
        "chart": _markup(_charts().traffic_forecast(traffic, outlook)) if traffic else None,
        "traffic_note": stage.traffic_note,
    }


def _charts():
    """matplotlib loads only when a report is drawn: every other command starts without its 40 MB."""
    from servewise.report import charts

    return charts


def _markup(svg: str | None) -> Markup | None:
    """Only charts this module drew are trusted as markup; matplotlib has escaped any text inside."""
    return Markup(svg) if svg else None


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["money"] = money
    return env


def _status(bundle: ReportBundle) -> str | None:
    """The run's own status: its measured result's, or a coldstart run's own cold start's."""
    if bundle.result is not None:
        return bundle.result.status
    return bundle.coldstart.status if bundle.kind == "coldstart" and bundle.coldstart else None


def render_report(bundle: ReportBundle) -> str:
    """The report as one HTML string."""
    result = bundle.result
    target = dict(bundle.target or (result.target if result else None) or {})
    slo_targets = result.slo.targets if result else []
    sweep = _sweep(result)
    knee = _knee(result)
    tiers = bundle.plan.tiers if isinstance(bundle.plan, PlanRecord) else []
    unit_plan = bundle.plan if isinstance(bundle.plan, UnitPlan) else None
    diagnosis = bundle.diagnosis
    missing: list[str] = []
    sections = {
        "latency_vs_load": _markup(_charts().latency_vs_load(sweep, slo_targets, knee)),
        "distributions": _markup(_charts().distributions(bundle.ttft_ms, bundle.tpot_ms)),
        "timelines": _markup(
            _charts().resource_timelines(bundle.samples, diagnosis.primary if diagnosis else None)
        ),
        "costs": _markup(_charts().tier_costs(tiers)),
    }
    hints = {
        "latency_vs_load": "latency-vs-load curves: no sweep in this run (bench --load sweep --slo ...)",
        "distributions": "TTFT/TPOT distributions: no successful streamed requests stored",
        "timelines": "resource timelines: no telemetry samples stored for this run",
        "costs": "tier table and cost chart: no plan (servewise plan RUN)",
    }
    missing += [hints[key] for key, svg in sections.items() if svg is None and not (key == "costs" and unit_plan)]
    coldstart = _coldstart_view(bundle.coldstart)
    if coldstart is None:
        missing.append("cold start: not measured (servewise coldstart)")
    if not bundle.stage:
        missing.append("stage and readiness checklist: not assessed (servewise stage)")
    if not bundle.probes:
        missing.append("readiness probes: not run against the target")
    if not diagnosis:
        missing.append("diagnosis: none stored (servewise diagnose RUN)")
    checklist_by_area: dict[str, list[ChecklistRecord]] = {}
    for item in bundle.stage.checklist if bundle.stage else []:
        checklist_by_area.setdefault(item.area, []).append(item)
    created = (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(bundle.created_at)) if bundle.created_at else None
    )
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=bundle.title,
            run_id=bundle.run_id,
            kind=bundle.kind,
            created=created,
            generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            target=target,
            simulated=bool(target.get("simulated")),
            status=_status(bundle),
            load=result.load if result else None,
            client=result.client if result else None,
            card=_summary_card(bundle),
            metric_rows=_metric_rows(result),
            throughput=_throughput(result),
            cache=_cache_view(result),
            turns=_turns_view(result),
            from_knee=_from_knee(result),
            slo_targets=slo_targets,
            sweep=sweep,
            knee=knee,
            charts=sections,
            diagnosis=diagnosis,
            tiers=tiers,
            recommendation=bundle.plan.recommendation if isinstance(bundle.plan, PlanRecord) else None,
            unit_plan=unit_plan,
            coldstart=coldstart,
            stage=bundle.stage,
            stage_view=_stage_view(bundle.stage),
            checklist_by_area=checklist_by_area,
            probes=bundle.probes,
            missing=missing,
            notes=bundle.notes,
        )
    )


def write_report(path: str | Path, bundle: ReportBundle) -> Path:
    """Render and write atomically (a half-written report is never left behind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(render_report(bundle), encoding="utf-8")
    partial.replace(path)
    return path
