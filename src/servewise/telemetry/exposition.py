"""Prometheus text from a serving engine -> canonical signals + raw series.

Every engine names the same facts differently (``vllm:num_requests_waiting``, ``sglang:num_queue_reqs``,
``tgi_queue_size``, ``llamacpp:requests_deferred`` ...). Diagnosis rules are written once against the
canonical names listed in :mod:`servewise.telemetry`; this module holds the per-engine map and is the only
place that knows engine spellings. Parsing uses ``prometheus_client``'s maintained parser.

Prefix cache (what the engine reused of the prompts it was sent; read by :mod:`servewise.analysis.cache`):

``prefix_cache_queries_total``
    counter, tokens: every prompt token the engine looked up in its prefix cache (hit or miss).
``prefix_cache_hits_total``
    counter, tokens: the looked-up tokens whose KV came from the cache instead of being computed.
``prefix_cache_hit_rate``
    gauge, 0..1: the engine's own recent hit rate, for engines that export no counters; a gauge covers only
    the engine's latest window, so the counters win wherever both exist.

Where they come from (verified against the named versions): vLLM 0.32.0 (captured:
``tests/fixtures/telemetry/vllm_metrics_prefix_cache.prom``) ``vllm:prefix_cache_queries_total`` /
``vllm:prefix_cache_hits_total``, named ``vllm:gpu_prefix_cache_*`` before 0.9.2 (hidden from 0.11,
removed in 0.12), and the v0 engine's ``vllm:gpu_prefix_cache_hit_rate`` gauge; llama.cpp's llama-server
0.5.0-dev (captured: ``llamacpp_metrics_prompt_cache.prom``) ``llamacpp:prompt_tokens_cached_total`` (hits)
beside ``llamacpp:prompt_tokens_total``, which *excludes* cached tokens, so queries are their sum; SGLang
(``python/sglang/srt/metrics/collector.py``) ``sglang:realtime_tokens_total{mode="prefill_cache"}`` and
``{mode="prefill_compute"}`` (scheduler side, summed for queries), else ``sglang:cached_tokens_total`` over
``sglang:prompt_tokens_total`` (whole prompts, counted when a request finishes), and the ``sglang:cache_hit_rate``
gauge. Labelled counters appear only once they first move (SGLang's hit series with the first hit), which
:func:`servewise.analysis.cache.engine_hit_rate` reads as zero until then.
TGI exports nothing about its prefix cache (docs/source/reference/metrics.md). Triton's TensorRT-LLM backend
exports reused blocks only (``nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="reused"}``), with no
count of blocks looked up, so no rate can be formed from it: it stays a raw series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from servewise.records import Sample

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RawSeries:
    """One exposition sample: full sample name (``_sum``/``_count`` kept), labels, value."""

    name: str
    labels: Labels
    value: float


@dataclass(frozen=True, slots=True)
class SignalRule:
    """Where a canonical signal comes from in one engine's exposition.

    ``keep`` filters label sets (e.g. only ``request_type="waiting"``); ``scale`` converts units
    (Triton reports microseconds); ``combine`` merges label sets: ``sum`` for counts across models
    or data-parallel engines, ``max`` for fractions, where the fullest engine is the one that hurts,
    ``mean`` for rates, where no one engine stands for the rest. ``also`` names series added to ``source``
    (llama.cpp counts computed and cached prompt tokens apart); the rule applies only when all are present.
    ``per`` makes the signal a ratio: what ``keep`` selects over the same series' label sets that ``per``
    selects (TensorRT-LLM's used KV blocks over its max blocks).
    """

    canonical: str
    source: str
    scale: float = 1.0
    combine: str = "sum"
    keep: Callable[[dict[str, str]], bool] | None = None
    also: tuple[str, ...] = ()
    per: Callable[[dict[str, str]], bool] | None = None


def _api_request(labels: dict[str, str]) -> bool:
    """FastAPI-instrumentator series also count health checks and scrapes; only API calls are requests."""
    return labels.get("handler", "") not in {"/health", "/metrics", "/v1/health"}


def _block_type(kind: str) -> Callable[[dict[str, str]], bool]:
    return lambda labels: labels.get("kv_cache_block_type") == kind


def _api_error(labels: dict[str, str]) -> bool:
    return _api_request(labels) and labels.get("status", labels.get("code", ""))[:1] in {"4", "5"}


def _method(name: str) -> Callable[[dict[str, str]], bool]:
    return lambda labels: labels.get("method") == name


def _sglang_mode(*modes: str) -> Callable[[dict[str, str]], bool]:
    return lambda labels: labels.get("mode") in modes


_HISTOGRAM_PAIRS = ("_sum", "_count")

ENGINE_RULES: dict[str, list[SignalRule]] = {
    "vllm": [
        SignalRule("requests_running", "vllm:num_requests_running"),
        SignalRule("requests_waiting", "vllm:num_requests_waiting"),
        SignalRule("requests_swapped", "vllm:num_requests_swapped"),
        SignalRule("kv_cache_usage", "vllm:kv_cache_usage_perc", combine="max"),
        SignalRule("kv_cache_usage", "vllm:gpu_cache_usage_perc", combine="max"),  # vLLM < 0.10 (v0 engine)
        SignalRule("preemptions_total", "vllm:num_preemptions_total"),
        SignalRule("prompt_tokens_total", "vllm:prompt_tokens_total"),
        SignalRule("generation_tokens_total", "vllm:generation_tokens_total"),
        SignalRule("requests_finished_total", "vllm:request_success_total"),
        *(
            SignalRule(f"server_ttft_seconds{s}", f"vllm:time_to_first_token_seconds{s}")
            for s in _HISTOGRAM_PAIRS
        ),
        *(
            SignalRule(f"queue_time_seconds{s}", f"vllm:request_queue_time_seconds{s}")
            for s in _HISTOGRAM_PAIRS
        ),
        *(SignalRule(f"e2e_seconds{s}", f"vllm:e2e_request_latency_seconds{s}") for s in _HISTOGRAM_PAIRS),
        *(SignalRule(f"step_seconds{s}", f"vllm:inter_token_latency_seconds{s}") for s in _HISTOGRAM_PAIRS),
        *(  # the name before V1 (0.11), still exported beside the new one for a while
            SignalRule(f"step_seconds{s}", f"vllm:time_per_output_token_seconds{s}") for s in _HISTOGRAM_PAIRS
        ),
        SignalRule("prefix_cache_queries_total", "vllm:prefix_cache_queries_total"),
        SignalRule("prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),  # vLLM < 0.12
        SignalRule("prefix_cache_hits_total", "vllm:prefix_cache_hits_total"),
        SignalRule("prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),  # vLLM < 0.12
        SignalRule("prefix_cache_hit_rate", "vllm:gpu_prefix_cache_hit_rate", combine="mean"),  # v0 engine
    ],
    "sglang": [
        SignalRule("requests_running", "sglang:num_running_reqs"),
        SignalRule("requests_waiting", "sglang:num_queue_reqs"),
        SignalRule("kv_cache_usage", "sglang:token_usage", combine="max"),
        SignalRule("preemptions_total", "sglang:num_retracted_reqs_total"),
        SignalRule("prompt_tokens_total", "sglang:prompt_tokens_total"),
        SignalRule("generation_tokens_total", "sglang:generation_tokens_total"),
        SignalRule("requests_finished_total", "sglang:num_requests_total"),
        SignalRule("requests_failed_total", "sglang:num_aborted_requests_total"),
        *(
            SignalRule(f"server_ttft_seconds{s}", f"sglang:time_to_first_token_seconds{s}")
            for s in _HISTOGRAM_PAIRS
        ),
        *(SignalRule(f"queue_time_seconds{s}", f"sglang:queue_time_seconds{s}") for s in _HISTOGRAM_PAIRS),
        *(SignalRule(f"e2e_seconds{s}", f"sglang:e2e_request_latency_seconds{s}") for s in _HISTOGRAM_PAIRS),
        *(SignalRule(f"step_seconds{s}", f"sglang:inter_token_latency_seconds{s}") for s in _HISTOGRAM_PAIRS),
        *(
            SignalRule(f"step_seconds{s}", f"sglang:time_per_output_token_seconds{s}")
            for s in _HISTOGRAM_PAIRS
        ),
        SignalRule(
            "prefix_cache_queries_total",
            "sglang:realtime_tokens_total",
            keep=_sglang_mode("prefill_compute", "prefill_cache"),
        ),
        # whole prompts, cached tokens included (TokenizerMetricsCollector.observe_one_finished_request)
        SignalRule("prefix_cache_queries_total", "sglang:prompt_tokens_total"),
        SignalRule(
            "prefix_cache_hits_total", "sglang:realtime_tokens_total", keep=_sglang_mode("prefill_cache")
        ),
        SignalRule("prefix_cache_hits_total", "sglang:cached_tokens_total"),
        SignalRule("prefix_cache_hit_rate", "sglang:cache_hit_rate", combine="mean"),
    ],
    "tgi": [
        SignalRule("requests_running", "tgi_batch_current_size"),
        SignalRule("requests_waiting", "tgi_queue_size"),
        SignalRule("prompt_tokens_total", "tgi_request_input_length_sum"),
        SignalRule("generation_tokens_total", "tgi_request_generated_tokens_sum"),
        SignalRule("requests_finished_total", "tgi_request_success_total"),
        SignalRule("requests_failed_total", "tgi_request_failure_total"),
        *(SignalRule(f"queue_time_seconds{s}", f"tgi_request_queue_duration{s}") for s in _HISTOGRAM_PAIRS),
        *(SignalRule(f"e2e_seconds{s}", f"tgi_request_duration{s}") for s in _HISTOGRAM_PAIRS),
        *(  # one decode forward pass of the whole batch: the step itself
            SignalRule(f"step_seconds{s}", f"tgi_batch_forward_duration{s}", keep=_method("decode"))
            for s in _HISTOGRAM_PAIRS
        ),
    ],
    "triton": [
        SignalRule("requests_waiting", "nv_inference_pending_request_count"),
        SignalRule("requests_finished_total", "nv_inference_request_success_total"),
        SignalRule("requests_failed_total", "nv_inference_request_failure_total"),
        SignalRule("queue_time_seconds_sum", "nv_inference_queue_duration_us_total", scale=1e-6),
        SignalRule("queue_time_seconds_count", "nv_inference_request_success_total"),
        SignalRule("e2e_seconds_sum", "nv_inference_request_duration_us_total", scale=1e-6),
        SignalRule("e2e_seconds_count", "nv_inference_request_success_total"),
        # TensorRT-LLM backend
        SignalRule(
            "requests_running",
            "nv_trt_llm_request_metrics",
            keep=lambda lab: lab.get("request_type") == "active",
        ),
        SignalRule(
            "requests_waiting",
            "nv_trt_llm_request_metrics",
            keep=lambda lab: lab.get("request_type") == "waiting",
        ),
        SignalRule(
            "kv_cache_usage",
            "nv_trt_llm_kv_cache_block_metrics",
            keep=_block_type("used"),
            per=_block_type("max"),
        ),
    ],
    "llamacpp": [
        SignalRule("requests_running", "llamacpp:requests_processing"),
        SignalRule("requests_waiting", "llamacpp:requests_deferred"),
        # exported until mid-2025; today's llama-server (0.3.36's, checked) exports no KV-cache usage at all
        SignalRule("kv_cache_usage", "llamacpp:kv_cache_usage_ratio", combine="max"),
        SignalRule("prompt_tokens_total", "llamacpp:prompt_tokens_total"),
        SignalRule("generation_tokens_total", "llamacpp:tokens_predicted_total"),
        SignalRule(
            "prefix_cache_queries_total",
            "llamacpp:prompt_tokens_total",
            also=("llamacpp:prompt_tokens_cached_total",),
        ),
        SignalRule("prefix_cache_hits_total", "llamacpp:prompt_tokens_cached_total"),
        # decode time summed over slots per generated token: each busy slot gets one token a step
        SignalRule("step_seconds_sum", "llamacpp:tokens_predicted_seconds_total"),
        SignalRule("step_seconds_count", "llamacpp:tokens_predicted_total"),
        # the batch each decode ran with, exactly: busy slots per llama_decode() since start, and the calls
        SignalRule("batch_per_step_mean", "llamacpp:n_busy_slots_per_decode", combine="max"),
        SignalRule("steps_total", "llamacpp:n_decode_total"),
    ],
    "infinity": [
        SignalRule("requests_running", "http_requests_inprogress"),
        SignalRule("requests_finished_total", "http_requests_total", keep=_api_request),
        SignalRule("requests_failed_total", "http_requests_total", keep=_api_error),
    ],
}
"""Canonical signal <- engine series. Several rules may feed one canonical name (old and new vLLM names);
the first one present in a scrape wins."""

_ENGINE_MARKERS = (
    ("vllm:", "vllm"),
    ("sglang:", "sglang"),
    ("tgi_", "tgi"),
    ("nv_inference_", "triton"),
    ("nv_trt_llm_", "triton"),
    ("llamacpp:", "llamacpp"),
)


def parse_exposition(text: str) -> list[RawSeries]:
    """All samples in a Prometheus text exposition, histogram buckets and ``_created`` dropped.

    Buckets are dropped because ``_sum``/``_count`` carry what the rules use and buckets would multiply the
    stored rows by ~20 per histogram per second; ``_created`` is a timestamp, not a measurement.
    """
    series: list[RawSeries] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_created")):
                continue
            series.append(RawSeries(sample.name, tuple(sorted(sample.labels.items())), float(sample.value)))
    return series


def engine_from_metrics(series: Iterable[RawSeries]) -> str | None:
    """The engine whose metric prefix appears; ``infinity`` when only the FastAPI instrumentator is there."""
    names = {s.name for s in series}
    for prefix, engine in _ENGINE_MARKERS:
        if any(name.startswith(prefix) for name in names):
            return engine
    if "http_requests_total" in names or "http_request_duration_seconds_count" in names:
        return "infinity"
    return None


def canonical_signals(series: list[RawSeries], engine: str | None) -> dict[str, float]:
    """Canonical name -> value for the engine's rules; signals the engine does not expose are absent."""
    if engine is None:
        return {}
    by_name: dict[str, list[RawSeries]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    found: dict[str, float] = {}
    for rule in ENGINE_RULES.get(engine, ()):
        if rule.canonical in found:
            continue
        parts = [
            [s.value for s in by_name.get(name, ()) if rule.keep is None or rule.keep(dict(s.labels))]
            for name in (rule.source, *rule.also)
        ]
        if not all(parts):
            continue
        values = [v for part in parts for v in part]
        if rule.per is not None:
            per = rule.per
            whole = sum(s.value for s in by_name.get(rule.source, ()) if per(dict(s.labels)))
            if whole > 0:
                found[rule.canonical] = sum(values) / whole
            continue
        if rule.combine == "max":
            value = max(values)
        elif rule.combine == "mean":
            value = sum(values) / len(values)
        else:
            value = sum(values)
        found[rule.canonical] = value * rule.scale
    return found


def engine_samples(series: list[RawSeries], t: float, engine: str | None) -> list[Sample]:
    """One scrape as stored samples: the canonical signals (source ``metrics``) and every raw series
    (``raw:<name>``, labels kept), whether it was read from the engine or from a Prometheus that scraped it."""
    samples = [Sample(t, "metrics", name, value) for name, value in canonical_signals(series, engine).items()]
    samples += [Sample(t, "metrics", f"raw:{s.name}", s.value, s.labels) for s in series]
    return samples
