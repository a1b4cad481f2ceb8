"""The live exporter for `bench --prometheus-port`, scraped over HTTP and parsed by prometheus_client."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from servewise.records import ErrorClass, RequestRecord
from servewise.report.prometheus import LiveMetrics


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_exporter_serves_counters_gauges_and_histograms():
    live = LiveMetrics("run-1", target="http://127.0.0.1:8000", model="tiny", load="poisson 4 req/s")
    port = live.serve(0)
    try:
        ok = [
            RequestRecord(index=i, t_sched=i, t_send=i, t_first=i + 0.09, t_end=i + 0.09 + 0.02 * 9, output_tokens=10,
                          input_tokens=100)
            for i in range(5)
        ]  # fmt: skip
        failed = RequestRecord(index=9, t_sched=9, t_send=9, error=ErrorClass.TIMEOUT)
        live.observe([*ok, failed])
        live.update(in_flight=3, offered_rate=4.0, completion_rate=3.5, schedule_lag_p99_ms=1.2)
        got = _scrape(port)
    finally:
        live.close()
    run = ("run_id", "run-1")
    assert got[("servewise_requests_total", (("outcome", "ok"), run))] == 5
    assert got[("servewise_requests_total", (("outcome", "failed"), run))] == 1
    assert got[("servewise_request_errors_total", (("error_class", "timeout"), run))] == 1
    assert got[("servewise_output_tokens_total", (run,))] == 50
    assert got[("servewise_ttft_seconds_count", (run,))] == 5
    assert abs(got[("servewise_ttft_seconds_sum", (run,))] - 0.45) < 1e-9
    assert abs(got[("servewise_tpot_seconds_sum", (run,))] - 5 * 0.02) < 1e-9
    assert got[("servewise_ttft_seconds_bucket", (("le", "0.1"), run))] == 5
    assert got[("servewise_in_flight", (run,))] == 3
    assert got[("servewise_completion_rate_rps", (run,))] == 3.5
    info = [k for k in got if k[0] == "servewise_run_info"]
    assert info and ("model", "tiny") in info[0][1]
    # a separate registry: no process/gc collectors from the default one
    assert not any(name.startswith(("process_", "python_gc")) for name, _ in got)


def test_grafana_dashboard_queries_metrics_that_exist():
    """Every servewise_* series the dashboard plots is one the exporter writes."""
    path = Path(__file__).resolve().parents[1] / "src/servewise/report/grafana/servewise-dashboard.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 8
    live = LiveMetrics("r")
    live.observe(
        [
            RequestRecord(
                index=0, t_sched=0, t_send=0, t_first=0.1, t_end=0.3, output_tokens=3, input_tokens=9
            ),
            RequestRecord(index=1, t_sched=0, t_send=0, error=ErrorClass.HTTP_STATUS, status=503),
        ]
    )
    live.update(in_flight=1, offered_rate=1, completion_rate=1, schedule_lag_p99_ms=1, client_cpu_percent=1)
    exposed = {s.name for f in text_string_to_metric_families(live.exposition().decode()) for s in f.samples}
    used = {name for expr in exprs for name in re.findall(r"\b(servewise_[a-z0-9_]+)", expr)}
    assert used and used <= exposed, used - exposed
