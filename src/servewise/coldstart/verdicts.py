"""Cold-start statistics and verdicts (pure: plain numbers in, plain dicts out).

A startup is a timeline of events (spawn, log markers, port open, health OK, first response).
The phase that *ends* at an event is the gap since the previous event; those gaps add up to the
time to first response, so "which phase dominates" is a fair question of them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# CV bands for "is startup the same every time"; autoscaling plans on the worst case, so anything
# past a quarter of the median is called out.
REPEATABLE_CV = 0.10
VARIABLE_CV = 0.25
MIN_RUNS_FOR_CV = 3
# a first request this many times the steady median means traffic should wait for a warm-up
SLOW_FIRST_REQUEST_RATIO = 2.0
# reads below this share of the model size mean the weights came from the page cache
PAGE_CACHE_WARM_SHARE = 0.2
# disk kept at this share of its best observed rate through loading = the disk set the pace
IO_BOUND_RATE_SHARE = 0.5

PHASE_ADVICE: Mapping[str, str] = {
    "port_open": "the process takes long to bind its port: imports (torch) and argument checks; "
    "a slimmer image, a local (not network) filesystem for the environment, or a pre-imported warm pool help",
    "health_ok": "the server listens long before it is healthy: that is model loading and engine set-up; "
    "see the log phases for which part",
    "models_listed": "health is OK before the model is listed: load balancers should probe /v1/models, "
    "not /health",
    "first_token": "the first request waits long after health is OK: the server reports ready too early; "
    "send a warm-up request before taking traffic",
    "first_ok": "the first response is slow to finish: warm up before taking traffic",
    "weights_loaded": "weight loading dominates: keep weights on local NVMe, use safetensors, pre-warm the "
    "page cache, or stream weights (e.g. vLLM --load-format runai_streamer); see the I/O verdict",
    "model_loaded": "model loading dominates: see the I/O verdict for whether the disk sets the pace",
    "weights_downloaded": "downloading weights dominates: bake them into the image or a shared volume",
    "shard_ready": "shard start (weight loading) dominates: see the I/O verdict",
    "dynamo_transformed": "torch.compile tracing dominates: keep the compile cache (~/.cache/vllm) on a "
    "persistent volume shared by replicas",
    "graph_compiled": "torch.compile dominates: keep the compile cache (~/.cache/vllm) on a persistent "
    "volume shared by replicas, or trade steady speed for start time with --enforce-eager / -O0",
    "compiled": "torch.compile dominates: keep the compile cache (~/.cache/vllm) on a persistent volume "
    "shared by replicas, or trade steady speed for start time with --enforce-eager / -O0",
    "engine_init_start": "the process spends long before the engine starts (Python and torch imports, config "
    "resolution): a slimmer image, a local filesystem for the environment, or a pre-started warm pool help",
    "weights_load_start": "engine workers take long to start before loading begins (process spawn, imports, "
    "distributed init)",
    "compile_saved": "torch.compile dominates (the phase ends when the compiled graph is saved): keep the "
    "compile cache on a persistent volume shared by replicas, or run eager (--enforce-eager)",
    "graph_captured": "CUDA-graph capture dominates: capture fewer batch sizes (vLLM --cuda-graph-sizes, "
    "SGLang --cuda-graph-max-bs) or run eager",
    "engine_init": "engine initialisation (memory profiling, KV-cache allocation, warm-up) dominates: "
    "a fixed KV-cache size (e.g. vLLM --kv-cache-memory) skips profiling",
    "kv_cache_allocated": "KV-cache set-up dominates: fix its size instead of profiling for it",
    "context_created": "context creation dominates: a smaller context (-c) or fewer slots start faster",
    "warmup_start": "the engine's own warm-up dominates",
}


@dataclass(frozen=True, slots=True)
class Event:
    """A point on one startup's timeline, ``t`` in seconds since spawn."""

    name: str
    t: float
    source: str  # "probe" (we observed it), "log" (a marker line), "process"
    reported_s: float | None = None


def phases(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Gaps between consecutive events, each named for the event that ends it.

    Events at the same moment (two markers in one read) give zero-length phases, kept so every
    run lists the same names."""
    ordered = sorted(events, key=lambda e: e.t)
    found = []
    previous_name, previous_t = "spawn", 0.0
    for event in ordered:
        if event.name == "spawn":
            continue
        found.append(
            {
                "name": event.name,
                "after": previous_name,
                "start_s": previous_t,
                "end_s": event.t,
                "duration_s": max(0.0, event.t - previous_t),
                "reported_s": event.reported_s,
                # time in this phase the server's own number does not account for
                "unlogged_s": None
                if event.reported_s is None
                else max(0.0, event.t - previous_t - event.reported_s),
            }
        )
        previous_name, previous_t = event.name, event.t
    return found


def stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """count/min/median/max/mean/std and CV (std/mean, sample std); CV is None below 2 values."""
    if not values:
        return {"count": 0, "min": None, "median": None, "max": None, "mean": None, "std": None, "cv": None}
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    cv = std / mean if std is not None and mean > 0 else None
    return {
        "count": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "mean": mean,
        "std": std,
        "cv": cv,
    }


def aggregate(per_run: Sequence[Mapping[str, float | None]]) -> dict[str, dict[str, float | int | None]]:
    """Stats per key over runs; a key missing (or None) in a run is left out for that run only."""
    keys: list[str] = []
    for run in per_run:
        keys.extend(k for k in run if k not in keys)
    return {key: stats([v for run in per_run if (v := run.get(key)) is not None]) for key in keys}


def _finding(key: str, verdict: str, evidence: str, advice: str | None = None) -> dict[str, str | None]:
    return {"key": key, "verdict": verdict, "evidence": evidence, "advice": advice}


def repeatability(startup_s: Sequence[float]) -> dict[str, str | None]:
    """Is time to first response the same every time (CV of the runs)?"""
    if len(startup_s) < MIN_RUNS_FOR_CV:
        return _finding(
            "repeatability",
            "inconclusive",
            f"{len(startup_s)} successful run(s); CV needs at least {MIN_RUNS_FOR_CV}",
            f"run with --runs {max(5, MIN_RUNS_FOR_CV)} to judge repeatability",
        )
    s = stats(startup_s)
    cv = s["cv"] or 0.0
    evidence = (
        f"time to first response over {s['count']} runs: min {s['min']:.2f} s, median {s['median']:.2f} s, "
        f"max {s['max']:.2f} s, CV {cv:.1%}"
    )
    if cv <= REPEATABLE_CV:
        return _finding("repeatability", "repeatable", evidence, None)
    verdict = "variable" if cv <= VARIABLE_CV else "not repeatable"
    return _finding(
        "repeatability",
        verdict,
        evidence,
        f"plan autoscaling and rollbacks on the max ({s['max']:.1f} s), not the median; compare the per-run "
        "phases and cache state to find which step varies (a cold page or compile cache in some runs is the "
        "usual cause)",
    )


def dominant_phase(phase_medians: Mapping[str, float], startup_median: float) -> dict[str, str | None]:
    """The phase with the largest median share of time to first response."""
    if not phase_medians or startup_median <= 0:
        return _finding("dominant_phase", "inconclusive", "no run reached a first response", None)
    name = max(phase_medians, key=lambda key: phase_medians[key])
    share = phase_medians[name] / startup_median
    advice = PHASE_ADVICE.get(name, f"look at what the server does just before logging {name!r}")
    return _finding(
        "dominant_phase",
        name,
        f"{name}: median {phase_medians[name]:.2f} s of {startup_median:.2f} s to first response "
        f"({share:.0%})",
        advice,
    )


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


@dataclass(frozen=True, slots=True)
class LoadIo:
    """What one run read while loading weights."""

    model_bytes: int | None
    load_s: float | None  # the weight-loading window, seconds
    read_bytes: int | None  # bytes read from disk during that window (process tree, else host)
    peak_read_rate: float | None  # best read rate seen during the whole startup, bytes/s
    device: str | None = None  # e.g. "nvme0n1 (non-rotational)"
    resident_share: float | None = None  # share of the model files in the page cache before the start


def io_bound(load: LoadIo) -> dict[str, str | None]:
    """Is weight loading paced by the disk? Compare bytes read and the read rate against the model size
    and the best rate the disk showed during the same startup."""
    device = f" on {load.device}" if load.device else ""
    if not load.model_bytes:
        return _finding(
            "io_bound",
            "inconclusive",
            "model size unknown",
            "pass --model-path DIR to compare reads to the model size",
        )
    if load.resident_share is not None and load.resident_share >= 1 - PAGE_CACHE_WARM_SHARE:
        return _finding(
            "io_bound",
            "page cache warm",
            f"{load.resident_share:.0%} of the {_size(load.model_bytes)} model was in the page cache before "
            "the start (fincore): the weights came from memory",
            "this is not a true cold start; use --drop-caches (root) to measure one",
        )
    if load.load_s is None or load.read_bytes is None:
        return _finding("io_bound", "inconclusive", "no weight-loading window or no disk counters", None)
    model = _size(load.model_bytes)
    share = load.read_bytes / load.model_bytes
    if share < PAGE_CACHE_WARM_SHARE:
        return _finding(
            "io_bound",
            "page cache warm",
            f"read {_size(load.read_bytes)} from disk for a {model} model ({share:.0%}) in a "
            f"{load.load_s:.2f} s load: the weights came from memory",
            "this is not a true cold start; use --drop-caches (root) to measure one",
        )
    rate = load.read_bytes / load.load_s if load.load_s > 0 else 0.0
    evidence = (
        f"read {_size(load.read_bytes)} ({share:.0%} of the {model} model) in {load.load_s:.2f} s: "
        f"{rate / 1e6:.0f} MB/s effective{device}"
    )
    if load.peak_read_rate:
        evidence += f", best rate seen {load.peak_read_rate / 1e6:.0f} MB/s"
    if load.peak_read_rate and rate >= IO_BOUND_RATE_SHARE * load.peak_read_rate:
        return _finding(
            "io_bound",
            "I/O-bound",
            evidence,
            "the disk sets the pace of loading: faster local storage (NVMe), a pre-warmed page cache or a "
            "weight streamer shorten it",
        )
    return _finding(
        "io_bound",
        "not I/O-bound",
        evidence,
        "loading spends most of its time off the disk (deserialising, converting, placing weights): "
        "a faster disk will not help much",
    )


def compile_cache(
    runs: Sequence[tuple[bool | None, float | None]], load_failures: int = 0
) -> dict[str, str | None] | None:
    """Per run (compile cache existed before start, compile seconds): did a warm cache help?
    ``load_failures``: warm starts whose engine said it could not load its cache and compiled again
    (torch inductor's own cache may still make that recompile faster). None when nothing compiled."""
    cold = [s for existed, s in runs if existed is False and s is not None]
    warm = [s for existed, s in runs if existed and s is not None]
    failed_note = (
        f"; in {load_failures} warm start(s) the engine could not load its compile cache and compiled again "
        "(the log says 'Compiling model again due to a load failure')"
        if load_failures
        else ""
    )
    fix_loading = (
        "the engine's cache is written but not reused: check that engine and torch versions match the ones "
        "that wrote it, or report the load error upstream"
    )
    if cold and warm:
        cold_m, warm_m = statistics.median(cold), statistics.median(warm)
        helps = warm_m < cold_m
        verdict = "cache helps" if helps else "cache does not help"
        if load_failures:
            verdict = "cache helps partly" if helps else "cache present but not loaded"
        advice = "keep the compile caches on a persistent volume shared by replicas so scale-ups start warm"
        return _finding(
            "compile_cache",
            verdict,
            f"compile {cold_m:.2f} s with empty caches ({len(cold)} run(s)), {warm_m:.2f} s with them "
            f"({len(warm)} run(s)){failed_note}",
            f"{fix_loading}; {advice}" if load_failures else (advice if helps else None),
        )
    if not cold and not warm:
        return None
    values = cold or warm
    verdict = f"cache {'cold' if cold else 'warm'} in every run"
    if load_failures:
        verdict = "cache present but not loaded"
    return _finding(
        "compile_cache",
        verdict,
        f"compile median {statistics.median(values):.2f} s over {len(values)} run(s){failed_note}",
        fix_loading
        if load_failures
        else ("use --clear on the compile cache to see what a cold start costs" if warm else None),
    )


def first_request(first_e2e_s: float | None, steady_e2e_s: float | None) -> dict[str, str | None]:
    """Is the first request after ready slower than the ones that follow?"""
    if first_e2e_s is None or not steady_e2e_s:
        return _finding("warm_up", "inconclusive", "no steady requests after the first", None)
    ratio = first_e2e_s / steady_e2e_s
    evidence = (
        f"first request {first_e2e_s * 1e3:.0f} ms vs steady median {steady_e2e_s * 1e3:.0f} ms "
        f"({ratio:.1f}x)"
    )
    if ratio >= SLOW_FIRST_REQUEST_RATIO:
        return _finding(
            "warm_up",
            "first request slow",
            evidence,
            "send warm-up requests before the server takes traffic (readiness probe that runs one)",
        )
    return _finding("warm_up", "warm at ready", evidence, None)


# phase names that end / begin weight loading, in order of preference
LOAD_END = ("weights_loaded", "model_loaded", "shard_ready")
LOAD_START = ("weights_load_start", "download_start", "shard_start")


def load_window(events: Sequence[Event]) -> tuple[str, float, str, float] | None:
    """(start name, start t, end name, end t) of weight loading: from its start marker (else spawn)
    to its end marker (else health OK, which bounds everything the server did before serving)."""
    at: dict[str, float] = {}
    for event in events:
        at.setdefault(event.name, event.t)
    end = next(((name, at[name]) for name in LOAD_END if name in at), None)
    if end is None:
        end = ("health_ok", at["health_ok"]) if "health_ok" in at else None
    if end is None:
        return None
    start = next(
        ((name, at[name]) for name in LOAD_START if name in at and at[name] <= end[1]), ("spawn", 0.0)
    )
    return start[0], start[1], end[0], end[1]


def counter_delta(series: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """Growth of a cumulative counter between two times: the last reading at or before each time
    (the first reading when none is that early)."""
    if not series:
        return None

    def at(t: float) -> float:
        value = series[0][1]
        for ts, v in series:
            if ts > t:
                break
            value = v
        return value

    return max(0.0, at(end) - at(start))


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def compile_seconds(run: Mapping[str, Any]) -> float | None:
    """How long a start spent compiling: the server's own total, else from the compile-start marker
    to the compiled marker, else the phase that ends at "compiled"."""
    at = {e["name"]: e for e in reversed(run["events"])}
    if "compiled" in at and at["compiled"].get("reported_s") is not None:
        return at["compiled"]["reported_s"]
    if "compiled" in at and "compile_start" in at:
        return max(0.0, at["compiled"]["t"] - at["compile_start"]["t"])
    return next(
        (p["duration_s"] for p in run["phases"] if p["name"] in ("compiled", "compile_cache_hit")), None
    )


def compile_cache_warm(run: Mapping[str, Any]) -> bool:
    """A start found a compile cache (the engine's or torch inductor's) with something in it."""
    cache = run["cache"]
    return bool(cache["compile_cache"]["existed"] or (cache.get("inductor_cache") or {}).get("existed"))


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-run results -> aggregate (min/median/max/CV per milestone and phase) and verdicts."""
    ok = [r for r in results if r["status"] == "ok"]
    startup = [r["startup_s"] for r in ok if r["startup_s"] is not None]
    milestones = aggregate([{e["name"]: e["t"] for e in r["events"]} for r in ok])
    phase_stats = aggregate([{p["name"]: p["duration_s"] for p in r["phases"]} for r in ok])
    reported = aggregate(
        [{e["name"]: e["reported_s"] for e in r["events"] if e.get("reported_s") is not None} for r in ok]
    )
    requests = {
        "first_ttft_ms": stats([v for r in ok if (v := r["first_request"]["ttft_ms"]) is not None]),
        "first_e2e_ms": stats([v for r in ok if (v := r["first_request"]["e2e_ms"]) is not None]),
        "steady_e2e_ms": stats([v for r in ok if (v := r["warm"]["steady_e2e_ms"]) is not None]),
    }
    resources = {
        key: stats([v for r in ok if (v := r["resources"].get(key)) is not None])
        for key in ("peak_rss_bytes", "peak_cpu_percent", "peak_vram_bytes", "disk_read_bytes")
    }
    found: list[dict[str, str | None]] = []
    if ok:
        found.append(repeatability(startup))
        medians = {name: s["median"] for name, s in phase_stats.items() if s["median"] is not None}
        found.append(dominant_phase(medians, statistics.median(startup) if startup else 0.0))
        found.append(io_bound(_coldest_load(ok)))
        failures = sum(
            1
            for r in ok
            if compile_cache_warm(r) and any(e["name"] == "compile_cache_load_failed" for e in r["events"])
        )
        cache = compile_cache([(compile_cache_warm(r), compile_seconds(r)) for r in ok], failures)
        if cache is not None:
            found.append(cache)
        first_ms = _median(r["first_request"]["e2e_ms"] for r in ok)
        steady_ms = _median(r["warm"]["steady_e2e_ms"] for r in ok)
        found.append(
            first_request(
                first_ms / 1e3 if first_ms is not None else None,
                steady_ms / 1e3 if steady_ms is not None else None,
            )
        )
    return {
        "runs": list(results),
        "runs_ok": len(ok),
        "engine": next((r["engine"] for r in results if r.get("engine")), None),
        "model_bytes": next((r["model_bytes"] for r in results if r.get("model_bytes")), None),
        "aggregate": {
            "startup_s": stats(startup),
            **requests,
            "milestones": milestones,
            "phases": phase_stats,
            "reported": reported,
            "resources": resources,
        },
        "verdicts": found,
    }


def _coldest_load(ok: Sequence[Mapping[str, Any]]) -> LoadIo:
    """The run closest to a true cold start: the least of the model in page cache, then the most read."""
    run = min(
        ok,
        key=lambda r: (
            r["cache"].get("model_resident_share") or 0.0,
            -(r["load_io"].get("read_bytes") or 0.0),
        ),
    )
    io = run["load_io"]
    rate_key = "peak_disk_read_rate" if io.get("counter") == "disk_read_bytes" else "peak_host_disk_read_rate"
    read = io.get("read_bytes")
    return LoadIo(
        model_bytes=run.get("model_bytes"),
        load_s=io.get("load_s"),
        read_bytes=int(read) if read is not None else None,
        peak_read_rate=run["resources"].get(rate_key),
        device=run.get("device"),
        resident_share=run["cache"].get("model_resident_share"),
    )
