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
from servewise.analysis.stage import startup_times
from servewise.records import Sample
from servewise.store import RunStore

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(slots=True)
class ReportBundle:
    """Everything a report can show; every piece optional. Dicts are the JSON shapes the other parts store."""

    run_id: str | None = None
    created_at: float | None = None
    kind: str | None = None
    summary: Mapping[str, Any] | None = None
    target: Mapping[str, Any] | None = None
    ttft_ms: Sequence[float] = ()
    tpot_ms: Sequence[float] = ()
    samples: Sequence[Sample] = ()
    diagnosis: Mapping[str, Any] | None = None
    plan: Mapping[str, Any] | None = None
    stage: Mapping[str, Any] | None = None
    coldstart: Mapping[str, Any] | None = None
    probes: Sequence[Mapping[str, Any]] = ()
    title: str = "servewise report"
    notes: list[str] = field(default_factory=list)  # where a section's data came from


def bundle_from_store(
    store: RunStore,
    run_id: str,
    *,
    plan: Mapping[str, Any] | None = None,
    stage: Mapping[str, Any] | None = None,
    probes: Sequence[Mapping[str, Any]] | None = None,
    coldstart: Mapping[str, Any] | None = None,
) -> ReportBundle:
    """A stored run's report pieces; parts given here win over those stored in the run's summary."""
    run = store.get_run(run_id)
    summary = run.summary or {}
    notes: list[str] = []
    record_runs, sample_runs = [run.id], [run.id]
    steps = store.list_runs(parent_id=run.id)
    if steps and not store.count_records(run.id):
        # a sweep keeps its records and samples in one child run per rate step
        steps.sort(key=lambda r: r.created_at)
        knee = summary.get("max_rate_meeting_slo")
        rates = {r.id: ((r.spec or {}).get("load") or {}).get("rate") for r in steps}
        at_knee = [r for r in steps if knee and rates[r.id] and math.isclose(rates[r.id], knee, rel_tol=1e-6)]
        record_runs = [r.id for r in at_knee] or [r.id for r in steps]
        sample_runs = [r.id for r in steps]
        if at_knee:
            notes.append(f"TTFT/TPOT distributions are from the knee step ({knee:g} req/s)")
    latencies = (
        request_latencies(record for rid in record_runs for record in store.iter_records(rid))
        if run.kind != "coldstart"
        else {}
    )
    return ReportBundle(
        run_id=run.id,
        created_at=run.created_at,
        kind=run.kind,
        summary=summary,
        target=summary.get("target") or run.target,
        ttft_ms=[float(v) for v in latencies.get("ttft_ms", ())],
        tpot_ms=[float(v) for v in latencies.get("tpot_ms", ())],
        samples=[sample for rid in sample_runs for sample in store.samples(rid)],
        diagnosis=summary.get("diagnosis"),
        plan=plan or summary.get("plan"),
        stage=stage or summary.get("stage"),
        coldstart=coldstart or summary.get("coldstart") or (summary if run.kind == "coldstart" else None),
        probes=list(probes if probes is not None else summary.get("probes") or []),
        notes=notes,
    )


def _num(value: Any, digits: int = 1) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "–"
    return f"{value:,.{digits}f}"


def _money(value: Any) -> str:
    return f"${value:,.2f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def _cheapest_fit(plan: Mapping[str, Any]) -> Mapping[str, Any] | None:
    tiers = [
        t
        for t in plan.get("tiers") or []
        if t.get("fits") and isinstance(t.get("cost_per_million_output_tokens"), (int, float))
    ]
    return min(tiers, key=lambda t: t["cost_per_million_output_tokens"]) if tiers else None


def _recommendation_text(plan: Mapping[str, Any] | None) -> str | None:
    if not plan:
        return None
    rec = plan.get("recommendation")
    if isinstance(rec, str):
        return rec
    if isinstance(rec, Mapping):
        for key in ("text", "summary", "reason", "why"):
            if isinstance(rec.get(key), str):
                return rec[key]
        if rec.get("gpu"):
            return f"{rec.get('replicas', 1)} × {rec.get('num_gpus', 1)}× {rec['gpu']}"
    return None


def _summary_card(bundle: ReportBundle) -> list[dict[str, str]]:
    """Five answers at the top; each says where it came from or what would fill it."""
    summary = bundle.summary or {}
    diagnosis = bundle.diagnosis or {}
    card = []
    stage = bundle.stage or {}
    reasons = stage.get("reasons") or ["run `servewise stage` to place it"]
    card.append({"label": "Stage", "value": stage.get("stage") or "not assessed", "note": reasons[0]})
    primary = diagnosis.get("primary")
    confidence = f"{diagnosis.get('confidence')} confidence" if primary else "no diagnosis stored"
    card.append({"label": "Bottleneck", "value": primary or "not diagnosed", "note": confidence})
    knee = summary.get("max_rate_meeting_slo")
    card.append(
        {
            "label": "Capacity at SLO",
            "value": f"{_num(knee, 2)} req/s" if knee else "not measured",
            "note": "highest rate meeting every SLO in the sweep"
            if knee
            else "sweep with an SLO to find the knee",
        }
    )
    fit = _cheapest_fit(bundle.plan or {})
    card.append(
        {
            "label": "Cost per 1M output tokens",
            "value": _money(fit["cost_per_million_output_tokens"]) if fit else "not planned",
            "note": f"{fit.get('num_gpus', 1)}× {fit.get('gpu')} at the SLO rate"
            if fit
            else "no plan stored",
        }
    )
    next_step = stage.get("next_step") or _recommendation_text(bundle.plan)
    card.append(
        {
            "label": "Next step",
            "value": next_step or "–",
            "note": "the top-ranked production layer" if stage.get("next_step") else "",
        }
    )
    return card


_METRIC_ROWS = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "e2e_ms"))


def _metric_rows(summary: Mapping[str, Any]) -> list[dict[str, str]]:
    metrics = summary.get("metrics") or {}
    rows = []
    for label, key in _METRIC_ROWS:
        stats = metrics.get(key) or {}
        if stats.get("count"):
            cells = {q: _num(stats.get(q)) for q in ("p50", "p90", "p95", "p99", "mean")}
            rows.append({"name": f"{label} (ms)", "count": str(stats["count"]), **cells})
    return rows


def _throughput(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    m = summary.get("metrics") or {}
    if not m:
        return []
    return [
        ("requests ok / failed", f"{m.get('requests_ok', '–')} / {m.get('requests_failed', '–')}"),
        ("requests/s", _num(m.get("requests_per_s"), 2)),
        ("output tokens/s", _num(m.get("output_tokens_per_s"))),
        ("goodput (req/s meeting the SLO)", _num(m.get("goodput_rps"), 2)),
        ("output token counts from", str(m.get("output_tokens_source", "–"))),
        (
            "errors by class",
            ", ".join(f"{k}: {v}" for k, v in (m.get("errors_by_class") or {}).items()) or "none",
        ),
    ]


def _coldstart_view(coldstart: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A coldstart summary (as `servewise coldstart` stores it): per-start chart, spread, verdicts."""
    if not coldstart:
        return None
    runs = startup_times(coldstart)
    stats = (coldstart.get("aggregate") or {}).get("startup_s") or {}
    if runs and not stats.get("count"):
        ordered = sorted(runs)
        stats = {
            "count": len(runs),
            "min": ordered[0],
            "median": ordered[len(ordered) // 2],
            "max": ordered[-1],
        }
    findings = coldstart.get("verdicts") or coldstart.get("findings") or []
    return {
        "chart": _markup(_charts().coldstart_runs(runs)),
        "stats": [
            (k, str(stats[k]) if k == "count" else _num(stats[k], 2))
            for k in ("count", "min", "median", "max", "cv")
            if stats.get(k) is not None
        ],
        "findings": [f for f in findings if isinstance(f, Mapping)],
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
    env.filters["money"] = _money
    return env


def render_report(bundle: ReportBundle) -> str:
    """The report as one HTML string."""
    summary = bundle.summary or {}
    target = dict(bundle.target or summary.get("target") or {})
    slo = summary.get("slo") or {}
    sweep = summary.get("sweep") or []
    plan = bundle.plan or {}
    diagnosis = bundle.diagnosis or {}
    missing: list[str] = []
    sections = {
        "latency_vs_load": _markup(
            _charts().latency_vs_load(sweep, slo.get("targets") or [], summary.get("max_rate_meeting_slo"))
        ),
        "distributions": _markup(_charts().distributions(bundle.ttft_ms, bundle.tpot_ms)),
        "timelines": _markup(_charts().resource_timelines(bundle.samples, diagnosis.get("primary"))),
        "costs": _markup(_charts().tier_costs(plan.get("tiers") or [])),
    }
    hints = {
        "latency_vs_load": "latency-vs-load curves: no sweep in this run (bench --load sweep --slo ...)",
        "distributions": "TTFT/TPOT distributions: no successful streamed requests stored",
        "timelines": "resource timelines: no telemetry samples stored for this run",
        "costs": "tier table and cost chart: no plan (servewise plan RUN)",
    }
    missing += [hints[key] for key, svg in sections.items() if svg is None]
    coldstart = _coldstart_view(bundle.coldstart)
    if coldstart is None:
        missing.append("cold start: not measured (servewise coldstart)")
    if not bundle.stage:
        missing.append("stage and readiness checklist: not assessed (servewise stage)")
    if not bundle.probes:
        missing.append("readiness probes: not run against the target")
    if not diagnosis:
        missing.append("diagnosis: none stored (servewise diagnose RUN)")
    checklist_by_area: dict[str, list[Mapping[str, Any]]] = {}
    for item in (bundle.stage or {}).get("checklist") or []:
        checklist_by_area.setdefault(str(item.get("area", "other")), []).append(item)
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
            status=summary.get("status"),
            load=summary.get("load"),
            client=summary.get("client") or {},
            card=_summary_card(bundle),
            metric_rows=_metric_rows(summary),
            throughput=_throughput(summary),
            slo_targets=slo.get("targets") or [],
            slo_met=slo.get("met"),
            sweep=sweep,
            knee=summary.get("max_rate_meeting_slo"),
            charts=sections,
            diagnosis=diagnosis,
            tiers=plan.get("tiers") or [],
            recommendation=_recommendation_text(plan),
            coldstart=coldstart,
            stage=bundle.stage or {},
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
