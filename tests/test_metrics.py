"""Metric definitions on hand-made records, and the bounded-memory ITL histogram against exact numbers."""

from __future__ import annotations

import numpy as np
import pytest

from servewise.analysis.metrics import LogHistogram, MetricsAccumulator, distribution, evaluate_slo, tpot_ms
from servewise.records import ErrorClass, Phase, RequestRecord, TokenSource
from servewise.spec import parse_slo


def record(i, send, chunks, tokens, *, phase=Phase.STEADY, error=None):
    return RequestRecord(
        index=i, t_sched=send, t_send=send, t_first=chunks[0] if chunks else None, t_end=chunks[-1] if chunks else send + 1,
        chunk_times=chunks, output_tokens=tokens, output_tokens_source=TokenSource.USAGE, max_tokens=tokens,
        phase=phase, error=error,
    )  # fmt: skip


def test_glossary_definitions():
    r = record(0, 10.0, [10.1, 10.12, 10.14, 10.16], 4)
    assert tpot_ms(r) == pytest.approx((10.16 - 10.1) * 1000 / 3)
    acc = MetricsAccumulator(parse_slo("ttft_p95=150ms")).add_all(
        [r, record(1, 10.5, [10.9, 11.0], 2), record(2, 11.0, [], 0, error=ErrorClass.TIMEOUT),
         record(3, 9.0, [9.1, 9.2], 2, phase=Phase.WARMUP)]
    )  # fmt: skip
    metrics = acc.result()
    m = metrics.to_json()
    assert m["requests_ok"] == 2 and m["requests_failed"] == 1 and m["errors_by_class"] == {"timeout": 1}
    assert m["ttft_ms"]["count"] == 2 and m["ttft_ms"]["min"] == pytest.approx(100.0)
    assert m["itl_ms"]["count"] == 4  # three gaps of 20 ms and one of 100 ms
    assert m["itl_ms"]["p50"] == pytest.approx(20.0, rel=1e-3)
    assert m["goodput_rps"] < m["requests_per_s"]  # the 400 ms TTFT request misses the SLO
    slo = evaluate_slo(parse_slo("ttft_p95=150ms,errors=10%"), metrics).to_json()
    assert slo["met"] is False and [t["met"] for t in slo["targets"]] == [False, False]


def test_streams_that_arrive_in_one_read_are_counted():
    whole, streamed, unstreamed = record(0, 1.0, [1.3] * 4, 4), record(1, 1.0, [1.1, 1.2], 2), record(2, 1.0, [1.4], 4)
    metrics = MetricsAccumulator().add_all([whole, streamed, unstreamed]).result()
    assert metrics.arrived_whole == 1
    # the whole answer's TTFT is real (300 ms); its pace was not seen, so it gives no TPOT of 0 nor zero gaps,
    # and neither does the unstreamed answer (one chunk at its end)
    assert metrics.ttft_ms.max == pytest.approx(400.0) and metrics.ttft_ms.count == 3
    assert tpot_ms(whole) is None and tpot_ms(unstreamed) is None
    assert metrics.tpot_ms.count == 1 and metrics.tpot_ms.min == pytest.approx(100.0)
    assert metrics.itl_ms.count == 1 and metrics.itl_ms.min == pytest.approx(100.0, rel=1e-3)


def test_empty_run_has_counts_but_no_statistics():
    metrics = MetricsAccumulator().result()
    m = metrics.to_json()
    assert m["requests_ok"] == 0 and m["ttft_ms"] == distribution([]) and m["ttft_ms"]["p50"] is None
    assert evaluate_slo(parse_slo("errors=1%"), metrics).to_json()["met"] is False  # no data never passes


def test_log_histogram_matches_exact_quantiles_within_its_resolution():
    rng = np.random.default_rng(3)
    values = rng.lognormal(2.0, 0.8, 400_000)
    values[:500] = 0.0  # chunks that arrive in one read have zero gap
    histogram = LogHistogram()
    for start in range(0, values.size, 997):
        histogram.extend(values[start : start + 997].tolist())
    approx, exact = histogram.distribution(), distribution(values)
    for key in ("p50", "p90", "p95", "p99", "p99.9"):
        assert approx[key] == pytest.approx(exact[key], rel=1e-3), key
    for key in ("count", "min", "max"):
        assert approx[key] == exact[key]
    assert approx["mean"] == pytest.approx(exact["mean"]) and approx["std"] == pytest.approx(exact["std"])
