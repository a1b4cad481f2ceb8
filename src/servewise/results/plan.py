"""A stored capacity plan: one row per GPU tier and the recommendation."""

from __future__ import annotations

from typing import Literal

from servewise.results.base import Result


class TierRecord(Result):
    gpu: str
    num_gpus: int
    fits: bool
    max_concurrency: int
    output_tokens_per_s: float | None
    ttft_ms_p50: float | None
    tpot_ms_p50: float | None
    rate_per_replica: float | None
    replicas: int | None
    price_per_hour: float | None
    cost_per_million_output_tokens: float | None


class PlanRecord(Result):
    tiers: list[TierRecord]
    recommendation: str

    def cheapest_fit(self) -> TierRecord | None:
        """The fitting tier with the lowest cost per 1M output tokens."""
        priced = [t for t in self.tiers if t.fits and t.cost_per_million_output_tokens is not None]
        return min(priced, key=lambda t: t.cost_per_million_output_tokens or 0.0) if priced else None


class UnitTier(Result):
    """One GPU serving images or documents: seconds each, the rate one replica sustains, replicas for the
    demand, and the cost of ``UnitPlan.per`` of them. ``measured``: from a stored run, not the prior."""

    gpu: str
    seconds_each: float
    per_s: float
    replicas: int | None
    price_per_hour: float | None
    cost: float | None
    measured: bool = False


class UnitPlan(Result):
    """A plan in a unit that is not tokens: images (cost per 1,000) or reranked documents (per 1M)."""

    unit: Literal["images", "documents"]
    per: int
    title: str
    tiers: list[UnitTier]
    notes: list[str] = []

    @property
    def cost_label(self) -> str:
        return f"$ per {self.per:,} {self.unit}" if self.per < 1_000_000 else f"$ per {self.per // 1_000_000}M {self.unit}"

    def cheapest(self) -> UnitTier | None:
        priced = [t for t in self.tiers if t.cost is not None]
        return min(priced, key=lambda t: t.cost or 0.0) if priced else None
