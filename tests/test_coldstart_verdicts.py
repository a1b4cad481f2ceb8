"""Cold-start statistics and verdicts (pure): phases, CV, dominant phase, I/O-bound, compile cache."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from servewise.coldstart import verdicts
from servewise.coldstart.verdicts import Event, LoadIo
from servewise.results import ColdStart
from servewise.results.base import Result


def _stored(value: Any) -> Any:
    """A typed result as it is stored (its JSON), the shape the assertions below read."""
    if isinstance(value, Result):
        return value.to_json()
    if isinstance(value, list):
        return [_stored(item) for item in value]
    if isinstance(value, dict):
        return {key: _stored(item) for key, item in value.items()}
    return value


def _as_stored(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *args, **kwargs: _stored(fn(*args, **kwargs))


# the functions under test: starts given as their stored JSON are read into the typed model at the edge,
# and typed results are checked as they are stored
v = SimpleNamespace(
    phases=_as_stored(verdicts.phases),
    stats=_as_stored(verdicts.stats),
    aggregate=_as_stored(verdicts.aggregate),
    repeatability=_as_stored(verdicts.repeatability),
    dominant_phase=_as_stored(verdicts.dominant_phase),
    io_bound=_as_stored(verdicts.io_bound),
    compile_cache=_as_stored(verdicts.compile_cache),
    first_request=_as_stored(verdicts.first_request),
    load_window=verdicts.load_window,
    counter_delta=verdicts.counter_delta,
    compile_seconds=lambda run: verdicts.compile_seconds(ColdStart.model_validate(run)),
    summarize=lambda runs: _stored(verdicts.summarize([ColdStart.model_validate(r) for r in runs])),
)


def test_phases_are_gaps_between_events_and_add_up_to_the_last() -> None:
    events = [
        Event("port_open", 4.0, "probe"),
        Event("weights_loaded", 3.0, "log", 2.5),
        Event("first_ok", 9.0, "probe"),
    ]
    found = v.phases(events)
    assert [(p["after"], p["name"]) for p in found] == [
        ("spawn", "weights_loaded"),
        ("weights_loaded", "port_open"),
        ("port_open", "first_ok"),
    ]
    assert sum(p["duration_s"] for p in found) == pytest.approx(9.0)
    assert found[0]["unlogged_s"] == pytest.approx(0.5)  # 3.0 s in the phase, the server accounts for 2.5
    assert found[1]["unlogged_s"] is None


def test_stats_cv_is_sample_std_over_mean() -> None:
    values = [10.0, 12.0, 14.0]
    s = v.stats(values)
    assert (s["count"], s["min"], s["median"], s["max"]) == (3, 10.0, 12.0, 14.0)
    assert s["cv"] == pytest.approx(statistics.stdev(values) / 12.0)
    assert v.stats([5.0])["cv"] is None
    assert v.stats([])["count"] == 0


def test_aggregate_leaves_out_a_key_missing_from_one_run() -> None:
    agg = v.aggregate([{"a": 1.0, "b": 2.0}, {"a": 3.0}, {"a": 5.0, "b": None}])
    assert agg["a"]["count"] == 3 and agg["a"]["median"] == 3.0
    assert agg["b"]["count"] == 1


def test_repeatability_bands() -> None:
    assert v.repeatability([10.0, 10.0])["verdict"] == "inconclusive"
    assert v.repeatability([10.0, 10.2, 9.9, 10.1])["verdict"] == "repeatable"
    assert v.repeatability([10.0, 12.0, 11.0, 13.0])["verdict"] == "variable"
    shaky = v.repeatability([10.0, 30.0, 12.0])
    assert shaky["verdict"] == "not repeatable"
    assert "30.0" in shaky["advice"]  # plan on the max


def test_dominant_phase_names_the_largest_and_advises() -> None:
    found = v.dominant_phase({"weights_loaded": 4.0, "compiled": 20.0, "port_open": 2.0}, 30.0)
    assert found["verdict"] == "compiled"
    assert "67%" in found["evidence"]
    assert "compile cache" in found["advice"]
    assert v.dominant_phase({}, 0.0)["verdict"] == "inconclusive"


@pytest.mark.parametrize(
    ("load", "verdict"),
    [
        (LoadIo(model_bytes=None, load_s=3.0, read_bytes=0, peak_read_rate=None), "inconclusive"),
        (LoadIo(10_000_000_000, load_s=3.0, read_bytes=50_000_000, peak_read_rate=1e9), "page cache warm"),
        # 10 GB in 20 s = 500 MB/s, the disk's best was 550 MB/s: the disk set the pace
        (LoadIo(10_000_000_000, load_s=20.0, read_bytes=10_000_000_000, peak_read_rate=550e6), "I/O-bound"),
        # same bytes in 100 s with a disk that can do 2 GB/s: the time went elsewhere
        (LoadIo(10_000_000_000, 100.0, 10_000_000_000, 2e9), "not I/O-bound"),
        # reads say "cold" but fincore saw the whole model in memory before the start: trust fincore
        (LoadIo(10_000_000_000, 20.0, 10_000_000_000, 550e6, resident_share=0.95), "page cache warm"),
    ],
)  # fmt: skip
def test_io_bound(load: LoadIo, verdict: str) -> None:
    assert v.io_bound(load)["verdict"] == verdict


def test_compile_cache_compares_cold_and_warm_runs() -> None:
    helps = v.compile_cache([(False, 30.0), (True, 3.0), (True, 4.0)])
    assert helps is not None and helps["verdict"] == "cache helps"
    assert "30.00 s with empty caches" in helps["evidence"]
    only_warm = v.compile_cache([(True, 3.0)])
    assert only_warm is not None and only_warm["verdict"] == "cache warm in every run"
    assert v.compile_cache([(False, None), (True, None)]) is None
    failed = v.compile_cache([(False, 30.0), (True, 31.0)], load_failures=1)
    assert failed is not None and failed["verdict"] == "cache present but not loaded"
    assert "load failure" in failed["evidence"]
    partly = v.compile_cache([(False, 90.0), (True, 27.0)], load_failures=1)
    assert partly is not None and partly["verdict"] == "cache helps partly"
    assert v.compile_cache([(True, 27.0)], load_failures=1)["verdict"] == "cache present but not loaded"  # type: ignore[index]


def test_compile_seconds_prefers_the_servers_total_then_the_marker_span() -> None:
    def run(*events: Event) -> dict[str, Any]:
        return {"events": [_event(e) for e in events], "phases": v.phases(events)}

    reported = run(Event("compile_start", 2.0, "log"), Event("compiled", 9.0, "log", 6.5))
    assert v.compile_seconds(reported) == 6.5
    spanned = run(
        Event("compile_start", 2.0, "log"), Event("compile_saved", 8.0, "log"), Event("compiled", 9.0, "log")
    )
    assert v.compile_seconds(spanned) == pytest.approx(7.0)
    assert v.compile_seconds(run(Event("weights_loaded", 1.0, "log"))) is None


def _event(e: Event) -> dict[str, Any]:
    return {"name": e.name, "t": e.t, "source": e.source, "reported_s": e.reported_s}


def test_first_request_ratio() -> None:
    assert v.first_request(1.0, 0.1)["verdict"] == "first request slow"
    assert v.first_request(0.11, 0.1)["verdict"] == "warm at ready"
    assert v.first_request(0.1, None)["verdict"] == "inconclusive"


def test_load_window_prefers_markers_and_falls_back_to_health() -> None:
    marked = [
        Event("weights_load_start", 2.0, "log"),
        Event("weights_loaded", 5.0, "log"),
        Event("health_ok", 9.0, "probe"),
    ]
    assert v.load_window(marked) == ("weights_load_start", 2.0, "weights_loaded", 5.0)
    assert v.load_window([Event("port_open", 1.0, "probe"), Event("health_ok", 4.0, "probe")]) == (
        "spawn", 0.0, "health_ok", 4.0,
    )  # fmt: skip
    assert v.load_window([Event("port_open", 1.0, "probe")]) is None


def test_counter_delta_reads_the_last_value_at_or_before_each_time() -> None:
    series = [(0.1, 100.0), (0.2, 150.0), (0.3, 400.0), (0.4, 400.0)]
    assert v.counter_delta(series, 0.15, 0.35) == 300.0  # 100 (read at 0.1) -> 400 (read at 0.3)
    assert v.counter_delta(series, 0.2, 0.3) == 250.0
    assert v.counter_delta(series, 0.0, 1.0) == 300.0
    assert v.counter_delta([], 0.0, 1.0) is None


def _run(
    index: int, startup: float, weights: float, compiled: float | None, cache_warm: bool
) -> dict[str, Any]:
    events = [Event("weights_loaded", weights, "log", weights - 0.5)]
    if compiled is not None:
        events.append(Event("compiled", weights + compiled, "log", compiled))
    events += [Event("health_ok", startup - 0.3, "probe"), Event("first_ok", startup, "probe")]
    return {
        "index": index,
        "status": "ok",
        "startup_s": startup,
        "engine": "vllm",
        "model_bytes": 1_000_000_000,
        "events": [{"name": e.name, "t": e.t, "source": "log", "reported_s": e.reported_s} for e in events],
        "phases": v.phases(events),
        "first_request": {"ttft_ms": 50.0, "e2e_ms": 200.0, "attempts": 1},
        "warm": {"steady_e2e_ms": 100.0, "requests": 3, "failed": 0},
        "resources": {"peak_rss_bytes": 1e9, "peak_disk_read_rate": 400e6},
        "load_io": {"window": ["spawn", "weights_loaded"], "load_s": weights, "read_bytes": 1e9,
                    "counter": "disk_read_bytes"},
        "cache": {"compile_cache": {"existed": cache_warm}, "model_resident_share": 0.0},
        "device": "nvme0n1 (ssd)",
    }  # fmt: skip


def test_summarize_aggregates_runs_and_gives_every_verdict() -> None:
    runs = [_run(1, 40.0, 5.0, 30.0, False), _run(2, 14.0, 5.0, 4.0, True), _run(3, 15.0, 5.5, 4.5, True)]
    runs.append({**_run(4, 0.0, 1.0, None, True), "status": "timeout", "startup_s": None})
    summary = v.summarize(runs)
    agg = summary["aggregate"]
    assert summary["runs_ok"] == 3
    assert agg["startup_s"]["median"] == 15.0 and agg["startup_s"]["max"] == 40.0
    assert agg["reported"]["compiled"]["min"] == 4.0
    assert agg["phases"]["compiled"]["count"] == 3
    by_key = {f["key"]: f for f in summary["verdicts"]}
    assert by_key["repeatability"]["verdict"] == "not repeatable"
    # medians: weights_loaded 5.0 s, health_ok 4.7 s, compiled 4.5 s, first_ok 0.3 s
    assert by_key["dominant_phase"]["verdict"] == "weights_loaded"
    assert "5.00 s of 15.00 s" in by_key["dominant_phase"]["evidence"]
    assert by_key["compile_cache"]["verdict"] == "cache helps"
    assert by_key["warm_up"]["verdict"] == "first request slow"  # 200 ms vs 100 ms steady
    # 1 GB in 5 s = 200 MB/s against a best of 400 MB/s: exactly at the I/O-bound share
    assert by_key["io_bound"]["verdict"] == "I/O-bound"
    assert v.summarize([runs[-1]])["verdicts"] == []
