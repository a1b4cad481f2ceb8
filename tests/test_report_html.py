"""The HTML report: renders what is present, says what is missing, escapes every server or user string."""

from __future__ import annotations

import re

from report_fixtures import HOSTILE, coldstart, records, samples, store_full_run
from servewise.report.html import ReportBundle, bundle_from_store, render_report, write_report
from servewise.results import RunResult, SweepResult
from servewise.store import RunStore


def test_full_report_has_every_section_and_no_live_markup(tmp_path):
    run_id = store_full_run(tmp_path / "runs.db")
    with RunStore(tmp_path / "runs.db") as store:
        bundle = bundle_from_store(store, run_id, coldstart=coldstart())
    assert len(bundle.ttft_ms) == 300 and bundle.samples
    html = render_report(bundle)
    for section in (
        "chart-latency",
        "chart-distributions",
        "chart-timelines",
        "chart-costs",
        "chart-coldstart",
    ):
        assert f'id="{section}"' in html
    assert html.count("<svg") == 5
    assert 'id="simulated"' in html and "Llama-3.1-8B on RTX 4090" in html
    # every hostile string (model name, probe evidence, diagnosis, tier name, plan reason) stays text
    assert "<script" not in html
    assert html.count("&lt;script&gt;") >= 6
    # offline: no external resources of any kind
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html
    assert "Not in this report" not in html  # nothing missing
    assert "growth production" in html and "$0.16" in html and "6.00 req/s" in html


def test_bottleneck_panel_is_marked(tmp_path):
    run_id = store_full_run(tmp_path / "runs.db")
    with RunStore(tmp_path / "runs.db") as store:
        html = render_report(bundle_from_store(store, run_id))
    assert "KV cache — bottleneck (kv_cache)" in html
    assert "Host CPU — bottleneck" not in html


def test_empty_bundle_says_what_is_missing():
    html = render_report(ReportBundle())
    assert "<svg" not in html
    for hint in (
        "no sweep",
        "no successful streamed requests",
        "no telemetry samples",
        "no plan",
        "cold start: not measured",
        "not assessed",
        "diagnosis: none stored",
    ):
        assert hint in html
    assert 'id="simulated"' not in html


def test_real_target_is_not_called_simulated(tmp_path):
    run_id = store_full_run(tmp_path / "runs.db", simulated=False)
    with RunStore(tmp_path / "runs.db") as store:
        html = render_report(bundle_from_store(store, run_id))
    assert 'id="simulated"' not in html


def test_write_report_is_atomic_and_complete(tmp_path):
    path = write_report(tmp_path / "out" / "r.html", ReportBundle(title=HOSTILE))
    text = path.read_text()
    assert text.rstrip().endswith("</html>")
    assert "<script" not in text
    assert not list(path.parent.glob("*.partial"))


def test_sweep_report_reads_its_steps(tmp_path):
    """A sweep keeps records and samples in one child run per step; the report finds them."""
    with RunStore(tmp_path / "runs.db") as store:
        parent = store.create_run(
            kind="sweep", spec={}, labels={}, tool_version="0", target={}, environment={}
        )
        for rate, n in ((2.0, 40), (4.0, 60)):
            child = store.create_run(
                kind="sweep-step",
                spec={"load": {"kind": "poisson", "rate": rate}},
                labels={},
                tool_version="0",
                target={},
                environment={},
                parent_id=parent,
            )
            store.append_records(child, records(n, seed=int(rate)))
            store.append_samples(child, samples(10))
            store.finish_run(child, RunResult(run_id=child, status="ok"))
        store.finish_run(parent, SweepResult(run_id=parent, status="ok", max_rate_meeting_slo=4.0, sweep=[]))
        bundle = bundle_from_store(store, parent)
    assert len(bundle.ttft_ms) == 60  # the knee step only
    assert len(bundle.samples) == 2 * len(samples(10))  # the whole sweep's timeline
    assert "knee step (4 req/s)" in render_report(bundle)
