"""The typed cold-start result: a stored run reads back into it and dumps byte for byte as it was stored,
parts whose builder leaves keys out stay without them, and the verdicts read the typed starts."""

from __future__ import annotations

import json
import sqlite3

from servewise.coldstart import verdicts
from servewise.coldstart.verdicts import Event
from servewise.results import (
    CacheFolder,
    CacheState,
    ColdStart,
    ColdstartResult,
    FirstRequest,
    LoadIoRecord,
    StartEvent,
    StartResources,
    WarmRequests,
)
from store_golden import DB


def _stored_coldstarts() -> list[str]:
    """The result JSON of every cold-start run in the 0.1.0 fixture store, as it was written."""
    db = sqlite3.connect(f"file:{DB}?immutable=1", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT summary_json FROM runs WHERE kind = 'coldstart'")]
    finally:
        db.close()


def test_a_stored_run_reads_into_the_model_and_dumps_as_it_was_stored() -> None:
    stored = _stored_coldstarts()
    assert stored
    for text in stored:
        written = json.loads(text)
        result = ColdstartResult.model_validate(written)
        assert json.dumps(result.to_json()) == json.dumps(written)  # same keys, order and numbers
        start = result.runs[0]
        assert isinstance(start, ColdStart) and start.status == "ok"
        assert start.events[1].name == "restore" and start.events[1].reported_s == 0.35
        assert start.cache.compile_cache.path and not start.cache.compile_cache_warm()
        assert result.aggregate.reported["restore"].count == result.runs_ok
        assert result.verdicts[0].key == "repeatability"


def test_parts_left_out_by_their_builder_stay_left_out() -> None:
    """A start whose process was never sampled stores ``"resources": {}``; one with no loading window
    stores ``"load_io": {"window": null}``; both read back and dump the same."""
    start = ColdStart(index=1, status="failed", resources=StartResources(), load_io=LoadIoRecord(window=None))
    dumped = start.to_json()
    assert dumped["resources"] == {} and dumped["load_io"] == {"window": None}
    assert ColdStart.model_validate(dumped).to_json() == dumped
    sampled = StartResources(peak_rss_bytes=1e9, peak_vram_bytes=None)
    assert sampled.to_json() == {"peak_rss_bytes": 1e9, "peak_vram_bytes": None}
    assert list(ColdStart().to_json()) == list(ColdStart.model_fields)  # every other part is always there


def _start(index: int, startup: float, weights: float, *, inductor_warm: bool) -> ColdStart:
    events = [Event("weights_loaded", weights, "log", weights - 0.5), Event("first_ok", startup, "probe")]
    return ColdStart(
        index=index,
        status="ok",
        pid=100 + index,
        startup_s=startup,
        events=[StartEvent(name=e.name, t=e.t, source=e.source, reported_s=e.reported_s) for e in events],
        phases=verdicts.phases(events),
        first_request=FirstRequest(attempts=1, ttft_ms=40.0, e2e_ms=90.0),
        warm=WarmRequests(requests=2, steady_e2e_ms=80.0),
        cache=CacheState(
            compile_cache=CacheFolder(path="/c", existed=False),
            inductor_cache=CacheFolder(path="/i", existed=inductor_warm),
        ),
    )


def test_summarize_reads_typed_starts_and_builds_a_typed_aggregate() -> None:
    starts = [_start(1, 10.0, 6.0, inductor_warm=False), _start(2, 11.0, 6.5, inductor_warm=True)]
    summary = verdicts.summarize(starts)
    assert summary.runs == starts and summary.runs_ok == 2
    assert summary.aggregate.startup_s.median == 10.5
    assert summary.aggregate.phases["weights_loaded"].max == 6.5
    assert summary.aggregate.reported["weights_loaded"].min == 5.5
    assert summary.aggregate.resources.peak_rss_bytes.count == 0  # never sampled
    assert starts[1].cache.compile_cache_warm()  # torch inductor's cache counts
    assert [f.key for f in summary.verdicts] == ["repeatability", "dominant_phase", "io_bound", "warm_up"]
    assert summary.startup_times() == [10.0, 11.0]
