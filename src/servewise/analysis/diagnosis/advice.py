"""What to do about the primary bottleneck: next steps worded for the engine that serves."""

from __future__ import annotations

from servewise.analysis.client import client_advice
from servewise.analysis.diagnosis.findings import Finding, Resource
from servewise.analysis.diagnosis.signals import known
from servewise.results import RunResult


def next_steps(primary: Finding, engine: str | None, result: RunResult | None) -> list[str]:
    n = primary.numbers
    if primary.resource == Resource.LOAD_GENERATOR:
        if primary.cause == "starved":
            return [
                f"The client fell behind its schedule ({primary.evidence}): this run measured a busy host,"
                " not the server.",
                f"{_sentence(client_advice(primary.cause))}, then bench again.",
            ]
        return [
            f"The client, not the server, is the limit ({primary.evidence}): this run understates"
            " the server.",
            f"{_sentence(client_advice(primary.cause))}; or give the client more cores or its own machine.",
        ]
    if primary.resource == Resource.ERRORS:
        classes = result.metrics.errors_by_class if result is not None else {}
        steps = [f"{primary.evidence}: the numbers of this run describe failures as much as service."]
        if classes.get("http_status"):
            steps.append(
                "HTTP errors under load (429/503) mean the server sheds load: lower the rate to its"
                " sustainable maximum (`servewise bench --load sweep`), raise its queue or concurrency limit,"
                " or add replicas."
            )
        if classes.get("timeout"):
            steps.append(
                "Timeouts: the server cannot finish in time at this load; lower the rate or add capacity."
            )
        if classes.get("connect"):
            steps.append(
                "Connection errors: check the server's listen backlog, worker count and"
                " file-descriptor limit."
            )
        return steps
    if primary.resource == Resource.KV_CAPACITY:
        head = primary.evidence.split(", VRAM")[0]
        advice = {
            "vllm": "lower max_model_len, raise gpu_memory_utilization, or move to a 48 GB+ tier — "
            "`servewise plan` shows which",
            "sglang": "raise --mem-fraction-static, lower --context-length or --max-running-requests,"
            " or move to a larger-memory tier — `servewise plan` shows which",
            "llamacpp": "raise the context (-c; each of -np slots gets c/np tokens) or lower -np,"
            " quantise the KV cache (--cache-type-k q8_0), or move to a larger-memory tier",
            "tgi": "lower --max-total-tokens / --max-batch-total-tokens or move to a larger-memory tier",
        }.get(
            engine or "",
            "give the KV cache more memory (shorter max context, larger memory fraction, quantised"
            " KV) or move to a larger-memory tier — `servewise plan` shows which",
        )
        return [f"{head}: {advice}."]
    if primary.resource == Resource.SERVER_CPU:
        advice = {
            "llamacpp": "set -t to the physical cores the server may use, pin it away from the client,"
            " or serve on a GPU build",
            "vllm": "on GPU, vLLM's API process (tokenisation, detokenisation, streaming) is CPU-bound:"
            " add API server processes (--api-server-count), use a faster CPU; on CPU, add cores",
        }.get(engine or "", "give the server more cores or more worker processes, or move the model to a GPU")
        return [f"Server CPU saturated ({primary.evidence}): {advice}."]
    if primary.resource == Resource.GPU_COMPUTE and "step_elasticity" in n:
        return [
            f"The serving hardware is saturated ({primary.evidence}): a higher sequence limit would not add"
            " throughput. Add replicas or move to a faster tier (`servewise plan` shows which).",
        ]
    if primary.resource == Resource.GPU_COMPUTE:
        return [
            f"GPU compute-bound ({primary.evidence}): typical of prefill-heavy load. Enable prefix"
            " caching and chunked prefill, quantise to FP8/INT8, shorten prompts, or move to a faster"
            " tier — `servewise plan` shows which.",
        ]
    if primary.resource == Resource.GPU_MEMORY_BANDWIDTH:
        return [
            f"GPU memory-bandwidth-bound ({primary.evidence}): typical of decode. Quantise weights and"
            " KV (FP8, AWQ/GPTQ), try speculative decoding, or move to a higher-bandwidth tier"
            " (e.g. H100 → H200) — `servewise plan` shows which.",
        ]
    if primary.resource == Resource.ADMISSION_QUEUE:
        advice = {
            "vllm": "raise --max-num-seqs / --max-num-batched-tokens",
            "sglang": "raise --max-running-requests",
            "llamacpp": "raise -np (parallel slots)",
            "tgi": "raise --max-concurrent-requests and --max-batch-prefill-tokens",
            "triton": "raise the model's dynamic-batching max batch size or instance count",
        }.get(engine or "", "raise the server's concurrency limit")
        running = n.get("running_max")
        cap = f" (running capped at {running:.0f})" if running is not None and known(running) else ""
        if n.get("accelerator_seen") == 0:
            return [
                f"Requests queue at the engine{cap}, and the accelerator behind it was not read: a saturated"
                " GPU queues requests the same way. Bench again with the serving host's dcgm-exporter"
                " (--dcgm URL) before changing the engine's limits; with GPU headroom, "
                f"{advice}."
            ]
        return [f"Requests queue while the hardware has headroom{cap}: {advice}, or add replicas."]
    if primary.resource == Resource.DISK_IO:
        return [
            f"Disk-bound ({primary.evidence}): move weights/caches to faster local NVMe, add page"
            " cache (RAM), or preload the model; check for swapping or logging on the hot path."
        ]
    if primary.resource == Resource.NETWORK:
        return [
            f"Network-bound ({primary.evidence}): co-locate client and server, use a faster link, or shrink"
            " responses (compression, float16/base64 embeddings, fewer streamed chunks)."
        ]
    load = (result.load if result is not None else "") or "this load"
    return [
        f"No resource saturated at {load}: the server has headroom. Raise the load"
        " (`servewise bench --load sweep`) to find where it bends."
    ]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
