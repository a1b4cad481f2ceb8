"""The two prefix-cache hit rates: the engine's own (from stored /metrics samples) and the workload's ceiling."""

from __future__ import annotations

from pathlib import Path

import pytest

from servewise.analysis.cache import PrefixReuse, engine_hit_rate, theoretical_hit_rate
from servewise.records import Sample
from servewise.telemetry.exposition import canonical_signals, engine_from_metrics, parse_exposition

FIXTURES = Path(__file__).parent / "fixtures" / "telemetry"


def metrics(t: float, **values: float) -> list[Sample]:
    return [Sample(t, "metrics", name, value) for name, value in values.items()]


def counters(*rows: tuple[float, float]) -> list[Sample]:
    """(queries, hits) per scrape, one second apart."""
    return [
        s
        for t, (q, h) in enumerate(rows)
        for s in metrics(t, prefix_cache_queries_total=q, prefix_cache_hits_total=h)
    ]


# -- engine_hit_rate ------------------------------------------------------------------------------------


def test_counters_give_hits_over_queries_between_first_and_last_scrape():
    # the engine had served 1000 tokens before the run; only the run's increase counts
    assert engine_hit_rate(counters((1000, 400), (1300, 550), (1600, 700))) == pytest.approx(300 / 600)


def test_a_counter_reset_counts_from_zero_again():
    # engine restarted between t=1 and t=2: after a drop the new value is all increase
    samples = counters((100, 10), (300, 90), (50, 20), (150, 70))
    assert engine_hit_rate(samples) == pytest.approx((80 + 20 + 50) / (200 + 50 + 100))


def test_a_hit_series_that_appears_late_started_at_zero():
    # SGLang's labelled hit counter is exported only once it first moves
    samples = [
        *metrics(0, prefix_cache_queries_total=0),
        *metrics(1, prefix_cache_queries_total=500),
        *metrics(2, prefix_cache_queries_total=1000, prefix_cache_hits_total=300),
    ]
    assert engine_hit_rate(samples) == pytest.approx(300 / 1000)


def test_counters_that_did_not_move_say_nothing():
    assert engine_hit_rate(counters((500, 100), (500, 100))) is None
    assert engine_hit_rate(counters((500, 100))) is None  # one scrape: no increase to read


def test_counters_win_over_the_gauge():
    samples = counters((0, 0), (1000, 250))
    samples += [*metrics(0, prefix_cache_hit_rate=0.9), *metrics(1, prefix_cache_hit_rate=0.9)]
    assert engine_hit_rate(samples) == pytest.approx(0.25)


def test_gauge_only_is_its_mean_while_requests_ran():
    samples = [  # before the load the gauge reads its initial 0; after it, a stale value
        *metrics(0, prefix_cache_hit_rate=0.0, requests_running=0, requests_waiting=0),
        *metrics(1, prefix_cache_hit_rate=0.6, requests_running=3, requests_waiting=0),
        *metrics(2, prefix_cache_hit_rate=0.8, requests_running=0, requests_waiting=2),  # queued counts too
        *metrics(3, prefix_cache_hit_rate=0.8, requests_running=0, requests_waiting=0),
    ]
    assert engine_hit_rate(samples) == pytest.approx(0.7)


def test_gauge_only_without_a_busy_signal_is_its_mean_over_every_scrape():
    samples = [*metrics(0, prefix_cache_hit_rate=0.2), *metrics(1, prefix_cache_hit_rate=0.4)]
    assert engine_hit_rate(samples) == pytest.approx(0.3)
    idle = [*metrics(0, prefix_cache_hit_rate=0.5, requests_running=0)]
    assert engine_hit_rate(idle) is None


def test_nothing_exported_is_none():
    assert engine_hit_rate([]) is None
    samples = [
        *metrics(0, requests_running=2, prompt_tokens_total=100),
        Sample(0, "metrics", "raw:vllm:prefix_cache_hits_total", 5.0, (("engine", "0"),)),
        Sample(0, "host", "prefix_cache_hit_rate", 0.5),  # another source's name is not the engine's
    ]
    assert engine_hit_rate(samples) is None


@pytest.mark.parametrize(
    ("fixture", "engine", "expected"),
    [
        ("vllm_metrics_prefix_cache.prom", "vllm", 1536 / 3314),  # the same 1,657-token prompt twice
        ("llamacpp_metrics_prompt_cache.prom", "llamacpp", 2101 / (1402 + 2101)),
    ],
)
def test_real_captures_read_against_a_fresh_engine(fixture, engine, expected):
    series = parse_exposition((FIXTURES / fixture).read_text())
    assert engine_from_metrics(series) == engine
    after = canonical_signals(series, engine)
    samples = metrics(0, prefix_cache_queries_total=0, prefix_cache_hits_total=0)
    samples += metrics(5, **after)
    assert engine_hit_rate(samples) == pytest.approx(expected)


# -- theoretical_hit_rate -------------------------------------------------------------------------------


def test_no_tokens_is_none():
    assert theoretical_hit_rate([]) is None
    assert theoretical_hit_rate([[], [("a", 0)]]) is None


def test_the_first_prompt_reuses_nothing_and_a_repeat_reuses_all():
    assert theoretical_hit_rate([[("sys", 100), ("q", 50)]]) == 0.0
    assert theoretical_hit_rate([[("sys", 100), ("q", 50)]] * 2) == pytest.approx(150 / 300)


def test_a_chain_that_diverges_after_the_first_segment():
    prompts = [
        [("sys", 100), ("x", 20)],  # nothing seen yet: 0
        [("sys", 100), ("y", 30)],  # sys reused, y new: 100
        [("sys", 100), ("x", 20), ("z", 5)],  # sys and sys>x reused, z new: 120
        [("sys", 100), ("y", 30), ("x", 20)],  # sys, sys>y reused; x after y is a different chain: 130
    ]
    total = 120 + 130 + 125 + 150
    assert theoretical_hit_rate(prompts) == pytest.approx((0 + 100 + 120 + 130) / total)


def test_the_same_key_after_a_different_prefix_is_not_reusable():
    assert theoretical_hit_rate([[("a", 10), ("b", 10)], [("c", 10), ("b", 10)]]) == 0.0
    # ... nor is a key repeated inside one prompt, nor a prefix seen only later
    assert theoretical_hit_rate([[("a", 5), ("a", 5)]]) == 0.0
    assert theoretical_hit_rate([[("a", 10)], [("a", 10), ("b", 10)]]) == pytest.approx(10 / 30)


def test_prefix_reuse_counts_each_prompt_as_it_comes():
    tree = PrefixReuse()
    assert tree.hit_rate is None
    assert tree.add([(("group", 0), 1000), (("user", 1), 40)]) == 0
    assert tree.add([(("group", 0), 1000), (("user", 2), 40)]) == 1000
    assert tree.add([(("group", 0), 1000), (("user", 1), 40), (("turn", 2), 60)]) == 1040
    assert (tree.reused_tokens, tree.total_tokens) == (2040, 1040 + 1040 + 1100)
    assert tree.hit_rate == pytest.approx(2040 / 3180)


def test_streams_from_a_generator_and_rejects_negative_lengths():
    prompts = ([(0, 512), (i % 3, 512)] for i in range(9))
    # 9 prompts x 1024 tokens; block 0 is new once, each of the 3 second blocks new once
    assert theoretical_hit_rate(prompts) == pytest.approx((9 * 1024 - 512 - 3 * 512) / (9 * 1024))
    with pytest.raises(ValueError, match="-1 tokens"):
        theoretical_hit_rate([[("a", -1)]])


def test_a_segment_keyed_none_is_counted_but_never_remembered():
    from servewise.analysis.cache import PrefixReuse

    tree = PrefixReuse()
    for _ in range(1000):
        tree.add([("system", 10), (None, 5)])
    assert tree.hit_rate == (999 * 10) / (1000 * 15)
    assert len(tree._seen) == 1  # the thousand single-use tails cost nothing
