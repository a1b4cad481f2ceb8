"""Every probe in a safe order, each one guarded, so one endpoint always gets a full set of answers.

Discovery comes first (what it learns bounds the rest), the overload burst last (it is the only probe
that loads the server). A probe that breaks or overruns its bound becomes an 'unknown' answer instead of
stopping the others, and an endpoint that does not answer at all is 'unknown' everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from servewise.probes.context import ProbeContext, clean
from servewise.probes.discovery import probe_health, probe_metrics, probe_models, probe_version
from servewise.probes.generation import probe_streaming
from servewise.probes.overload import probe_overload
from servewise.probes.refusals import probe_auth, probe_bad_json, probe_oversized, probe_unknown_model
from servewise.probes.results import PROBE_NAMES, ProbeConfig, ProbeResult, ProbeStatus
from servewise.protocols.endpoint import server_root

_Probe = Callable[[ProbeContext], Awaitable[ProbeResult | list[ProbeResult]]]
_ORDER: tuple[tuple[str, _Probe], ...] = (
    ("metrics", probe_metrics),
    ("models", probe_models),
    ("version", probe_version),
    ("health", probe_health),
    ("streaming", probe_streaming),
    ("bad_json", probe_bad_json),
    ("unknown_model", probe_unknown_model),
    ("oversized_prompt", probe_oversized),
    ("auth", probe_auth),
)


async def _guarded(name: str, probe: _Probe, ctx: ProbeContext, limit_s: float) -> list[ProbeResult]:
    """One probe that breaks or overruns becomes an 'unknown' result instead of stopping the rest."""
    try:
        async with asyncio.timeout(limit_s):
            found = await probe(ctx)
    except TimeoutError:
        return [ProbeResult(name, ProbeStatus.UNKNOWN, f"probe overran its {limit_s:g} s bound")]
    except (aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
        return [
            ProbeResult(name, ProbeStatus.UNKNOWN, f"probe broke: {type(exc).__name__}: {clean(str(exc))}")
        ]
    return found if isinstance(found, list) else [found]


def _unreachable(why: str) -> list[ProbeResult]:
    return [ProbeResult(name, ProbeStatus.UNKNOWN, why, {"unreachable": True}) for name in PROBE_NAMES]


async def run_probes(url: str, config: ProbeConfig | None = None) -> list[ProbeResult]:
    """Every probe, in a safe order: discovery first, the overload burst last."""
    config = config or ProbeConfig()
    try:
        base = server_root(url)
    except ValueError as exc:
        return _unreachable(f"target unreachable: connect: {exc}")
    limit = config.request_timeout_s * 3 + 5
    # a fresh connection per request: a pooled one the server has already closed would turn a clean
    # 4xx into a write error (llama-server closes idle keep-alive connections)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        ctx = ProbeContext(session=session, base=base, config=config, model=config.model)
        first = await ctx.get("/")
        if first.failure and first.failure != "timeout":
            return _unreachable(f"target unreachable: {first.describe()}")
        results: list[ProbeResult] = []
        for name, probe in _ORDER:
            results += await _guarded(name, probe, ctx, limit)
        if config.include_overload:
            results += await _guarded("overload", probe_overload, ctx, config.burst_timeout_s + limit)
        else:
            results.append(
                ProbeResult("overload", ProbeStatus.UNKNOWN, "not run: the overload burst was turned off")
            )
        return results


def run_probes_sync(url: str, config: ProbeConfig | None = None) -> list[ProbeResult]:
    """For callers outside an event loop (the CLI)."""
    return asyncio.run(run_probes(url, config))
