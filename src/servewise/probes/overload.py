"""Does the server shed load it cannot serve: a bounded burst above capacity, sent the way bench sends load.

A production server answers the excess with fast 429/503 a client can retry on; one that queues without
bound turns the burst into timeouts. The burst is capped (``MAX_BURST``) and each request is short, so
the probe is safe to point at a live endpoint; it runs last.
"""

from __future__ import annotations

from servewise.probes.context import KEY_HINT, ProbeContext, needs_key
from servewise.probes.exchange import prompt_request
from servewise.probes.results import MAX_BURST, ProbeResult, ProbeStatus


async def probe_overload(ctx: ProbeContext) -> ProbeResult:
    size = max(1, min(ctx.config.burst_size, MAX_BURST))
    adapter = ctx.adapter()
    request = adapter.request_bytes(
        prompt_request("Tell me a long story about the sea.", ctx.config.burst_max_tokens)
    )
    replies = await ctx.post(adapter, request, count=size, timeout_s=ctx.config.burst_timeout_s)
    served = [r for r in replies if r.ok]
    shed = [r for r in replies if r.status in (429, 503)]
    timeouts = [r for r in replies if r.failure == "timeout"]
    refused = [r for r in replies if r.failure and r.failure != "timeout"]
    errors = [r for r in replies if r.status is not None and r.status >= 500 and r.status != 503]
    rejected = [r for r in replies if r.status is not None and 400 <= r.status < 500 and r.status != 429]
    facts = {
        "burst": size,
        "served": len(served),
        "shed": len(shed),
        "timeouts": len(timeouts),
        "refused": len(refused),
        "errors": len(errors),
        "rejected": len(rejected),
    }
    tally = f"burst of {size}: {len(served)} served, {len(shed)} shed with 429/503"
    if rejected and needs_key(rejected[0]):
        return ProbeResult("overload", ProbeStatus.UNKNOWN, KEY_HINT, facts)
    if timeouts:
        return ProbeResult(
            "overload",
            ProbeStatus.FAIL,
            f"{tally}, {len(timeouts)} got no answer in {ctx.config.burst_timeout_s:g} s "
            "(queued without backpressure)",
            facts,
        )
    if errors or refused or rejected:
        first = (errors or refused or rejected)[0]
        return ProbeResult(
            "overload",
            ProbeStatus.FAIL,
            f"{tally}, {len(errors)} server errors, {len(refused)} connections refused, "
            f"{len(rejected)} other 4xx (first: {first.describe()})",
            facts,
        )
    if shed:
        slowest_shed = max(r.elapsed_s for r in shed)
        fast = slowest_shed <= ctx.config.fast_shed_s
        return ProbeResult(
            "overload",
            ProbeStatus.PASS if fast else ProbeStatus.FAIL,
            f"{tally}; slowest refusal {slowest_shed:.2f} s"
            + ("" if fast else " (too slow to help a client retry)"),
            facts,
        )
    slowest = max(r.elapsed_s for r in served)
    return ProbeResult(
        "overload",
        ProbeStatus.UNKNOWN,
        f"{tally}; all served, slowest in {slowest:.1f} s: the burst did not exceed capacity, "
        "so overload behaviour was not seen (raise the burst size)",
        facts,
    )
