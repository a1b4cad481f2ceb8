"""PromQL range queries against the team's Prometheus: the production traffic pattern over days.

servewise reads production traffic where it already lives instead of copying a fleet's data. Two series
answer "is the serving pattern repeatable": request volume (req/s) and mean request size (prompt tokens
per request). Each engine spells them differently; the first engine whose series hold data is used, or
the caller passes its own queries. Judging the series is :func:`servewise.analysis.stage.traffic_pattern_from_series`.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from servewise.errors import UnreachableError
from servewise.telemetry.exposition import RawSeries


class PromQLError(UnreachableError):
    """Prometheus could not be reached or refused the query; the message says which."""


@dataclass(frozen=True, slots=True)
class TrafficQueries:
    """``{window}`` in a query is replaced by the rate window (e.g. ``5m``)."""

    name: str
    volume: str
    size: str | None = None

    def render(self, window: str) -> TrafficQueries:
        size = self.size.replace("{window}", window) if self.size else None
        return TrafficQueries(self.name, self.volume.replace("{window}", window), size)


ENGINE_TRAFFIC_QUERIES: tuple[TrafficQueries, ...] = (
    TrafficQueries(
        "vllm",
        "sum(rate(vllm:request_success_total[{window}]))",
        "sum(rate(vllm:request_prompt_tokens_sum[{window}])) / sum(rate(vllm:request_prompt_tokens_count[{window}]))",
    ),
    TrafficQueries(
        "sglang",
        "sum(rate(sglang:num_requests_total[{window}]))",
        "sum(rate(sglang:prompt_tokens_total[{window}])) / sum(rate(sglang:num_requests_total[{window}]))",
    ),
    TrafficQueries(
        "tgi",
        "sum(rate(tgi_request_success_total[{window}]))",
        "sum(rate(tgi_request_input_length_sum[{window}])) / sum(rate(tgi_request_input_length_count[{window}]))",
    ),
    TrafficQueries(
        "servewise",
        "sum(rate(servewise_requests_total[{window}]))",
        'sum(rate(servewise_input_tokens_total[{window}])) / sum(rate(servewise_requests_total{outcome="ok"}'
        "[{window}]))",
    ),
)


@dataclass(frozen=True, slots=True)
class TrafficSeries:
    volume: list[tuple[float, float]]
    size: list[tuple[float, float]]
    queries: TrafficQueries
    source: str


def query_range(
    base_url: str, query: str, start: float, end: float, step_s: float, timeout_s: float = 30.0
) -> list[tuple[float, float]]:
    """One PromQL range query; several result series are summed per timestamp; NaN points are dropped."""
    summed: dict[float, float] = {}
    for _labels, points in _range_series(base_url, query, start, end, step_s, timeout_s):
        for t, number in points:
            summed[t] = summed.get(t, 0.0) + number
    return sorted(summed.items())


def _range_series(
    base_url: str, query: str, start: float, end: float, step_s: float, timeout_s: float = 30.0
) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """Every series a range query returns: its labels (``__name__`` included) and finite points."""
    params = urllib.parse.urlencode(
        {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
    )
    url = f"{base_url.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise PromQLError(f"Prometheus at {base_url} refused {query!r}: {exc.code} {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PromQLError(f"cannot reach Prometheus at {base_url}: {reason}") from None
    except ValueError:
        raise PromQLError(f"Prometheus at {base_url} did not answer JSON") from None
    if body.get("status") != "success":
        raise PromQLError(f"Prometheus at {base_url}: {body.get('errorType')}: {body.get('error')}")
    found = []
    for series in body.get("data", {}).get("result", []):
        points = [(float(t), float(v)) for t, v in series.get("values", []) if math.isfinite(float(v))]
        found.append((dict(series.get("metric", {})), points))
    return found


def fetch_traffic(
    base_url: str,
    *,
    span_s: float = 14 * 86400.0,
    step_s: float = 3600.0,
    window: str = "1h",
    queries: TrafficQueries | None = None,
    end: float | None = None,
) -> TrafficSeries | None:
    """Volume and size series over the last ``span_s``; None when no known engine series holds data."""
    end = time.time() if end is None else end
    start = end - span_s
    for candidate in (queries,) if queries else ENGINE_TRAFFIC_QUERIES:
        rendered = candidate.render(window)
        volume = query_range(base_url, rendered.volume, start, end, step_s)
        if len(volume) < 2:
            continue
        size = query_range(base_url, rendered.size, start, end, step_s) if rendered.size else []
        return TrafficSeries(volume, size, rendered, f"Prometheus {base_url}, {rendered.name} series")
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
_ENGINE_NAMES = 'vllm:.+|sglang:.+|tgi_.+|llamacpp:.+|nv_inference_.+|nv_trt_llm_.+'
_SCRAPE_LABELS = frozenset({"__name__", "instance", "job"})


def engine_series(
    base_url: str, selector: str, start: float, end: float, step_s: float
) -> list[tuple[float, list[RawSeries]]]:
    """The engine's own /metrics as the team's Prometheus scraped them: one exposition-like snapshot per
    step, for an engine whose /metrics the client cannot reach (behind a gateway, in a cluster)."""
    matchers = selector.strip().strip("{}").strip()
    query = (
        f'{{__name__=~"{_ENGINE_NAMES}",__name__!~".+_bucket|.+_created"{"," + matchers if matchers else ""}}}'
    )
    snapshots: dict[float, list[RawSeries]] = {}
    for labels, points in _range_series(base_url, query, start, end, step_s):
        name = labels.get("__name__", "")
        kept = tuple(sorted((k, v) for k, v in labels.items() if k not in _SCRAPE_LABELS))
        for t, value in points:
            snapshots.setdefault(t, []).append(RawSeries(name, kept, value))
    return sorted(snapshots.items(), key=lambda item: item[0])
