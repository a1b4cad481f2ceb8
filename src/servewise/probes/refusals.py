"""Does the server refuse what it should, quickly and as a client error: bad JSON, an unknown model, a
prompt beyond its context, a request without a key.

A refusal is the answer wanted here; a hang, a 5xx or a silent acceptance each mislead a client in their
own way, and the evidence says which.
"""

from __future__ import annotations

import secrets

from servewise.probes.context import KEY_HINT, ProbeContext, Reply, needs_key
from servewise.probes.results import ProbeResult, ProbeStatus
from servewise.protocols.endpoint import host_port

_DEFAULT_OVERSIZED_WORDS = 262_144


def _client_error_result(name: str, reply: Reply, what: str) -> ProbeResult:
    """The shared verdict for inputs the server should refuse with a 4xx."""
    if needs_key(reply):
        return ProbeResult(name, ProbeStatus.UNKNOWN, KEY_HINT)
    if reply.failure == "timeout":
        return ProbeResult(name, ProbeStatus.FAIL, f"{what}: {reply.describe()} (a hang, not a refusal)")
    if reply.failure:
        return ProbeResult(name, ProbeStatus.UNKNOWN, f"{what}: {reply.describe()}")
    assert reply.status is not None
    if 400 <= reply.status < 500:
        return ProbeResult(
            name, ProbeStatus.PASS, f"{what}: {reply.describe()}", {"status_code": reply.status}
        )
    if reply.status >= 500:
        return ProbeResult(
            name,
            ProbeStatus.FAIL,
            f"{what}: {reply.describe()} (a client mistake reported as a server error)",
            {"status_code": reply.status},
        )
    return ProbeResult(
        name, ProbeStatus.FAIL, f"{what}: accepted ({reply.describe()})", {"status_code": reply.status}
    )


async def probe_bad_json(ctx: ProbeContext) -> ProbeResult:
    adapter = ctx.adapter()
    [reply] = await ctx.post(adapter, adapter.frame(b'{"model": "x", "messages": [{"role": '))
    return _client_error_result("bad_json", reply, "malformed JSON")


async def probe_unknown_model(ctx: ProbeContext) -> ProbeResult:
    name = f"servewise-probe-no-such-model-{secrets.token_hex(3)}"
    reply = await ctx.generate("Hi", 1, model=name)
    if reply.ok:
        return ProbeResult(
            "unknown_model",
            ProbeStatus.FAIL,
            f"unknown model served anyway ({reply.describe()}): "
            "a client pointed at the wrong model is not told",
            {"ignores_model_name": True},
        )
    return _client_error_result("unknown_model", reply, "unknown model")


async def probe_oversized(ctx: ProbeContext) -> ProbeResult:
    words = ctx.config.oversized_words or (
        2 * ctx.context_tokens + 64 if ctx.context_tokens else _DEFAULT_OVERSIZED_WORDS
    )
    reply = await ctx.generate("word " * words, 1)
    what = f"{words}-word prompt" + (f" (context {ctx.context_tokens} tokens)" if ctx.context_tokens else "")
    if reply.ok and ctx.context_tokens is None and ctx.config.oversized_words is None:
        return ProbeResult(
            "oversized_prompt",
            ProbeStatus.UNKNOWN,
            f"{what}: accepted; the context length is unknown, so it may fit",
        )
    if reply.ok:
        return ProbeResult(
            "oversized_prompt",
            ProbeStatus.FAIL,
            f"{what}: accepted ({reply.describe()}): truncated silently?",
        )
    return _client_error_result("oversized_prompt", reply, what)


async def probe_auth(ctx: ProbeContext) -> ProbeResult:
    reply = await ctx.get("/v1/models", auth=False)
    if reply.status == 404:
        reply = await ctx.generate("Hi", 1, auth=False)
    host, _ = host_port(ctx.base)
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if needs_key(reply):
        return ProbeResult(
            "auth", ProbeStatus.PASS, f"required: {reply.status} without a key", {"required": True}
        )
    if reply.ok:
        where = "fine on loopback" if loopback else "anyone who can reach this address can use it"
        return ProbeResult(
            "auth",
            ProbeStatus.FAIL,
            f"not required: {reply.status} without a key ({where})",
            {"required": False, "loopback": loopback},
        )
    return ProbeResult("auth", ProbeStatus.UNKNOWN, f"without a key: {reply.describe()}")
