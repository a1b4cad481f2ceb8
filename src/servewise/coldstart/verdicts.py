"""Cold-start statistics and verdicts (pure: plain numbers and measured starts in, typed results out).

A startup is a timeline of events (spawn, log markers, port open, health OK, first response).
The phase that *ends* at an event is the gap since the previous event; those gaps add up to the
time to first response, so "which phase dominates" is a fair question of them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from servewise.results.coldstart import (
    ColdStart,
    ColdstartAggregate,
    ColdstartResult,
    ColdstartVerdict,
    ResourceStats,
    StartPhase,
    StartStats,
)

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


def phases(events: Iterable[Event]) -> list[StartPhase]:
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
            StartPhase(
                name=event.name,
                after=previous_name,
                start_s=previous_t,
                end_s=event.t,
                duration_s=max(0.0, event.t - previous_t),
                reported_s=event.reported_s,
                unlogged_s=None
                if event.reported_s is None
                else max(0.0, event.t - previous_t - event.reported_s),
            )
        )
        previous_name, previous_t = event.name, event.t
    return found


def stats(values: Sequence[float]) -> StartStats:
    """count/min/median/max/mean/std and CV (std/mean, sample std); CV is None below 2 values."""
    if not values:
        return StartStats(count=0, min=None, median=None, max=None, mean=None, std=None, cv=None)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    cv = std / mean if std is not None and mean > 0 else None
    return StartStats(
        count=len(values),
        min=min(values),
        median=statistics.median(values),
        max=max(values),
        mean=mean,
        std=std,
        cv=cv,
    )


def aggregate(per_run: Sequence[Mapping[str, float | None]]) -> dict[str, StartStats]:
    """Stats per key over runs; a key missing (or None) in a run is left out for that run only."""
    keys: list[str] = []
    for run in per_run:
        keys.extend(k for k in run if k not in keys)
    return {key: stats([v for run in per_run if (v := run.get(key)) is not None]) for key in keys}


def _finding(key: str, verdict: str, evidence: str, advice: str | None = None) -> ColdstartVerdict:
    return ColdstartVerdict(key=key, verdict=verdict, evidence=evidence, advice=advice)


def repeatability(startup_s: Sequence[float]) -> ColdstartVerdict:
    """Is time to first response the same every time (CV of the runs)?"""
    if len(startup_s) < MIN_RUNS_FOR_CV:
        return _finding(
            "repeatability",
            "inconclusive",
            f"{len(startup_s)} successful run(s); CV needs at least {MIN_RUNS_FOR_CV}",
            f"run with --runs {max(5, MIN_RUNS_FOR_CV)} to judge repeatability",
        )
    s = stats(startup_s)
    cv = s.cv or 0.0
    evidence = (
        f"time to first response over {s.count} runs: min {s.min:.2f} s, median {s.median:.2f} s, "
        f"max {s.max:.2f} s, CV {cv:.1%}"
    )
    if cv <= REPEATABLE_CV:
        return _finding("repeatability", "repeatable", evidence, None)
    verdict = "variable" if cv <= VARIABLE_CV else "not repeatable"
    return _finding(
        "repeatability",
        verdict,
        evidence,
        f"plan autoscaling and rollbacks on the max ({s.max:.1f} s), not the median; compare the per-run "
        "phases and cache state to find which step varies (a cold page or compile cache in some runs is the "
        "usual cause)",
    )


def dominant_phase(phase_medians: Mapping[str, float], startup_median: float) -> ColdstartVerdict:
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


def io_bound(load: LoadIo) -> ColdstartVerdict:
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
) -> ColdstartVerdict | None:
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


def first_request(first_e2e_s: float | None, steady_e2e_s: float | None) -> ColdstartVerdict:
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


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _median(values: Iterable[float | None]) -> float | None:
    present = _present(values)
    return statistics.median(present) if present else None


def compile_seconds(run: ColdStart) -> float | None:
    """How long a start spent compiling: the server's own total, else from the compile-start marker
    to the compiled marker, else the phase that ends at "compiled"."""
    at = {e.name: e for e in reversed(run.events)}
    compiled, compile_start = at.get("compiled"), at.get("compile_start")
    if compiled is not None and compiled.reported_s is not None:
        return compiled.reported_s
    if compiled is not None and compile_start is not None:
        return max(0.0, compiled.t - compile_start.t)
    return next((p.duration_s for p in run.phases if p.name in ("compiled", "compile_cache_hit")), None)


def summarize(results: Sequence[ColdStart]) -> ColdstartResult:
    """Measured starts -> aggregate (min/median/max/CV per milestone and phase) and verdicts; the run's
    own fields (status, id, target) are the caller's to add."""
    ok = [r for r in results if r.status == "ok"]
    startup = [r.startup_s for r in ok if r.startup_s is not None]
    phase_stats = aggregate([{p.name: p.duration_s for p in r.phases} for r in ok])
    found: list[ColdstartVerdict] = []
    if ok:
        found.append(repeatability(startup))
        medians = {name: s.median for name, s in phase_stats.items() if s.median is not None}
        found.append(dominant_phase(medians, statistics.median(startup) if startup else 0.0))
        found.append(io_bound(_coldest_load(ok)))
        failures = sum(
            1
            for r in ok
            if r.cache.compile_cache_warm() and any(e.name == "compile_cache_load_failed" for e in r.events)
        )
        cache = compile_cache([(r.cache.compile_cache_warm(), compile_seconds(r)) for r in ok], failures)
        if cache is not None:
            found.append(cache)
        first_ms = _median(r.first_request.e2e_ms for r in ok)
        steady_ms = _median(r.warm.steady_e2e_ms for r in ok)
        found.append(
            first_request(
                first_ms / 1e3 if first_ms is not None else None,
                steady_ms / 1e3 if steady_ms is not None else None,
            )
        )
    return ColdstartResult(
        runs=list(results),
        runs_ok=len(ok),
        engine=next((r.engine for r in results if r.engine), None),
        model_bytes=next((r.model_bytes for r in results if r.model_bytes), None),
        aggregate=ColdstartAggregate(
            startup_s=stats(startup),
            first_ttft_ms=stats(_present(r.first_request.ttft_ms for r in ok)),
            first_e2e_ms=stats(_present(r.first_request.e2e_ms for r in ok)),
            steady_e2e_ms=stats(_present(r.warm.steady_e2e_ms for r in ok)),
            milestones=aggregate([{e.name: e.t for e in r.events} for r in ok]),
            phases=phase_stats,
            reported=aggregate(
                [{e.name: e.reported_s for e in r.events if e.reported_s is not None} for r in ok]
            ),
            resources=ResourceStats(
                peak_rss_bytes=stats(_present(r.resources.peak_rss_bytes for r in ok)),
                peak_cpu_percent=stats(_present(r.resources.peak_cpu_percent for r in ok)),
                peak_vram_bytes=stats(_present(r.resources.peak_vram_bytes for r in ok)),
                disk_read_bytes=stats(_present(r.resources.disk_read_bytes for r in ok)),
            ),
        ),
        verdicts=found,
    )


def _coldest_load(ok: Sequence[ColdStart]) -> LoadIo:
    """The run closest to a true cold start: the least of the model in page cache, then the most read."""
    run = min(ok, key=lambda r: (r.cache.model_resident_share or 0.0, -(r.load_io.read_bytes or 0.0)))
    io, res = run.load_io, run.resources
    # the best rate of the counter the reads were taken from: the process tree's, else the host's
    peak_rate = res.peak_disk_read_rate if io.counter == "disk_read_bytes" else res.peak_host_disk_read_rate
    return LoadIo(
        model_bytes=run.model_bytes,
        load_s=io.load_s,
        read_bytes=int(io.read_bytes) if io.read_bytes is not None else None,
        peak_read_rate=peak_rate,
        device=run.device,
        resident_share=run.cache.model_resident_share,
    )
