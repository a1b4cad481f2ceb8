"""A stored cold-start run: every start's phases and requests, their spread, and the verdicts.

``coldstart.runner`` builds one ``ColdStart`` per start, ``coldstart.verdicts`` the aggregate and the
verdicts; ``flows.coldstart`` stores them as one ``ColdstartResult``. Field order is the stored JSON's key
order, so a stored run reads back and exports byte for byte as it was written.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SerializerFunctionWrapHandler, model_serializer

from servewise.results.base import Result

StartStatus = Literal["ok", "crashed", "timeout", "interrupted", "failed"]
ColdstartStatus = Literal["ok", "failed", "interrupted"]


class _AsGiven(Result):
    """Dumps only the fields it was given: a part whose builder leaves keys out (no sampler, no loading
    window) is stored with those keys absent, not as nulls, and reads back and dumps the same."""

    @model_serializer(mode="wrap")
    def _given_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {key: value for key, value in dumped.items() if key in self.model_fields_set}


class StartEvent(Result):
    """A point on one start's timeline, ``t`` in seconds since spawn; ``line`` is the log line of a marker."""

    name: str
    t: float
    source: str  # "probe" (we observed it), "log" (a marker line), "process"
    reported_s: float | None = None  # the server's own figure for the phase this event ends
    line: str | None = None


class StartPhase(Result):
    """The gap between two consecutive events, named for the event that ends it."""

    name: str
    after: str
    start_s: float
    end_s: float
    duration_s: float
    reported_s: float | None = None
    unlogged_s: float | None = None  # time in the phase the server's own figure does not account for


class FirstRequest(Result):
    """The first streamed request that succeeded, and how many tries it took."""

    attempts: int = 0
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    output_tokens: int | None = None


class WarmRequests(Result):
    """The requests sent after the first: their medians are the steady state the first is compared with."""

    requests: int = 0
    failed: int = 0
    steady_ttft_ms: float | None = None
    steady_e2e_ms: float | None = None
    first_vs_steady_e2e: float | None = None


class StartResources(_AsGiven):
    """Peaks of the server's process tree during the start; empty when it could not be sampled."""

    peak_rss_bytes: float | None = None
    peak_cpu_percent: float | None = None
    peak_vram_bytes: float | None = None
    disk_read_bytes: float | None = None
    host_disk_read_bytes: float | None = None
    peak_disk_read_rate: float | None = None
    peak_host_disk_read_rate: float | None = None


class LoadIoRecord(_AsGiven):
    """What the start read from disk while loading weights; only ``window`` (None) when no loading
    window was found."""

    window: tuple[str, str] | None = None  # (start event, end event) of weight loading
    load_s: float | None = None
    read_bytes: float | None = None
    counter: str | None = None  # the sample the reads come from: process tree, else host


class CacheFolder(Result):
    """A cache folder as the start found it."""

    path: str = ""
    existed: bool = False
    bytes: int = 0


class CacheState(Result):
    """What was warm as the server started: compile caches, the page cache's share of the model."""

    compile_cache: CacheFolder = CacheFolder()
    inductor_cache: CacheFolder | None = None
    cleared: list[str] = []
    page_cache_dropped: bool = False
    model_resident_bytes: int | None = None
    model_resident_share: float | None = None

    def compile_cache_warm(self) -> bool:
        """A compile cache (the engine's or torch inductor's) had something in it."""
        return self.compile_cache.existed or (self.inductor_cache is not None and self.inductor_cache.existed)


class ColdStart(Result):
    """One start, measured: how it ended, its timeline and phases, its requests, resources and caches."""

    index: int = 0
    status: StartStatus = "failed"
    error: str | None = None
    pid: int = 0
    exit_code: int | None = None
    log_path: str | None = None
    log_tail: list[str] = []  # the server's last log lines, kept when the start failed
    engine: str | None = None
    model: str | None = None
    startup_s: float | None = None  # time to the first successful response
    events: list[StartEvent] = []
    phases: list[StartPhase] = []
    first_request: FirstRequest = FirstRequest()
    warm: WarmRequests = WarmRequests()
    resources: StartResources = StartResources()
    load_io: LoadIoRecord = LoadIoRecord()
    cache: CacheState = CacheState()
    model_path: str | None = None
    model_bytes: int | None = None
    device: str | None = None


class StartStats(Result):
    """count/min/median/max/mean/std and CV (sample std over mean) of one number over the starts."""

    count: int = 0
    min: float | None = None
    median: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    cv: float | None = None


class ResourceStats(Result):
    """The spread of each start's resource peaks."""

    peak_rss_bytes: StartStats = StartStats()
    peak_cpu_percent: StartStats = StartStats()
    peak_vram_bytes: StartStats = StartStats()
    disk_read_bytes: StartStats = StartStats()


class ColdstartAggregate(Result):
    """The spread over the successful starts: per milestone (event time), phase, server figure, request."""

    startup_s: StartStats = StartStats()
    first_ttft_ms: StartStats = StartStats()
    first_e2e_ms: StartStats = StartStats()
    steady_e2e_ms: StartStats = StartStats()
    milestones: dict[str, StartStats] = {}
    phases: dict[str, StartStats] = {}
    reported: dict[str, StartStats] = {}
    resources: ResourceStats = ResourceStats()


class ColdstartVerdict(Result):
    """One question about the starts answered: ``key`` names it, ``verdict`` is the answer."""

    key: str  # repeatability, dominant_phase, io_bound, compile_cache, warm_up
    verdict: str
    evidence: str
    advice: str | None = None


class ColdstartResult(Result):
    runs: list[ColdStart]
    runs_ok: int
    engine: str | None = None
    model_bytes: int | None = None
    aggregate: ColdstartAggregate = ColdstartAggregate()
    verdicts: list[ColdstartVerdict] = []
    status: ColdstartStatus = "failed"
    run_id: str = ""
    kind: str = "coldstart"
    target: dict[str, Any] = {}
    runs_requested: int = 0
    log_dir: str = ""

    def startup_times(self) -> list[float]:
        """Seconds to first response of each successful start."""
        return [r.startup_s for r in self.runs if r.status == "ok" and r.startup_s is not None]
