"""PromQL range queries against the team's Prometheus: the production traffic pattern over days.

servewise reads production traffic where it already lives instead of copying a fleet's data: request
volume (req/s), mean request size (prompt tokens), failed requests, and the latency histograms summed
over the window. Each engine spells them differently; the first engine whose request counter holds data
is used, or the caller passes its own queries. Judging the series is
:func:`servewise.analysis.stage.traffic_evidence`.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from servewise.errors import UnreachableError
from servewise.telemetry.exposition import RawSeries


class PromQLError(UnreachableError):
    """Prometheus could not be reached or refused the query; the message says which."""


@dataclass(frozen=True, slots=True)
class TrafficQueries:
    """One engine's spelling of production traffic. ``{window}`` in a query is the rate window (e.g.
    ``15m``); a histogram is named by its ``_bucket`` series and read as increases by ``le``."""

    name: str
    volume: str  # successful requests per second
    size: str | None = None  # mean prompt tokens per request
    errors: str | None = None  # failed requests per second (answers users saw)
    histograms: tuple[tuple[str, str], ...] = ()  # (ttft | e2e, bucket series)

    def render(self, window: str) -> TrafficQueries:
        def fill(query: str | None) -> str | None:
            return query.replace("{window}", window) if query else None

        return TrafficQueries(self.name, self.volume.replace("{window}", window), fill(self.size),
                              fill(self.errors), self.histograms)  # fmt: skip


# llama.cpp's /metrics counts tokens and slots but no requests, so it gives no request volume here.
ENGINE_TRAFFIC_QUERIES: tuple[TrafficQueries, ...] = (
    TrafficQueries(
        "vllm",
        "sum(rate(vllm:request_success_total[{window}]))",
        "sum(rate(vllm:request_prompt_tokens_sum[{window}])) / sum(rate(vllm:request_prompt_tokens_count[{window}]))",
        'sum(rate(http_requests_total{status=~"5.*"}[{window}]))',
        (("ttft", "vllm:time_to_first_token_seconds_bucket"), ("e2e", "vllm:e2e_request_latency_seconds_bucket")),
    ),
    TrafficQueries(
        "sglang",
        "sum(rate(sglang:num_requests_total[{window}]))",
        "sum(rate(sglang:prompt_tokens_total[{window}])) / sum(rate(sglang:num_requests_total[{window}]))",
        None,
        (("ttft", "sglang:time_to_first_token_seconds_bucket"), ("e2e", "sglang:e2e_request_latency_seconds_bucket")),
    ),
    TrafficQueries(
        "tgi",
        "sum(rate(tgi_request_success_total[{window}]))",
        "sum(rate(tgi_request_input_length_sum[{window}])) / sum(rate(tgi_request_input_length_count[{window}]))",
        "sum(rate(tgi_request_failure_total[{window}]))",
        (("e2e", "tgi_request_duration_bucket"),),
    ),
    TrafficQueries(
        "servewise",
        "sum(rate(servewise_requests_total[{window}]))",
        'sum(rate(servewise_input_tokens_total[{window}])) / sum(rate(servewise_requests_total{outcome="ok"}'
        "[{window}]))",
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TrafficSeries:
    """What Prometheus held for one engine between ``start`` and ``end``, at ``step_s``."""

    volume: list[tuple[float, float]]
    size: list[tuple[float, float]]
    errors: list[tuple[float, float]]
    histograms: list[
        tuple[str, list[tuple[float, float]]]
    ]  # (metric, [(le, cumulative count)]) over the window
    queries: TrafficQueries
    source: str
    start: float
    end: float
    step_s: float


def query_range(
    base_url: str, query: str, start: float, end: float, step_s: float, timeout_s: float = 30.0
) -> list[tuple[float, float]]:
    """One PromQL range query; several result series are summed per timestamp; NaN points are dropped."""
    summed: dict[float, float] = {}
    for _labels, points in _range_series(base_url, query, start, end, step_s, timeout_s):
        for t, number in points:
            summed[t] = summed.get(t, 0.0) + number
    return sorted(summed.items())


def _get(base_url: str, path: str, query: str, timeout_s: float) -> dict[str, Any]:
    """GET one API path; every way it can fail is one PromQLError naming Prometheus and the query."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}{path}", timeout=timeout_s) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        refused = exc.read().decode("utf-8", "replace")[:300]
        raise PromQLError(f"Prometheus at {base_url} refused {query!r}: {exc.code} {refused}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PromQLError(f"cannot reach Prometheus at {base_url}: {reason}") from None
    except ValueError:
        raise PromQLError(f"Prometheus at {base_url} did not answer JSON") from None
    if not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error") if isinstance(body, dict) else body
        raise PromQLError(f"Prometheus at {base_url} could not answer {query!r}: {detail}")
    return body


def _range_series(
    base_url: str, query: str, start: float, end: float, step_s: float, timeout_s: float = 30.0
) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """Every series a range query returns: its labels (``__name__`` included) and finite points."""
    params = urllib.parse.urlencode(
        {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
    )
    body = _get(base_url, f"/api/v1/query_range?{params}", query, timeout_s)
    found = []
    for series in body.get("data", {}).get("result", []):
        points = [(float(t), float(v)) for t, v in series.get("values", []) if math.isfinite(float(v))]
        found.append((dict(series.get("metric", {})), points))
    return found


def query_instant(
    base_url: str, query: str, at: float, timeout_s: float = 30.0
) -> list[tuple[dict[str, str], float]]:
    """One PromQL instant query at ``at``: every series' labels and finite value."""
    params = urllib.parse.urlencode({"query": query, "time": f"{at:.3f}"})
    body = _get(base_url, f"/api/v1/query?{params}", query, timeout_s)
    found = []
    for series in body.get("data", {}).get("result", []):
        value = float(series.get("value", [0, "nan"])[1])
        if math.isfinite(value):
            found.append((dict(series.get("metric", {})), value))
    return found


def traffic_step(span_s: float) -> float:
    """15-minute points (a rate window a 15 s scrape fills well), coarser past Prometheus's 11,000 points."""
    return max(900.0, math.ceil(span_s / 10_000 / 900) * 900)


def _histogram(base_url: str, bucket: str, span_s: float, end: float) -> list[tuple[float, float]]:
    found = query_instant(base_url, f"sum by (le) (increase({bucket}[{int(span_s)}s]))", end)
    buckets = sorted((float(labels["le"]), value) for labels, value in found if "le" in labels)
    return buckets if buckets and buckets[-1][1] > 0 else []


def fetch_traffic(
    base_url: str,
    *,
    span_s: float = 28 * 86400.0,
    step_s: float | None = None,
    window_s: float | None = None,
    queries: TrafficQueries | None = None,
    end: float | None = None,
) -> TrafficSeries | None:
    """Volume, size, errors and latency histograms over the last ``span_s``, each point the rate over the
    ``window_s`` before it (default: the step); None when no known engine's request counter holds data (an
    empty Prometheus, or an engine it does not scrape)."""
    end = time.time() if end is None else end
    start = end - span_s
    step = step_s or traffic_step(span_s)
    window = f"{int(window_s or step)}s"
    for candidate in (queries,) if queries else ENGINE_TRAFFIC_QUERIES:
        rendered = candidate.render(window)
        volume = query_range(base_url, rendered.volume, start, end, step)
        if len(volume) < 2:
            continue
        size = query_range(base_url, rendered.size, start, end, step) if rendered.size else []
        errors = query_range(base_url, rendered.errors, start, end, step) if rendered.errors else []
        histograms = [(metric, found) for metric, bucket in rendered.histograms
                      if (found := _histogram(base_url, bucket, span_s, end))]  # fmt: skip
        return TrafficSeries(volume, size, errors, histograms, rendered,
                             f"Prometheus {base_url}, {rendered.name} series", start, end, step)  # fmt: skip
    return None


# The serving host's signals where its exporters are scraped by the team's Prometheus: the names the host
# sampler and dcgm-exporter scraper write, so the diagnosis reads them the same way. ``{sel}`` is the
# caller's label matchers for the serving host (e.g. ``instance=~"gpu-box:.*"``), ``{w}`` the rate window.
SERVING_HOST_QUERIES: tuple[tuple[str, str, str], ...] = (
    ("node", "cpu_percent_total",
     '100 * (1 - sum(rate(node_cpu_seconds_total{mode=~"idle|iowait"{sel}}[{w}]))'
     " / sum(rate(node_cpu_seconds_total{{sel0}}[{w}])))"),
    ("node", "cpu_iowait_percent",
     '100 * sum(rate(node_cpu_seconds_total{mode="iowait"{sel}}[{w}])) / sum(rate(node_cpu_seconds_total{{sel0}}[{w}]))'),
    ("node", "cpu_count", "count(count by (cpu) (node_cpu_seconds_total{{sel0}}))"),
    ("node", "disk_busy_percent", "100 * max(rate(node_disk_io_time_seconds_total{{sel0}}[{w}]))"),
    ("node", "mem_total_bytes", "sum(node_memory_MemTotal_bytes{{sel0}})"),
    ("node", "mem_available_bytes", "sum(node_memory_MemAvailable_bytes{{sel0}})"),
    ("dcgm", "utilization_percent", "max(DCGM_FI_DEV_GPU_UTIL{{sel0}})"),
    ("dcgm", "sm_active", "max(DCGM_FI_PROF_SM_ACTIVE{{sel0}})"),
    ("dcgm", "dram_active", "max(DCGM_FI_PROF_DRAM_ACTIVE{{sel0}})"),
    ("dcgm", "tensor_active", "max(DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{sel0}})"),
    ("dcgm", "power_watts", "max(DCGM_FI_DEV_POWER_USAGE{{sel0}})"),
    ("dcgm", "power_limit_watts", "max(DCGM_FI_DEV_POWER_MGMT_LIMIT{{sel0}})"),
)  # fmt: skip


def serving_host_series(
    base_url: str, selector: str, start: float, end: float, step_s: float, window: str
) -> list[tuple[str, str, list[tuple[float, float]]]]:
    """(source, signal, points) for every serving-host query with data between ``start`` and ``end``
    (wall-clock seconds). ``selector`` is label matchers without braces; empty matches every host."""
    matchers = selector.strip().strip("{}").strip()
    found = []
    for source, name, template in SERVING_HOST_QUERIES:
        query = (
            template.replace("{sel0}", matchers)
            .replace("{sel}", f",{matchers}" if matchers else "")
            .replace("{w}", window)
        )
        points = query_range(base_url, query, start, end, step_s)
        if points:
            found.append((source, name, points))
    return found


# Every serving engine's series (the prefixes :mod:`servewise.telemetry.exposition` maps), buckets and
# ``_created`` left out as the direct scrape leaves them out.
_ENGINE_NAMES = "vllm:.+|sglang:.+|tgi_.+|llamacpp:.+|nv_inference_.+|nv_trt_llm_.+"
_SCRAPE_LABELS = frozenset({"__name__", "instance", "job"})


def engine_series(
    base_url: str, selector: str, start: float, end: float, step_s: float
) -> list[tuple[float, list[RawSeries]]]:
    """The engine's own /metrics as the team's Prometheus scraped them: one exposition-like snapshot per
    step, for an engine whose /metrics the client cannot reach (behind a gateway, in a cluster)."""
    matchers = selector.strip().strip("{}").strip()
    query = f'{{__name__=~"{_ENGINE_NAMES}",__name__!~".+_bucket|.+_created"{"," + matchers if matchers else ""}}}'
    snapshots: dict[float, list[RawSeries]] = {}
    for labels, points in _range_series(base_url, query, start, end, step_s):
        name = labels.get("__name__", "")
        kept = tuple(sorted((k, v) for k, v in labels.items() if k not in _SCRAPE_LABELS))
        for t, value in points:
            snapshots.setdefault(t, []).append(RawSeries(name, kept, value))
    return sorted(snapshots.items(), key=lambda item: item[0])
