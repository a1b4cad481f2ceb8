"""A stored capacity plan: one row per GPU tier and the recommendation."""

from __future__ import annotations

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
