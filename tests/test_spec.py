"""Flag syntax and spec validation: every mistake names the field."""

from __future__ import annotations

import pytest

from servewise.spec import SpecError, merge_spec, parse_duration, parse_length, parse_load, parse_slo


def test_lengths_parse_every_kind():
    assert parse_length("512").value == 512
    assert parse_length("uniform:10,20").high == 20
    normal = parse_length("normal:512,128;min=16;max=1024")
    assert (normal.kind, normal.mean, normal.std, normal.min, normal.max) == ("normal", 512, 128, 16, 1024)
    assert parse_length("lognormal:300,100").kind == "lognormal"
    assert parse_length("empirical:5,6,7").values == [5, 6, 7]


@pytest.mark.parametrize("text", ["normal:512", "uniform:20,10", "gauss:3,4", "abc", "fixed:0", "512;max=x"])
def test_bad_lengths_are_spec_errors(text):
    with pytest.raises(SpecError):
        parse_length(text, "--input-tokens")


def test_load_and_slo_parse():
    load = parse_load("gamma:4,0.5;max-concurrency=16")
    assert (load.kind, load.rate, load.burstiness, load.max_concurrency) == ("gamma", 4, 0.5, 16)
    assert parse_load("concurrency:8").concurrency == 8
    slo = parse_slo("ttft_p95=0.5s,tpot_p99=50ms,errors=1%")
    assert [(t.key, t.limit) for t in slo.targets] == [
        ("ttft_p95", 500.0),
        ("tpot_p99", 50.0),
        ("errors", 0.01),
    ]
    assert parse_duration("2m") == 120 and parse_duration("250ms") == 0.25


@pytest.mark.parametrize("text", ["poisson", "poisson:-1", "concurrency:0", "burst:3"])
def test_bad_loads(text):
    with pytest.raises(SpecError) as info:
        parse_load(text)
    assert "load" in str(info.value)


def test_bad_slo_names_the_item():
    with pytest.raises(SpecError, match="ttft_p42"):
        parse_slo("ttft_p42=3ms")


def test_merge_names_the_bad_field():
    with pytest.raises(SpecError, match=r"target\.url"):
        merge_spec({"target": {"url": "localhost:8000"}}, {})
    with pytest.raises(SpecError, match="workers"):
        merge_spec({"target": {"url": "http://x"}}, {"workers": 0})
    with pytest.raises(SpecError, match="steady state"):
        merge_spec({"target": {"url": "http://x"}, "duration_s": 10, "warmup_s": 6, "cooldown_s": 5}, {})


def test_flags_override_file():
    spec = merge_spec(
        {"target": {"url": "http://a", "model": "m"}, "duration_s": 5}, {"target": {"url": "http://b"}}
    )
    assert spec.target.url == "http://b" and spec.target.model == "m" and spec.duration_s == 5
