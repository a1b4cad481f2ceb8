"""Image generation against a real image server: stable-diffusion.cpp's sd-server (built from the
stable-diffusion-cpp-python sdist) with a random-weight SDXS model at 64x64 and one step
(tests/engines/build_tiny_sd.py). What the image twin shows in tests/test_api_twin.py, on an engine nobody
here wrote: images/s, latency per image, the cost per 1,000 images in `plan` and the report, and the one
line for a server that answers another API's shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from servewise.results import RunResult

from cli_runner import servewise
from engines.conftest_fixtures import _serve
from engines.servers import SdServer

pytestmark = [pytest.mark.engines, pytest.mark.slow]

PRICE = 0.5  # $/h of the tier the run is said to be on


@pytest.fixture(scope="module")
def sd_server() -> Iterator[SdServer]:
    yield from _serve(SdServer)


def _spec(tmp_path: Path, url: str, **target: object) -> str:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"target": {"url": url, **target}}))
    return str(path)


def test_sd_server_images_per_second_and_their_cost(sd_server, store_path, tmp_path) -> None:
    spec = _spec(tmp_path, sd_server.base_url, api="images", image={"size": "64x64", "n": 2, "steps": 1})
    run = servewise("bench", "--spec", spec, "--load", "concurrency:2", "--requests", "6", "--quiet", "--json", "-",
                    store=store_path, timeout=300)  # fmt: skip
    assert run.code == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = RunResult.model_validate(run.json())
    metrics, outcome = result.metrics, result.outcome
    assert metrics.requests_ok == 6 and metrics.requests_failed == 0 and outcome is not None
    assert outcome.unit == "images" and outcome.per_request == 2 and outcome.per_s > 0
    assert metrics.stopped_early == 0  # an image request asks for no tokens: none "stopped before max_tokens"
    # per image is E2E / n, request by request: its median is the requests' median E2E halved
    e2e_p50 = metrics.e2e_ms.p50
    assert e2e_p50 is not None and outcome.ms_each_p50 == pytest.approx(e2e_p50 / 2, rel=0.02)
    # images/s is two a request at the run's rate, and that rate agrees with its latency: two users, each
    # sending again on an answer, keep two in flight (Little's law: rate x mean E2E = mean concurrency)
    assert outcome.per_s == pytest.approx(2 * metrics.requests_per_s)
    in_flight = metrics.requests_per_s * (metrics.e2e_ms.mean or 0) / 1000
    assert in_flight == pytest.approx(metrics.concurrency_mean, rel=0.25) and metrics.concurrency_mean > 1.5

    plan = servewise("plan", "--from-run", result.run_id, "--current-gpu", "rtx4090", "--image-model", "sd-1.5",
                     "--image-size", "64x64", "--steps", "1", "--gpus", "rtx4090", "--price", f"rtx4090={PRICE}",
                     "--demand", "10", "--json", store=store_path)  # fmt: skip
    assert plan.code == 0, plan.stderr
    [tier] = plan.json()["tiers"]
    assert tier["measured"] and tier["per_s"] == pytest.approx(outcome.per_s)
    assert tier["cost"] == pytest.approx(PRICE / (outcome.per_s * 3600) * 1000)
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.stdout)
    html_path = tmp_path / "report.html"
    report = servewise("report", result.run_id, "--plan", str(plan_path), "-o", str(html_path), store=store_path)
    assert report.code == 0, report.stderr
    html = html_path.read_text()
    assert "Cost per 1,000 images" in html and f"${tier['cost']:,.2f}" in html and "latency per image p50" in html


def test_steps_reach_sd_server_inside_the_prompt(sd_server, store_path, tmp_path) -> None:
    """sd-server takes no steps field; given as its <sd_cpp_extra_args>, eight steps run the UNet eight times
    where the server's own --steps 1 runs it once (one step is about a fifth of an image's time here).

    Runs of one and eight steps alternate, and each side keeps its fastest image: a busy host only adds time,
    and in one CI run the text encoder alone took 1.0-2.0 s (0.4 s quiet) for three images in a row."""

    def fastest(steps: int) -> float:
        image = {"size": "64x64", "n": 1, "steps": steps, "steps_as": "sd_cpp_extra_args"}
        spec = _spec(tmp_path, sd_server.base_url, api="images", image=image)
        run = servewise("bench", "--spec", spec, "--load", "concurrency:1", "--requests", "1", "--quiet", "--json",
                        "-", store=store_path, timeout=300)  # fmt: skip
        assert run.code == 0, run.stdout[-2000:] + run.stderr[-2000:]
        return run.json()["metrics"]["e2e_ms"]["min"]

    times: dict[int, list[float]] = {1: [], 8: []}
    for _ in range(3):
        for steps in times:
            times[steps].append(fastest(steps))
    one, eight = min(times[1]), min(times[8])
    assert eight > 1.3 * one, times


def test_sd_servers_images_answer_to_a_rerank_request_is_named(sd_server, store_path, tmp_path) -> None:
    """A rerank request sent to the images route with a prompt: sd-server makes the image, and only the
    answer's shape tells the APIs apart."""
    spec = _spec(tmp_path, sd_server.base_url, api="rerank", route="/v1/images/generations",
                 extra_body={"prompt": "a red fox", "size": "64x64"})  # fmt: skip
    run = servewise("bench", "--spec", spec, "--load", "concurrency:1", "--requests", "2", "--quiet", "--json", "-",
                    store=store_path, timeout=300)  # fmt: skip
    assert run.code == 3 and "Traceback" not in run.stderr
    metrics = run.json()["metrics"]
    assert metrics["errors_by_class"] == {"protocol": 2}
    assert metrics["error_examples"]["protocol"] == "the server answered with OpenAI images, not rerank: check --api"
