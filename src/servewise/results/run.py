"""What one run measured: latency distributions, throughput, SLO outcome and the client's self-check."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from servewise.results.base import Result
from servewise.results.diagnosis import DiagnosisResult

RunStatus = Literal["ok", "slo_failed", "failed", "interrupted", "running", "partial"]


class Distribution(Result):
    """count, percentiles, mean, min, max, std (ms); every statistic None when there is no sample."""

    count: int = 0
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p99_9: float | None = Field(default=None, alias="p99.9")
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    std: float | None = None

    def stat(self, name: str) -> float | None:
        """A statistic by its glossary name (``p95``, ``p99.9``, ``mean``); None when not measured."""
        value = getattr(self, name.replace(".", "_"), None)
        return value if isinstance(value, float | int) and not isinstance(value, bool) else None


class TtftTrend(Result):
    """Median TTFT of the first and last third of requests: a growing queue shows here."""

    first: float
    last: float


class CacheOutcome(Result):
    """What the prefix cache did: the share of prompt tokens the workload could have reused, the share
    the server said it served from cache (``cached_tokens``), and the engine's own hit rate; each None
    when unknown."""

    theoretical_hit_rate: float | None = None
    cached_tokens_ratio: float | None = None
    engine_hit_rate: float | None = None

    @property
    def any_reuse(self) -> bool:
        """Anything to say: the workload could reuse a prefix, or the server or engine says it did."""
        return any(rate for rate in (self.theoretical_hit_rate, self.cached_tokens_ratio, self.engine_hit_rate))


class TurnRow(Result):
    """TTFT at one turn index of a conversation, with how long the prompt had grown by then."""

    turn: int
    requests: int
    ttft_ms_p50: float | None
    ttft_ms_p95: float | None
    mean_input_tokens: float | None


class ReasoningOutcome(Result):
    """A reasoning model's requests: time to the first answer token (TTFT counts its reasoning too) and
    the reasoning tokens before the answer."""

    requests: int
    ttfa_ms: Distribution
    mean_reasoning_tokens: float | None


class UnitOutcome(Result):
    """What a reranker or an image server delivers in its own unit: documents or images per second (requests/s
    times what each carried) and the time one took (a request's E2E p50 over what it carried)."""

    unit: Literal["documents", "images"]
    per_request: int
    per_s: float
    ms_each_p50: float | None


class Metrics(Result):
    """The glossary's metrics over the steady-state window."""

    ttft_ms: Distribution = Distribution()
    tpot_ms: Distribution = Distribution()
    itl_ms: Distribution = Distribution()
    e2e_ms: Distribution = Distribution()
    requests_ok: int = 0
    requests_failed: int = 0
    requests_total: int = 0
    error_rate: float | None = None
    errors_by_class: dict[str, int] = {}
    error_examples: dict[str, str] = {}
    requests_per_s: float = 0.0
    output_tokens_per_s: float = 0.0
    input_tokens_per_s: float = 0.0
    goodput_rps: float = 0.0
    offered_rps: float | None = None
    output_tokens_source: str = "usage"
    mean_output_tokens: float | None = None
    mean_input_tokens: float | None = None
    stopped_early: int = 0
    concurrency_mean: float = 0.0
    window_s: float = 0.0
    ttft_trend_ms: TtftTrend | None = None
    # absent from runs stored before release 0.2, so their JSON reads as it was written
    cache: CacheOutcome | None = Field(default=None, exclude_if=lambda v: v is None)
    by_turn: list[TurnRow] | None = Field(default=None, exclude_if=lambda v: v is None)
    reasoning: ReasoningOutcome | None = Field(default=None, exclude_if=lambda v: v is None)
    rate: float | None = Field(default=None, exclude_if=lambda v: v is None)
    # streamed answers whose every chunk came in one read: their TTFT is their end; no TPOT, no gaps from them
    arrived_whole: int = Field(default=0, exclude_if=lambda v: v == 0)

    def distribution(self, metric: str) -> Distribution:
        """``ttft`` | ``tpot`` | ``itl`` | ``e2e`` -> its distribution."""
        value = getattr(self, f"{metric}_ms")
        assert isinstance(value, Distribution)
        return value


class SloTargetOutcome(Result):
    key: str
    limit: float
    value: float | None
    met: bool


class SloOutcome(Result):
    """Each target against the measured value; ``met`` is None when no SLO was given."""

    met: bool | None = None
    targets: list[SloTargetOutcome] = []

    def missed(self) -> list[str]:
        return [t.key for t in self.targets if not t.met]


class LagSummary(Result):
    p50: float | None = None
    p99: float | None = None
    max: float | None = None


class ClientCheck(Result):
    """Did the load generator keep its schedule? A run whose client fell behind is not a server result."""

    schedule_lag_ms: LagSummary = LagSummary()
    cpu_percent: float = 0.0
    cpu_percent_per_worker: list[float] = []
    loop_lag_max_ms: float = 0.0
    limited: bool = False
    reason: str | None = None


class WorkerCounts(Result):
    count: int
    connections_opened: int
    cap_waits: int


class NodeCheck(Result):
    """One Ray node's share of the load: its clock against the driver's and its own client check, so a
    run is client-limited when any node is, and says which."""

    node: str  # the Ray node id, shortened
    address: str
    workers: list[int]
    clock_offset_ms: float  # the node's wall clock minus the driver's, estimated over the fastest round trip
    clock_rtt_ms: float  # that round trip: the estimate is good to half of it
    client: ClientCheck
    lost: bool = False


class LostWorker(Result):
    """A worker whose node or actor went away mid-run."""

    worker: int
    node: str
    reason: str
    at_s: float  # after the run's start, when the driver noticed
    lost_requests: int  # due or in flight by then, without a record: error class "lost"
    unsent: int | None  # of its schedule after that, never sent (open-loop loads; None: closed loop)


class PartialRun(Result):
    """What a run that lost workers is missing; everything else it measured is kept."""

    lost_requests: int
    workers: list[LostWorker]


class RunResult(Result):
    """One measured run (a bench, or one step of a sweep), exactly as stored."""

    run_id: str
    status: RunStatus
    target: dict[str, Any] = {}
    load: str = ""
    steady_s: float = 0.0
    metrics: Metrics = Metrics()
    slo: SloOutcome = SloOutcome()
    client: ClientCheck = ClientCheck()
    workers: WorkerCounts | None = Field(default=None, exclude_if=lambda v: v is None)
    diagnosis: DiagnosisResult | None = Field(default=None, exclude_if=lambda v: v is None)
    early_stop: str | None = Field(default=None, exclude_if=lambda v: v is None)
    nodes: list[NodeCheck] | None = Field(default=None, exclude_if=lambda v: v is None)  # runs on Ray
    partial: PartialRun | None = Field(default=None, exclude_if=lambda v: v is None)
    outcome: UnitOutcome | None = Field(default=None, exclude_if=lambda v: v is None)  # rerank, images
    # the first and last send on the run's clock (its records' and samples'): the ticks its diagnosis read.
    # Absent in runs stored before it was kept, whose diagnosis read every tick and still does.
    load_window: tuple[float, float] | None = Field(default=None, exclude_if=lambda v: v is None)


class SweepStep(Result):
    rate: float
    run_id: str
    slo_met: bool
    why: str
    client_limited: bool
    metrics: Metrics


class SweepResult(RunResult):
    """A max-rate search: the knee step's metrics at the top, every step's below."""

    sweep: list[SweepStep] = []
    max_rate_meeting_slo: float | None = None
    sweep_note: str | None = None
