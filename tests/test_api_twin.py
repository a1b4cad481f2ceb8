"""Images and rerank beyond the protocol: the twin as an image engine, bench --api images against it (images/s,
latency per image), plan's cost per 1,000 images calibrated on that run and shown in the report, and cost per
1M reranked documents. No real image engine runs here, so images are tested against the twin only."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from servewise.capacity.hardware import builtin_catalog
from servewise.capacity.images import (
    MeasuredRate,
    image_model,
    plan_documents,
    plan_images,
    seconds_per_image,
)
from servewise.results import RunResult

from cli_runner import servewise
from servers.process import free_port, stop, wait_ready

RTX4090 = builtin_catalog().get("rtx4090")
ONE_STEP_S = seconds_per_image(image_model("sd-1.5"), RTX4090, "512x512", 1)  # about 0.06 s


def test_image_twin_makes_one_image_after_another() -> None:
    """Two requests at once: the second waits for the first's images, as on one real GPU."""
    from servewise.twin.images import start_image_twin

    async def scenario() -> tuple[list[float], dict, dict]:
        async with (
            await start_image_twin(model="sd-1.5", gpu="rtx4090") as twin,
            aiohttp.ClientSession(twin.url) as http,
        ):
            body = {"prompt": "a red fox", "size": "512x512", "n": 2, "steps": 1}

            async def one() -> tuple[float, dict]:
                t0 = time.perf_counter()
                async with http.post("/v1/images/generations", json=body) as resp:
                    answer = await resp.json()
                return time.perf_counter() - t0, answer

            results = await asyncio.gather(one(), one())
            bad = await (await http.post("/v1/images/generations", json={"prompt": "x", "n": 0})).json()
            info = await (await http.get("/twin")).json()
            return sorted(t for t, _ in results), results[0][1] | {"bad": bad}, info

    times, answer, info = asyncio.run(scenario())
    assert len(answer["data"]) == 2 and answer["data"][0]["b64_json"]
    assert 2 * ONE_STEP_S * 0.9 <= times[0] < 2 * ONE_STEP_S + 0.5
    assert times[1] >= 4 * ONE_STEP_S * 0.9  # queued behind the first request's two images
    assert info["images"] == 4 and "n must be" in answer["bad"]["error"]["message"]


@pytest.fixture
def image_twin() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "servewise", "twin", "--image-model", "sd-1.5", "--gpu", "rtx4090", "--port", str(port)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/health", proc)
        yield url
    finally:
        stop(proc)


def _spec(tmp_path: Path, url: str, **target: object) -> str:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"target": {"url": url, **target}}))
    return str(path)


def test_bench_images_plan_and_report_on_the_image_twin(image_twin, store_path, tmp_path) -> None:
    spec = _spec(tmp_path, image_twin, api="images", image={"size": "512x512", "n": 2, "steps": 1})
    run = servewise("bench", "--spec", spec, "--load", "concurrency:2", "--requests", "8", "--quiet", "--json", "-",
                    store=store_path)  # fmt: skip
    assert run.code == 0, run.stderr
    summary = run.json()
    result = RunResult.model_validate(summary)
    assert result.metrics.requests_ok == 8 and result.outcome is not None
    outcome = result.outcome
    assert outcome.unit == "images" and outcome.per_request == 2
    # one GPU, one image after another: the rate is one image per image-time whatever the concurrency
    assert 0.7 / ONE_STEP_S < outcome.per_s < 1.05 / ONE_STEP_S, outcome
    # two users of two images each: a request waits for the other's images, then makes its own
    assert outcome.ms_each_p50 is not None and outcome.ms_each_p50 >= 0.9 * ONE_STEP_S * 1000
    assert "per image: E2E / n" in summary["target"]["timing"]  # the definition stored beside the target

    plan = servewise("plan", "--from-run", result.run_id, "--current-gpu", "rtx4090", "--image-model", "sd-1.5",
                     "--image-size", "512x512", "--steps", "1", "--gpus", "rtx4090,h100-sxm", "--price",
                     "rtx4090=0.5", "--demand", "100", "--json", store=store_path)  # fmt: skip
    assert plan.code == 0, plan.stderr
    tiers = {t["gpu"]: t for t in plan.json()["tiers"]}
    measured = tiers["rtx4090"]
    assert measured["measured"] and measured["per_s"] == pytest.approx(outcome.per_s)
    assert measured["cost"] == pytest.approx(0.5 / (outcome.per_s * 3600) * 1000)
    assert measured["replicas"] == -(-100 // outcome.per_s)
    assert tiers["h100-sxm"]["per_s"] > measured["per_s"] and not tiers["h100-sxm"]["measured"]
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.stdout)
    terminal = servewise("plan", "--from-run", result.run_id, "--current-gpu", "rtx4090", "--image-model", "sd-1.5",
                         "--image-size", "512x512", "--steps", "1", "--gpus", "rtx4090", store=store_path)  # fmt: skip
    assert terminal.code == 0 and "$ per 1,000 images" in terminal.stdout and "(measured)" in terminal.stdout

    html_path = tmp_path / "report.html"
    report = servewise(
        "report", result.run_id, "--plan", str(plan_path), "-o", str(html_path), store=store_path
    )
    assert report.code == 0, report.stderr
    html = html_path.read_text()
    assert "Cost per 1,000 images" in html and f"${measured['cost']:,.2f}" in html
    assert "images/s" in html and "latency per image p50" in html


def test_an_images_answer_to_a_rerank_request_is_named(image_twin, store_path, tmp_path) -> None:
    """The rerank request is sent to the images route with a prompt, so only the answer's shape differs."""
    spec = _spec(tmp_path, image_twin, api="rerank", route="/v1/images/generations",
                 extra_body={"prompt": "x", "size": "64x64", "steps": 1})  # fmt: skip
    run = servewise("bench", "--spec", spec, "--load", "concurrency:1", "--requests", "2", "--quiet", "--json", "-",
                    store=store_path)  # fmt: skip
    assert run.code == 3 and "Traceback" not in run.stderr
    metrics = run.json()["metrics"]
    assert metrics["errors_by_class"] == {"protocol": 2}
    assert (
        metrics["error_examples"]["protocol"]
        == "the server answered with OpenAI images, not rerank: check --api"
    )


def test_plan_image_prior_and_documents_cost() -> None:
    catalog = builtin_catalog().with_prices({"rtx4090": 0.5})
    plan = plan_images(image_model("sdxl"), catalog, "rtx4090,h100-sxm", "1024x1024", None, demand=3.0)
    assert plan.unit == "images" and plan.per == 1000 and not any(t.measured for t in plan.tiers)
    rtx = plan.tiers[0]
    assert rtx.cost == pytest.approx(0.5 / (rtx.per_s * 3600) * 1000) and rtx.replicas == -(-3 // rtx.per_s)
    assert "a prior" in plan.notes[0]
    documents = plan_documents(MeasuredRate("run1", catalog.get("rtx4090"), 250.0), demand=1000.0)
    [tier] = documents.tiers
    assert documents.cost_label == "$ per 1M documents" and tier.measured and tier.replicas == 4
    assert tier.cost == pytest.approx(0.5 / (250 * 3600) * 1e6)  # $0.56 per 1M documents


def test_plan_refuses_what_it_cannot_plan(store_path) -> None:
    unknown = servewise("plan", "--image-model", "dalle-9", store=store_path)
    assert unknown.code == 2 and "unknown image model 'dalle-9'" in unknown.stderr + unknown.stdout
    assert "Traceback" not in unknown.stderr
