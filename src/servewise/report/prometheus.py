"""Live run metrics in Prometheus format for ``bench --prometheus-port P``.

The bench parent process feeds finished records (``observe``) and, about once a second, the gauges it
already tracks (``update``). Metrics live on their own registry, so nothing else in the process (or a
library's default collectors) leaks into the exposition. Latency histograms use seconds, as Prometheus
conventions ask; TPOT is vLLM's definition (first token excluded), as in DESIGN.md's glossary.
"""

from __future__ import annotations

from collections.abc import Iterable
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from servewise.records import RequestRecord

# Buckets that resolve both a fast TPOT (a few ms) and a queued TTFT (tens of seconds).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.15,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    80.0,
)
PREFIX = "servewise"


class LiveMetrics:
    """Counters, gauges and histograms of one running bench, served over HTTP while it runs."""

    def __init__(self, run_id: str, target: str = "", model: str = "", load: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None
        labels = ("run_id",)
        self._run = (run_id,)
        info = Gauge(
            f"{PREFIX}_run_info",
            "The running bench: target, model and load (value is always 1)",
            ("run_id", "target", "model", "load"),
            registry=self.registry,
        )
        info.labels(run_id, target, model, load).set(1)
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Finished requests by outcome (ok or failed)",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.errors = Counter(
            f"{PREFIX}_request_errors",
            "Failed requests by error class",
            (*labels, "error_class"),
            registry=self.registry,
        )
        self.output_tokens = Counter(
            f"{PREFIX}_output_tokens", "Output tokens of successful requests", labels, registry=self.registry
        )
        self.input_tokens = Counter(
            f"{PREFIX}_input_tokens", "Input tokens of successful requests", labels, registry=self.registry
        )
        self.ttft = Histogram(
            f"{PREFIX}_ttft_seconds",
            "Time to first token",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tpot = Histogram(
            f"{PREFIX}_tpot_seconds",
            "Time per output token after the first",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.e2e = Histogram(
            f"{PREFIX}_e2e_seconds",
            "End-to-end request latency",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight", "Requests sent and not yet finished", labels, registry=self.registry
        )
        self.offered_rate = Gauge(
            f"{PREFIX}_offered_rate_rps", "Planned arrival rate (req/s)", labels, registry=self.registry
        )
        self.achieved_rate = Gauge(
            f"{PREFIX}_completion_rate_rps",
            "Completions per second, recent window",
            labels,
            registry=self.registry,
        )
        self.schedule_lag = Gauge(
            f"{PREFIX}_schedule_lag_p99_ms",
            "Client schedule lag p99 (ms), recent window",
            labels,
            registry=self.registry,
        )
        self.client_cpu = Gauge(
            f"{PREFIX}_client_cpu_percent",
            "Load generator CPU (100 = one core)",
            labels,
            registry=self.registry,
        )

    def observe(self, records: Iterable[RequestRecord]) -> None:
        """Fold finished records in; call with each batch the workers send back."""
        for r in records:
            if not r.ok:
                self.requests.labels(*self._run, "failed").inc()
                self.errors.labels(*self._run, r.error.value if r.error else "unknown").inc()
                continue
            self.requests.labels(*self._run, "ok").inc()
            if r.output_tokens:
                self.output_tokens.labels(*self._run).inc(r.output_tokens)
            if r.input_tokens:
                self.input_tokens.labels(*self._run).inc(r.input_tokens)
            if r.ttft is not None:
                self.ttft.labels(*self._run).observe(r.ttft)
            if r.e2e is not None:
                self.e2e.labels(*self._run).observe(r.e2e)
            if r.t_first is not None and r.t_end is not None and r.output_tokens and r.output_tokens > 1:
                self.tpot.labels(*self._run).observe((r.t_end - r.t_first) / (r.output_tokens - 1))

    def update(
        self,
        *,
        in_flight: int | None = None,
        offered_rate: float | None = None,
        completion_rate: float | None = None,
        schedule_lag_p99_ms: float | None = None,
        client_cpu_percent: float | None = None,
    ) -> None:
        """Set the gauges the bench loop already knows; a value left out keeps its last reading."""
        for gauge, value in (
            (self.in_flight, in_flight),
            (self.offered_rate, offered_rate),
            (self.achieved_rate, completion_rate),
            (self.schedule_lag, schedule_lag_p99_ms),
            (self.client_cpu, client_cpu_percent),
        ):
            if value is not None:
                gauge.labels(*self._run).set(value)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on ``addr:port`` in a daemon thread; returns the bound port (``port=0`` picks one)."""
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
