"""Workloads: seeded, repeatable, and shaped as asked."""

from __future__ import annotations

import numpy as np

from servewise.spec import WorkloadSpec, parse_length, parse_load
from servewise.workload import WorkloadPlan, arrival_times, sample_lengths


def test_length_distributions_have_the_asked_shape():
    rng = np.random.default_rng(1)
    normal = sample_lengths(parse_length("normal:512,128"), 50_000, rng)
    assert abs(normal.mean() - 512) < 5 and abs(normal.std() - 128) < 5
    lognormal = sample_lengths(parse_length("lognormal:300,150"), 50_000, rng)
    assert abs(lognormal.mean() - 300) < 6 and abs(lognormal.std() - 150) < 10
    uniform = sample_lengths(parse_length("uniform:10,20"), 10_000, rng)
    assert uniform.min() == 10 and uniform.max() == 20
    clipped = sample_lengths(parse_length("normal:100,80;min=50;max=120"), 10_000, rng)
    assert clipped.min() == 50 and clipped.max() == 120
    empirical = sample_lengths(parse_length("empirical:3,7"), 1000, rng)
    assert set(empirical.tolist()) == {3, 7}


def test_arrivals_keep_the_rate_and_burstiness():
    rng = np.random.default_rng(2)
    poisson = arrival_times(parse_load("poisson:50"), rng, duration_s=200, max_requests=None)
    assert abs(len(poisson) / 200 - 50) < 2
    gaps = np.diff(poisson)
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05  # exponential gaps: CV 1
    bursty = np.diff(arrival_times(parse_load("gamma:50,0.25"), rng, duration_s=200, max_requests=None))
    assert bursty.std() / bursty.mean() > 1.8  # shape 0.25: CV 2
    constant = np.diff(arrival_times(parse_load("constant:10"), rng, duration_s=10, max_requests=None))
    assert np.allclose(constant, 0.1)
    assert len(arrival_times(parse_load("poisson:1000"), rng, duration_s=None, max_requests=123)) == 123


def test_same_seed_same_requests_any_order():
    spec = WorkloadSpec(
        input_tokens=parse_length("normal:200,50"), output_tokens=parse_length("uniform:10,90"), seed=7
    )
    first = [WorkloadPlan(spec).request(i) for i in (0, 5000, 9)]
    plan = WorkloadPlan(spec)
    again = [plan.request(i) for i in (9, 5000, 0)][::-1]
    assert first == again
    other = WorkloadPlan(spec.model_copy(update={"seed": 8})).request(0)
    assert other.prompt != first[0].prompt


def test_synthetic_prompt_has_about_the_asked_words_and_no_shared_prefix():
    plan = WorkloadPlan(WorkloadSpec(input_tokens=parse_length("300")))
    prompts = [plan.request(i).prompt for i in range(50)]
    assert all(len(p.split()) == 300 for p in prompts)
    assert len({p[:40] for p in prompts}) == 50


def test_dataset_lines(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(
        '{"prompt": "hello there", "output_tokens": 5}\n\n{"messages": [{"role": "user", "content": "hi"}]}\n'
    )
    spec = WorkloadSpec(dataset={"path": str(data), "shuffle": False}, output_tokens=parse_length("9"))
    plan = WorkloadPlan(spec)
    first, second = plan.request(0), plan.request(1)
    assert (first.prompt, first.max_tokens) == ("hello there", 5)
    assert second.messages == [{"role": "user", "content": "hi"}] and second.max_tokens == 9
