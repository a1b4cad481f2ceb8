"""Traffic series read from a real Prometheus server (Debian's `prometheus` package) that scraped a target
written here: volume triples and request size doubles halfway, and the series say so. (Weeks of history
are backfilled in tests/test_stage_prometheus.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prometheus_server import free_port, running_prometheus
from servewise.telemetry.promql import PromQLError, TrafficQueries, fetch_traffic, query_range

PHASE_S = 8.0  # the target's traffic changes after this many seconds


class _Target(BaseHTTPRequestHandler):
    """vLLM-named counters: 5 req/s of 100-token prompts, then 15 req/s of 200-token prompts."""

    started = time.time()

    def do_GET(self) -> None:
        elapsed = time.time() - self.started
        early = min(elapsed, PHASE_S)
        late = max(0.0, elapsed - PHASE_S)
        requests = 5 * early + 15 * late
        prompt_tokens = 5 * early * 100 + 15 * late * 200
        body = (
            "# TYPE vllm:request_success counter\n"
            f'vllm:request_success_total{{model_name="tiny"}} {requests:.3f}\n'
            "# TYPE vllm:request_prompt_tokens histogram\n"
            f'vllm:request_prompt_tokens_sum{{model_name="tiny"}} {prompt_tokens:.3f}\n'
            f'vllm:request_prompt_tokens_count{{model_name="tiny"}} {requests:.3f}\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[str]:
    _Target.started = time.time()
    target = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        with running_prometheus(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{target.server_port}"]) as url:
            _Target.started = time.time()  # the traffic clock starts once Prometheus scrapes
            yield url
    finally:
        target.shutdown()


@pytest.mark.slow
def test_traffic_series_from_a_real_prometheus(prometheus):
    time.sleep(max(0.0, 2 * PHASE_S + 1.5 - (time.time() - _Target.started)))
    # from t=3 s (rate() has two scrapes by then) to t=17: 5 req/s of 100 tokens, then 15 req/s of 200
    start, end = _Target.started + 3, _Target.started + 2 * PHASE_S + 1
    series = fetch_traffic(prometheus, span_s=end - start, step_s=1, window_s=3, end=end)
    assert series is not None and series.queries.name == "vllm"
    assert len(series.volume) >= 10 and len(series.size) >= 10
    early = [v for t, v in series.volume if t < _Target.started + PHASE_S - 1]
    late = [v for t, v in series.volume if t > _Target.started + PHASE_S + 4]
    assert 4 < sum(early) / len(early) < 6 and 13 < sum(late) / len(late) < 17, series.volume
    sizes = [v for t, v in series.size if t > _Target.started + PHASE_S + 4]
    assert sum(sizes) / len(sizes) == pytest.approx(200, rel=0.05)
    assert series.errors == [] and series.histograms == []  # the target exposes neither
    assert series.source.startswith("Prometheus http://127.0.0.1")


@pytest.mark.slow
def test_no_engine_series_and_bad_queries(prometheus):
    none = TrafficQueries("nothing", "sum(rate(no_such_metric_total[{window}]))")
    assert fetch_traffic(prometheus, span_s=10, step_s=1, window_s=3, queries=none) is None
    with pytest.raises(PromQLError, match="refused"):
        query_range(prometheus, "sum(rate(", time.time() - 10, time.time(), 1)


def test_unreachable_prometheus_is_one_clear_error():
    port = free_port()
    with pytest.raises(PromQLError, match="cannot reach Prometheus"):
        query_range(f"http://127.0.0.1:{port}", "up", time.time() - 60, time.time(), 15)
