"""The stage rendered: on an 80-column terminal (signs ticked, traffic, forecast, a text chart of the daily
peaks) and in the HTML report (the chart SVG, the forecast, every server string escaped)."""

from __future__ import annotations

from rich.console import Console

from report_fixtures import HOSTILE, stage_record
from servewise.report.html import ReportBundle, render_report
from servewise.report.stage import render_assessment
from servewise.report.traffic_chart import traffic_chart
from servewise.results.stage import SignRecord, StageRecord


def _terminal(record: StageRecord, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(render_assessment(record))
    return console.export_text()


def test_terminal_render_fits_80_columns_with_forecast_and_ticks():
    record = stage_record(traffic=True)
    assert record.forecast is not None and record.forecast.crossing_date is not None
    assert record.traffic is not None and len(record.traffic.days) >= 21
    text = _terminal(record)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert record.forecast.crossing_date in text
    assert "Moving into production if…" in text and "Still closer to prototype if…" in text
    for tick in ("✓", "✗", "?"):
        assert f"  {tick} " in text
    assert "✓ users or internal operations now depend on the system" in text
    # the traffic line, the forecast, the chart (bars, the capacity row, the crossing marked on the axis)
    assert "requests/day" in text and "active days 21 of 21" in text
    assert "reaches capacity: " + record.forecast.crossing_date in text
    assert "Daily peak (req/s), its trend and capacity" in text and "█" in text and "▲" in text
    assert f"{record.forecast.capacity_rps:.3g} ┤─" in text
    # the not-yet layers each say why building them now would be overbuilding
    assert record.not_yet and all(layer.not_yet in " ".join(text.split()) for layer in record.not_yet)


def test_text_chart_is_at_most_80_wide_and_8_rows_high():
    record = stage_record(traffic=True)
    assert record.traffic is not None
    many = record.traffic.model_copy(update={"days": record.traffic.days * 4})  # 84 columns of days
    for traffic in (record.traffic, many):
        lines = traffic_chart(traffic, record.forecast)
        assert all(line.cell_len <= 80 for line in lines)
        assert sum(1 for line in lines if "┤" in line.plain or "│" in line.plain) == 8
    assert traffic_chart(record.traffic.model_copy(update={"days": []}), record.forecast) == []


def test_markup_in_evidence_prints_literally():
    record = stage_record(traffic=True)
    sign = SignRecord(key="x", text="[red]text[/red]", status="unknown", evidence="[bold]evidence[/bold] $x")
    record = record.model_copy(
        update={"moving_to_production_if": [*record.moving_to_production_if, sign], "reasons": ["[blink]why"]}
    )
    text = _terminal(record)
    assert "[bold]evidence[/bold] $x" in text
    assert "? [red]text[/red]" in text and "[blink]why" in text
    assert f"(prometheus {HOSTILE})" in " ".join(text.split())  # the hostile source, as text


def test_html_report_has_the_chart_the_forecast_and_escapes_sign_evidence():
    record = stage_record(traffic=True)
    assert record.forecast is not None and record.forecast.crossing_date
    assert any(HOSTILE in s.evidence for s in record.moving_to_production_if)
    html = render_report(ReportBundle(stage=record))
    stage = html.split('<section id="stage">', 1)[1].split("</section>", 1)[0]
    assert 'id="chart-traffic"' in stage and stage.count("<svg") == 1
    assert record.forecast.crossing_date in stage
    assert 'id="forecast"' in stage and 'id="traffic-summary"' in stage
    assert 'id="signs-production"' in stage and 'id="signs-prototype"' in stage
    assert '<span class="tick pass" title="yes">✓</span>' in stage
    assert '<span class="tick fail" title="no">✗</span>' in stage
    # the hostile source in a sign's evidence, the capacity's source: text, never markup
    assert "<script" not in html
    assert "(prometheus &lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;)</div>" in stage
    assert "--capacity &lt;script&gt;" in stage
    assert 'id="not-yet"' in stage and record.not_yet[0].not_yet.split(";")[0] in stage
    assert 'id="traffic-note"' not in stage


def test_a_record_without_traffic_has_no_chart_and_says_why():
    record = stage_record()
    assert record.traffic is None and record.forecast is None and record.traffic_note
    text = _terminal(record)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "no production traffic in Prometheus" in text
    assert "Daily peak (req/s)" not in text and "┤" not in text and "Forecast" not in text
    html = render_report(ReportBundle(stage=record))
    stage = html.split('<section id="stage">', 1)[1].split("</section>", 1)[0]
    assert "<svg" not in stage and 'id="chart-traffic"' not in stage and 'id="forecast"' not in stage
    assert '<p class="unknown" id="traffic-note">no production traffic in Prometheus' in stage


def test_traffic_note_is_escaped():
    record = stage_record().model_copy(update={"traffic_note": f"no traffic at {HOSTILE}"})
    html = render_report(ReportBundle(stage=record))
    assert "<script" not in html and "no traffic at &lt;script&gt;" in html
    assert f"no traffic at {HOSTILE}" in " ".join(_terminal(record).split())
