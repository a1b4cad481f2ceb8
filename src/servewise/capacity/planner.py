"""Tier planner: for each GPU tier, does the model fit, how much can one replica serve, how many
replicas a demand needs, what that costs per serving outcome — and a recommendation in plain words."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from servewise.capacity.engines import EngineSettings, engine_profile
from servewise.capacity.errors import CapacityError
from servewise.capacity.hardware import Gpu, GpuCatalog
from servewise.capacity.memory import (
    Deployment,
    MemoryPlan,
    memory_plan,
    smallest_fitting_tp,
)
from servewise.capacity.models import ModelArch
from servewise.capacity.perf import Efficiency, SteadyState, StepModel, steady_state
from servewise.capacity.simulator import SimResult, poisson_arrivals, simulate, simulate_users
from servewise.capacity.speculative import Speculation

SloMetric = Literal["ttft", "tpot", "itl", "e2e"]
DEFAULT_TIERS = ("rtx4090", "l40s", "a100-sxm-80gb", "h100-sxm", "h200-sxm")


@dataclass(frozen=True, slots=True)
class SloLimit:
    """``stat`` (p50/p90/p95/p99/mean/max) of ``metric`` at or under ``limit_ms``. ITL is judged as TPOT."""

    metric: SloMetric
    stat: str
    limit_ms: float

    @property
    def key(self) -> str:
        return f"{self.metric}_{self.stat}"


@dataclass(frozen=True, slots=True)
class TierSpec:
    gpu: str
    num_gpus: int | None = None  # None: the fewest GPUs (tensor parallel) the model fits on


@dataclass(frozen=True, slots=True)
class PlanRequest:
    model: ModelArch
    weight_precision: str
    kv_precision: str
    input_tokens: int
    output_tokens: int
    tiers: tuple[TierSpec, ...]
    concurrency: int | None = None
    rate: float | None = None  # offered to one replica
    demand: float | None = None  # total, spread over replicas
    slo: tuple[SloLimit, ...] = ()
    efficiency: Efficiency = field(default_factory=Efficiency)
    engine: EngineSettings = field(default_factory=lambda: EngineSettings(engine_profile()))
    current_gpu: str | None = None
    seed: int = 0
    #: Share of every prompt's tokens served from the prefix cache: prefill compute (and TTFT) is discounted
    #: by it in the step model; KV memory per sequence is not (cached blocks still occupy the cache).
    prefix_hit: float = 0.0
    #: Speculative decoding: a decode step costs its verify pass and draft passes and emits ``acceptance``
    #: tokens per sequence; simulated as one step per *virtual* output token (``virtual_output_tokens``).
    speculation: Speculation | None = None

    @property
    def virtual_output_tokens(self) -> float:
        """Engine steps a request's output takes: its length, or with speculation its verify steps."""
        return self.speculation.virtual_outputs(self.output_tokens) if self.speculation else float(self.output_tokens)

    def __post_init__(self) -> None:
        given = [x for x in (self.concurrency, self.rate, self.demand) if x is not None]
        if len(given) > 1:
            raise CapacityError("give at most one of --concurrency, --rate and --demand")
        if self.input_tokens < 1 or self.output_tokens < 1:
            raise CapacityError("input and output tokens must be at least 1")
        if any(x <= 0 for x in given):
            raise CapacityError("concurrency, rate and demand must be positive")
        if not 0.0 <= self.prefix_hit < 1.0:  # NaN fails too
            raise CapacityError(f"the prefix hit rate must be 0 <= x < 1, got {self.prefix_hit:g}")


@dataclass(slots=True)
class TierResult:
    gpu: str
    num_gpus: int
    fits: bool
    reason: str
    max_concurrency: int = 0
    output_tokens_per_s: float | None = None
    ttft_ms_p50: float | None = None
    tpot_ms_p50: float | None = None
    rate_per_replica: float | None = None
    replicas: int | None = None
    price_per_hour: float | None = None
    cost_per_million_output_tokens: float | None = None
    cost_per_thousand_requests: float | None = None
    headroom: float | None = None
    bound: str = ""
    slo_met: bool | None = None
    #: the load is within KNEE of what the tier saturates at: its TTFT is queueing-sensitive, a lower bound
    near_knee: bool = False

    def to_json(self) -> dict[str, Any]:
        """The issue's shape: exactly these keys per tier (``ttft_is_lower_bound`` since release 0.3)."""
        return {
            "gpu": self.gpu,
            "num_gpus": self.num_gpus,
            "fits": self.fits,
            "max_concurrency": self.max_concurrency,
            "output_tokens_per_s": _round(self.output_tokens_per_s, 1),
            "ttft_ms_p50": _round(self.ttft_ms_p50, 2),
            "ttft_is_lower_bound": self.near_knee,
            "tpot_ms_p50": _round(self.tpot_ms_p50, 3),
            "rate_per_replica": _round(self.rate_per_replica, 4),
            "replicas": self.replicas,
            "price_per_hour": _round(self.price_per_hour, 4),
            "cost_per_million_output_tokens": _round(self.cost_per_million_output_tokens, 4),
        }


#: A load at or above this share of a tier's saturation (its batch limit, or its maximum request rate) is near
#: the knee: TTFT there is mostly queueing, which small changes in load or lengths swing by multiples.
KNEE = 0.8


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


@dataclass(slots=True)
class PlanResult:
    tiers: list[TierResult]
    recommendation: str
    efficiency: Efficiency
    notes: list[str] = field(default_factory=list)
    prefix_hit_rate: float = 0.0
    #: where the rate came from: "flag", "engine", "cached_tokens", "theoretical"; None: none given (cold)
    prefix_hit_source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"tiers": [t.to_json() for t in self.tiers], "recommendation": self.recommendation,
                "prefix_hit_rate": round(self.prefix_hit_rate, 4), "prefix_hit_source": self.prefix_hit_source}


def parse_tiers(text: str) -> tuple[TierSpec, ...]:
    """``rtx4090,a100-sxm-80gb,h100-sxm:2`` -> tiers (``:N`` = N GPUs, tensor parallel)."""
    tiers = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition(":")
        if count and not count.strip().isdigit():
            raise CapacityError(f"--gpus: expected GPU or GPU:N like h100-sxm:2, got {item!r}")
        tiers.append(TierSpec(name.strip(), int(count) if count else None))
    if not tiers:
        raise CapacityError("--gpus: name at least one GPU, e.g. rtx4090,h100-sxm:2")
    return tuple(tiers)


def parse_prefix_hit(text: str) -> float:
    """``0.6`` or ``60%`` -> 0.6; anything outside 0 <= x < 1 is refused."""
    value = text.strip()
    percent = value.endswith("%")
    try:
        number = float(value[:-1] if percent else value) / (100.0 if percent else 1.0)
    except ValueError:
        number = math.nan
    if not 0.0 <= number < 1.0:  # NaN fails too
        raise CapacityError(f"--prefix-hit: expected 0 <= x < 1 or a percentage like 60%, got {text!r}")
    return number


def _workload_sizes(req: PlanRequest, n: int) -> tuple[np.ndarray, np.ndarray]:
    """What the simulator runs: the prompts and one step per virtual output token (the real length without
    speculation). The KV cache is then charged at the virtual length too: with speculation, slightly light."""
    return np.full(n, req.input_tokens), np.full(n, max(1, round(req.virtual_output_tokens)))


def _real_outputs(req: PlanRequest, result: SimResult) -> SimResult:
    return result.counting(np.full(result.output_tokens.size, req.output_tokens))


def _steady(step: StepModel, kv_tokens: int, req: PlanRequest) -> SteadyState:
    """The engine kept full, its throughput in real output tokens."""
    virtual = req.virtual_output_tokens
    state = steady_state(step, kv_tokens, req.engine.on(step.deployment.gpu), req.input_tokens, virtual)
    return replace(state, output_tokens_per_s=state.output_tokens_per_s * req.output_tokens / virtual)


def _requests_for(batch: float) -> int:
    return int(min(3000, max(300, 6 * batch)))


def simulate_rate(step: StepModel, kv_tokens: int, req: PlanRequest, rate: float) -> SimResult:
    engine = req.engine.on(step.deployment.gpu)
    n = _requests_for(min(rate * 30, engine.max_num_seqs))
    ins, outs = _workload_sizes(req, n)
    return _real_outputs(req, simulate(step, kv_tokens, engine, ins, outs, arrivals=poisson_arrivals(n, rate, req.seed)))


def simulate_concurrency(step: StepModel, kv_tokens: int, req: PlanRequest, users: int) -> SimResult:
    n = _requests_for(users)
    ins, outs = _workload_sizes(req, n)
    return _real_outputs(req, simulate_users(step, kv_tokens, req.engine.on(step.deployment.gpu), ins, outs, users,
                                             req.seed))


def slo_values(summary: dict[str, Any], slo: tuple[SloLimit, ...]) -> list[tuple[SloLimit, float]]:
    values = []
    for limit in slo:
        metric = "tpot" if limit.metric == "itl" else limit.metric
        values.append((limit, float(summary[f"{metric}_ms"].get(limit.stat, math.inf))))
    return values


def meets_slo(summary: dict[str, Any], slo: tuple[SloLimit, ...]) -> bool:
    return all(value <= limit.limit_ms for limit, value in slo_values(summary, slo))


def slo_rate(step: StepModel, kv_tokens: int, req: PlanRequest, max_rate: float) -> tuple[float, str]:
    """The highest Poisson rate one replica serves within the SLO (bisection to 4%), and why it stops
    there; without an SLO, the steady-state maximum. 0 when even a light load misses the SLO."""
    if not req.slo:
        return max_rate, "maximum throughput (no SLO given)"
    summary = simulate_rate(step, kv_tokens, req, max_rate * 0.98).summary(0.2)
    if meets_slo(summary, req.slo):
        return max_rate * 0.98, "meets the SLO up to saturation"
    light = simulate_rate(step, kv_tokens, req, max_rate * 0.02).summary(0.2)
    if not meets_slo(light, req.slo):
        missed = ", ".join(f"{limit.key} {value:.0f} ms > {limit.limit_ms:g} ms"
                           for limit, value in slo_values(light, req.slo) if value > limit.limit_ms)
        return 0.0, f"misses the SLO even at light load ({missed})"
    low, high = max_rate * 0.02, max_rate * 0.98
    while high - low > 0.04 * high:
        mid = (low + high) / 2
        if meets_slo(simulate_rate(step, kv_tokens, req, mid).summary(0.2), req.slo):
            low = mid
        else:
            high = mid
    return low, "SLO-limited"


def _bound(step: StepModel, state: SteadyState, mem: MemoryPlan, req: PlanRequest) -> str:
    """Plain words for what limits the tier at full load."""
    model = step.deployment.model
    mean_context = model.kv_tokens_for_context(req.input_tokens + req.virtual_output_tokens / 2)
    finishing = state.batch / req.virtual_output_tokens
    side = step.bound(finishing * req.input_tokens, state.batch, state.batch * mean_context,
                      finishing * req.input_tokens ** 2 / 2)
    kind = f"{side}-bound at {state.output_tokens_per_s:,.0f} output tokens/s"
    context = req.input_tokens + req.output_tokens
    if state.limit == "kv-cache":
        return (f"VRAM-limited: {mem.weight_bytes_per_gpu * step.deployment.num_gpus / 1e9:.1f} GB of weights "
                f"leave room for {mem.max_concurrency} concurrent {context:,}-token requests "
                f"({mem.kv_capacity_tokens:,} KV tokens); {kind}")
    return f"batch-limited ({state.limit}, {state.batch:.0f} sequences); {kind}"


def plan_tier(req: PlanRequest, gpu: Gpu, num_gpus: int | None) -> TierResult:
    context = req.input_tokens + req.output_tokens
    engine = req.engine.on(gpu)
    n = num_gpus or smallest_fitting_tp(req.model, gpu, req.weight_precision, req.kv_precision, context, engine)
    if n is None:
        dep = Deployment(req.model, gpu, 8 if req.model.kv_heads % 8 == 0 else 1, req.weight_precision,
                         req.kv_precision)
        mem = memory_plan(dep, context, engine)
        return TierResult(gpu.name, dep.num_gpus, False, f"does not fit even on {dep.num_gpus} GPUs: {mem.reason}")
    dep = Deployment(req.model, gpu, n, req.weight_precision, req.kv_precision)
    mem = memory_plan(dep, context, engine)
    price = gpu.price_per_hour * n if gpu.price_per_hour is not None else None
    if not mem.fits:
        return TierResult(gpu.name, n, False, mem.reason, price_per_hour=price)
    step = StepModel(dep, req.efficiency, req.prefix_hit, req.speculation)
    full = _steady(step, mem.kv_capacity_tokens, req)
    result = TierResult(gpu.name, n, True, mem.reason, max_concurrency=mem.max_concurrency,
                        bound=_bound(step, full, mem, req))
    rate, why = slo_rate(step, mem.kv_capacity_tokens, req, full.requests_per_s)
    result.rate_per_replica = rate
    if rate <= 0:
        result.bound = f"{why}; {result.bound}"
    offered = req.rate if req.rate is not None else req.demand
    if req.concurrency is not None:
        result.near_knee = req.concurrency >= KNEE * full.batch
        summary = simulate_concurrency(step, mem.kv_capacity_tokens, req, req.concurrency).summary(0.2)
        result.output_tokens_per_s = summary["output_tokens_per_s"]
        result.replicas = math.ceil(req.concurrency / max(mem.max_concurrency, 1)) if rate > 0 else None
        result.headroom = (mem.max_concurrency * result.replicas / req.concurrency - 1
                           if result.replicas else None)
    elif offered is not None:
        result.replicas = math.ceil(offered / rate) if rate > 0 else None
        per_replica = offered if req.rate is not None else offered / max(result.replicas or 1, 1)
        result.near_knee = per_replica >= KNEE * full.requests_per_s
        summary = simulate_rate(step, mem.kv_capacity_tokens, req, per_replica).summary(0.2)
        result.output_tokens_per_s = summary["output_tokens_per_s"]
        result.headroom = rate * result.replicas / offered - 1 if result.replicas else None
    else:
        summary = None
        result.output_tokens_per_s = full.output_tokens_per_s
        result.replicas = 1 if rate > 0 else None
    if summary is not None:
        result.ttft_ms_p50 = summary["ttft_ms"]["p50"]
        result.tpot_ms_p50 = summary["tpot_ms"].get("p50")
        result.slo_met = meets_slo(summary, req.slo) if req.slo else None
    if price is not None:
        result.price_per_hour = price * result.replicas if result.replicas else None
        if rate > 0:
            result.cost_per_million_output_tokens = price / (rate * req.output_tokens * 3600) * 1e6
            result.cost_per_thousand_requests = price / (rate * 3600) * 1e3
    return result


def _recommend(req: PlanRequest, tiers: list[TierResult]) -> str:
    fitting = [t for t in tiers if t.fits and t.rate_per_replica and t.cost_per_million_output_tokens]
    lines = []
    if not fitting:
        reasons = "; ".join(f"{t.gpu}: {t.reason}" for t in tiers)
        return f"No tier serves this workload: {reasons}."
    sized = req.demand is not None or req.rate is not None or req.concurrency is not None
    fitting = [t for t in fitting if t.price_per_hour is not None] if sized else fitting
    if not fitting:
        return "No tier can serve this load within the SLO at any replica count."
    # With a load to serve, what the team pays is the hourly bill for enough replicas; without one,
    # the cost per output token at full (SLO-compliant) load.
    best = min(fitting, key=lambda t: (t.price_per_hour, t.cost_per_million_output_tokens) if sized
               else (t.cost_per_million_output_tokens, t.replicas or 1))
    what = (f"{req.demand:g} req/s" if req.demand else f"{req.rate:g} req/s" if req.rate
            else f"{req.concurrency} concurrent requests" if req.concurrency else "maximum throughput")
    slo = f" within {', '.join(f'{s.key}<={s.limit_ms:g}ms' for s in req.slo)}" if req.slo else ""
    gpus = f"{best.num_gpus}x {best.gpu}"
    lines.append(
        f"Choose {gpus}: the lowest {'hourly cost' if sized else 'cost per output token'} for {what}{slo} — "
        f"${best.cost_per_million_output_tokens:.3f} per 1M output tokens, {best.rate_per_replica:.2f} req/s "
        f"per replica, {best.replicas} replica(s) at ${best.price_per_hour:.2f}/hour. Why: {best.bound}."
    )
    current = next((t for t in tiers if req.current_gpu and t.gpu == req.current_gpu), None)
    if current is not None and current is not best:
        if not current.fits:
            lines.append(f"The current {current.gpu} cannot serve it: {current.reason}.")
        elif not current.replicas or current.price_per_hour is None:
            lines.append(f"The current {current.gpu}: {current.bound}.")
        else:
            lines.append(f"The current {current.gpu}: {current.bound}; it needs {current.replicas} replica(s) "
                         f"at ${current.price_per_hour:.2f}/hour"
                         + (f" (headroom {current.headroom:+.0%})" if current.headroom is not None else "") + ".")
    misses = [f"{t.gpu} ({t.reason})" for t in tiers if not t.fits]
    if misses:
        lines.append(f"Does not fit: {'; '.join(misses)}.")
    slow = [f"{t.gpu} ({t.bound.split(';')[0]})" for t in tiers if t.fits and not t.rate_per_replica]
    if slow:
        lines.append(f"Fits but cannot meet the SLO: {'; '.join(slow)}.")
    return " ".join(lines)


def plan(req: PlanRequest, catalog: GpuCatalog) -> PlanResult:
    """Every tier; a tier without a GPU count tries each tensor-parallel size from the smallest that fits
    up to 8 and keeps the cheapest per output token."""
    tiers = []
    context = req.input_tokens + req.output_tokens
    for spec in req.tiers:
        gpu = catalog.get(spec.gpu)
        if spec.num_gpus is not None:
            tiers.append(plan_tier(req, gpu, spec.num_gpus))
            continue
        first = smallest_fitting_tp(req.model, gpu, req.weight_precision, req.kv_precision, context,
                                    req.engine.on(gpu))
        options = [plan_tier(req, gpu, first)]
        n = (first or 8) * 2
        while first is not None and n <= 8:
            if req.model.kv_heads % n == 0 or n % req.model.kv_heads == 0:
                options.append(plan_tier(req, gpu, n))
            n *= 2
        priced = [(t.cost_per_million_output_tokens, t) for t in options
                  if t.cost_per_million_output_tokens is not None]
        tiers.append(min(priced, key=lambda p: p[0])[1] if priced else options[0])
    return PlanResult(tiers, _recommend(req, tiers), req.efficiency, prefix_hit_rate=req.prefix_hit)
