"""What the server says about itself: metrics, models, version, health and readiness.

Asked first and read-only; what they learn (engine, model, context length) bounds the probes after them,
so each writes its finding into the shared context as well as into its result.
"""

from __future__ import annotations

import asyncio

from servewise.probes.context import KEY_HINT, ProbeContext, clean, needs_key
from servewise.probes.results import ProbeResult, ProbeStatus
from servewise.protocols.endpoint import listed_models
from servewise.telemetry.exposition import engine_from_metrics, parse_exposition

_HEALTH_PATHS = ("/health", "/healthz", "/v2/health/live", "/health/live", "/livez", "/ping")
_READY_PATHS = ("/ready", "/readyz", "/health/ready", "/v2/health/ready", "/v1/health/ready")
_VERSION_PATHS = ("/version", "/info", "/props", "/v2", "/get_server_info")
# Engines whose single health endpoint already answers "not ready" until the model is loaded.
_LOAD_AWARE_HEALTH = {
    "llamacpp": "llama.cpp answers /health with 503 'Loading model' until the model is loaded",
    "vllm": "vLLM starts its HTTP server only after the engine has loaded the model",
}


async def probe_metrics(ctx: ProbeContext) -> ProbeResult:
    reply = await ctx.get("/metrics")
    if not reply.ok:
        hint = " (llama-server needs --metrics)" if reply.status == 404 else ""
        return ProbeResult("metrics", ProbeStatus.FAIL, f"no /metrics: {reply.describe()}{hint}")
    try:
        series = parse_exposition(reply.body.decode("utf-8", "replace"))
    except ValueError as exc:
        why = f"/metrics is not Prometheus text: {clean(str(exc), 80)}"
        return ProbeResult("metrics", ProbeStatus.FAIL, why)
    if not series:
        return ProbeResult("metrics", ProbeStatus.FAIL, "/metrics answered but holds no Prometheus series")
    ctx.engine = engine_from_metrics(series)
    where = f"engine {ctx.engine}" if ctx.engine else "no engine signals (process metrics only)"
    return ProbeResult(
        "metrics", ProbeStatus.PASS, f"/metrics: {len(series)} series, {where}", {"engine": ctx.engine}
    )


async def probe_models(ctx: ProbeContext) -> ProbeResult:
    reply = await ctx.get("/v1/models")
    models = [m for m in listed_models(reply.body) if m.get("id")] if reply.ok else []
    if not models:
        detail = KEY_HINT if needs_key(reply) else reply.describe()
        return ProbeResult(
            "models", ProbeStatus.FAIL if reply.status else ProbeStatus.UNKNOWN, f"/v1/models: {detail}"
        )
    first = models[0]
    ctx.model = ctx.config.model or str(first["id"])
    for key in ("max_model_len", "context_length", "n_ctx"):
        if isinstance(first.get(key), int):
            ctx.context_tokens = first[key]
    meta = first.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("n_ctx_train"), int) and ctx.context_tokens is None:
        ctx.context_tokens = meta["n_ctx_train"]
    names = ", ".join(clean(str(m["id"]), 60) for m in models[:3])
    return ProbeResult(
        "models",
        ProbeStatus.PASS,
        f"/v1/models lists {len(models)}: {names}",
        {"models": [str(m["id"]) for m in models[:20]], "context_tokens": ctx.context_tokens},
    )


async def probe_version(ctx: ProbeContext) -> ProbeResult:
    replies = await asyncio.gather(*(ctx.get(path) for path in _VERSION_PATHS))
    for path, reply in zip(_VERSION_PATHS, replies, strict=True):
        data = reply.json() if reply.ok else None
        if not isinstance(data, dict):
            continue
        if path == "/props" and isinstance(data.get("default_generation_settings"), dict):
            n_ctx = data["default_generation_settings"].get("n_ctx")
            ctx.context_tokens = n_ctx if isinstance(n_ctx, int) else ctx.context_tokens
        version = data.get("version") or data.get("build_info")
        if version:
            text = clean(str(version), 80)
            return ProbeResult(
                "version", ProbeStatus.PASS, f"{path}: {text}", {"version": text, "path": path}
            )
    if ctx.server_header:
        text = clean(ctx.server_header, 80)
        return ProbeResult(
            "version", ProbeStatus.PASS, f"Server header: {text}", {"version": text, "path": None}
        )
    tried = ", ".join(_VERSION_PATHS)
    return ProbeResult("version", ProbeStatus.FAIL, f"no version on {tried} and no Server header")


async def probe_health(ctx: ProbeContext) -> list[ProbeResult]:
    """Liveness and readiness together: whether 'ready' is told apart depends on what health shows."""
    health = await asyncio.gather(*(ctx.get(path, auth=False) for path in _HEALTH_PATHS))
    ready = await asyncio.gather(*(ctx.get(path, auth=False) for path in _READY_PATHS))
    if all(r.failure and r.failure != "timeout" for r in health):
        reason = health[0].describe()
        return [
            ProbeResult("health", ProbeStatus.UNKNOWN, f"unreachable: {reason}"),
            ProbeResult("readiness", ProbeStatus.UNKNOWN, f"unreachable: {reason}"),
        ]
    found = [(p, r) for p, r in zip(_HEALTH_PATHS, health, strict=True) if r.status not in (None, 404, 405)]
    ready_found = [
        (p, r) for p, r in zip(_READY_PATHS, ready, strict=True) if r.status not in (None, 404, 405)
    ]
    results = []
    if found and found[0][1].ok:
        path, reply = found[0]
        ctx.health = reply
        results.append(ProbeResult("health", ProbeStatus.PASS, f"{path}: {reply.describe()}", {"path": path}))
    elif found:
        path, reply = found[0]
        results.append(
            ProbeResult(
                "health", ProbeStatus.FAIL, f"{path} answered {reply.describe()} (loading or unhealthy)"
            )
        )
    else:
        hung = [p for p, r in zip(_HEALTH_PATHS, health, strict=True) if r.failure == "timeout"]
        why = f"{', '.join(hung)} did not answer" if hung else f"none of {', '.join(_HEALTH_PATHS)} exists"
        results.append(ProbeResult("health", ProbeStatus.FAIL, f"no health endpoint: {why}"))

    if ready_found:
        path, reply = ready_found[0]
        results.append(
            ProbeResult(
                "readiness",
                ProbeStatus.PASS,
                f"separate readiness endpoint {path} ({reply.describe()})",
                {"path": path, "ready": reply.ok},
            )
        )
    elif ctx.health is not None and ctx.engine in _LOAD_AWARE_HEALTH:
        results.append(
            ProbeResult("readiness", ProbeStatus.PASS, _LOAD_AWARE_HEALTH[ctx.engine], {"path": None})
        )
    elif found:
        results.append(
            ProbeResult(
                "readiness",
                ProbeStatus.UNKNOWN,
                f"only {found[0][0]}: whether it tells 'loading' from 'ready' shows only during a start "
                "(servewise coldstart watches one)",
            )
        )
    else:
        results.append(ProbeResult("readiness", ProbeStatus.FAIL, "no health or readiness endpoint"))
    return results
