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
    summed: dict[float, float] = {}
    for series in body.get("data", {}).get("result", []):
        for t, value in series.get("values", []):
            number = float(value)
            if math.isfinite(number):
                summed[float(t)] = summed.get(float(t), 0.0) + number
    return sorted(summed.items())


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
