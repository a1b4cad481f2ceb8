"""The HTML report: renders what is present, says what is missing, escapes every server or user string."""

from __future__ import annotations

import re

import pytest

from report_fixtures import HOSTILE, coldstart, records, samples, session_result, store_full_run
from servewise.report import charts
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
    # where the evidence was read (the serving host or the client's), and by what, escaped
    assert "<td>server<br><small>the engine&#39;s /metrics &lt;script&gt;" in html
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


def _stored_session_run(store_path, result_of=session_result, **kwargs) -> str:
    """A session bench stored as the runner stores it; ``kwargs`` go to ``session_result``."""
    with RunStore(store_path) as store:
        run_id = store.create_run(
            kind="bench", spec={}, labels={}, tool_version="0.2", target={}, environment={}
        )
        store.append_records(run_id, records(60))
        store.finish_run(run_id, result_of(run_id=run_id, **kwargs))
        return run_id


def _rows(html: str, section: str) -> list[list[str]]:
    """The text of each table row's cells in one section of the report."""
    body = html.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
        if "<td" in row
    ]


def test_session_run_shows_the_prefix_cache_and_ttft_by_turn(tmp_path):
    run_id = _stored_session_run(tmp_path / "runs.db")
    with RunStore(tmp_path / "runs.db") as store:
        html = render_report(bundle_from_store(store, run_id))
    assert [row[:2] for row in _rows(html, "prefix-cache")] == [
        ["theoretical", "72.3%"],
        ["served from cache", "unknown"],
        ["engine", "41.0%"],
    ]
    assert "could have reused" in html and "said it served from its cache" in html
    assert "engine&#39;s own prefix-cache counters" in html
    assert 'id="cache-gap"' in html and "31 points below the theoretical one" in html
    assert "the cache evicted or missed what it could have reused" in html
    assert _rows(html, "ttft-by-turn") == [
        ["1", "110", "115.0", "200.0", "1,850"],
        ["2", "100", "150.0", "260.0", "2,700"],
        ["3", "90", "185.0", "320.0", "3,550"],
    ]
    chart = html.split('id="chart-turns">', 1)[1].split("</svg>", 1)[0]
    assert "TTFT by conversation turn" in chart and "mean prompt tokens" in chart
    # the new sections sit beside the rest, and the server's strings (model, engine) stay text
    assert html.index('id="metrics"') < html.index('id="prefix-cache"') < html.index('id="ttft-by-turn"')
    assert "<script" not in html
    assert html.count("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;") >= 1
    hints = html.split('id="missing"', 1)[1]
    assert "cache" not in hints and "turn" not in hints  # no hint for these: most runs are single-turn


@pytest.mark.parametrize(
    ("cache", "turns"),
    [
        ({"theoretical_hit_rate": 0.0, "cached_tokens_ratio": 0.0, "engine_hit_rate": 0.0}, 1),
        ({"theoretical_hit_rate": 0.0, "cached_tokens_ratio": None, "engine_hit_rate": None}, 0),
        ({"theoretical_hit_rate": None, "cached_tokens_ratio": None, "engine_hit_rate": None}, 1),
    ],
    ids=["zeros-one-turn", "cold-single-turn", "all-unknown"],
)
def test_cache_cold_single_turn_run_shows_neither(cache, turns):
    """A cold-cache single-turn run reads as it did before these sections existed, byte for byte."""
    result = session_result(cache, turns)
    html = render_report(ReportBundle(result=result))
    assert "Prefix cache" not in html and 'id="prefix-cache"' not in html
    assert "TTFT by turn" not in html and 'id="ttft-by-turn"' not in html
    metrics = result.metrics.model_copy(update={"cache": None, "by_turn": None})
    assert html == render_report(ReportBundle(result=result.model_copy(update={"metrics": metrics})))


def test_cache_block_without_a_gap_and_a_sweeps_knee(tmp_path):
    """An engine within 10 points of what could be reused gets no note; a sweep's rates are its knee's."""
    cache = {"theoretical_hit_rate": 0.5, "cached_tokens_ratio": 0.45, "engine_hit_rate": 0.42}
    knee = session_result(cache, turns=1).model_dump(by_alias=True)
    sweep = SweepResult.model_validate({**knee, "max_rate_meeting_slo": 4.0, "sweep": []})
    html = render_report(ReportBundle(result=sweep))
    assert [row[1] for row in _rows(html, "prefix-cache")] == ["50.0%", "45.0%", "42.0%"]
    assert 'id="cache-gap"' not in html and "evicted" not in html
    assert "From the knee step (4 req/s)." in html
    assert 'id="ttft-by-turn"' not in html  # one turn: nothing to compare


def test_engine_only_cache_hit_is_shown():
    """Nothing in the workload was shareable, yet the engine hit: worth showing, with nothing to compare."""
    cache = {"theoretical_hit_rate": 0.0, "cached_tokens_ratio": None, "engine_hit_rate": 0.2}
    html = render_report(ReportBundle(result=session_result(cache, turns=0)))
    assert [row[1] for row in _rows(html, "prefix-cache")] == ["0.0%", "unknown", "20.0%"]
    assert 'id="cache-gap"' not in html


def test_ttft_by_turn_chart_is_deterministic():
    rows = session_result(turns=4).metrics.by_turn or []
    first = charts.ttft_by_turn(rows)
    assert first is not None and first == charts.ttft_by_turn(list(reversed(rows)))
    assert first.startswith("<svg") and "<dc:date>" not in first
    assert charts.ttft_by_turn(rows[:1]) is None
