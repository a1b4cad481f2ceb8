"""Readiness probes against one serving endpoint.

Each probe asks one question a production service must answer well (is it up, is it ready, can we see
inside it, does it fail cleanly on bad input and on overload) and returns a plain ``ProbeResult``.
Probes are safe to point at a live endpoint: they only touch the URL given (redirects are not followed,
so neither requests nor the key go elsewhere), every request carries a timeout, the overload burst is
bounded in count, and generations are a few tokens long.
The API key is sent as a header and never appears in results, evidence or logs.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from servewise.telemetry.exposition import detect_engine, parse_exposition


class ProbeStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One answer: ``facts`` holds what later steps (stage, report) read without parsing evidence."""

    name: str
    status: ProbeStatus
    evidence: str
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "evidence": self.evidence,
            "facts": self.facts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        return cls(
            name=str(data["name"]),
            status=ProbeStatus(data["status"]),
            evidence=str(data.get("evidence", "")),
            facts=dict(data.get("facts") or {}),
        )


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """Bounds of every probe. ``burst_size`` is capped at ``MAX_BURST`` whatever is asked."""

    api: Literal["chat", "completions"] = "chat"
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    request_timeout_s: float = 10.0
    burst_size: int = 32
    burst_max_tokens: int = 64
    burst_timeout_s: float = 15.0
    fast_shed_s: float = 2.0
    oversized_words: int | None = None
    include_overload: bool = True


MAX_BURST = 256
PROBE_NAMES = (
    "metrics",
    "models",
    "version",
    "health",
    "readiness",
    "streaming",
    "usage",
    "bad_json",
    "unknown_model",
    "oversized_prompt",
    "auth",
    "overload",
)
_DEFAULT_OVERSIZED_WORDS = 262_144
_BODY_LIMIT = 1 << 20

_HEALTH_PATHS = ("/health", "/healthz", "/v2/health/live", "/health/live", "/livez", "/ping")
_READY_PATHS = ("/ready", "/readyz", "/health/ready", "/v2/health/ready", "/v1/health/ready")
_VERSION_PATHS = ("/version", "/info", "/props", "/v2", "/get_server_info")
# Engines whose single health endpoint already answers "not ready" until the model is loaded.
_LOAD_AWARE_HEALTH = {
    "llamacpp": "llama.cpp answers /health with 503 'Loading model' until the model is loaded",
    "vllm": "vLLM starts its HTTP server only after the engine has loaded the model",
}


# -- HTTP plumbing: every call returns a _Reply and never raises --------------------------------------


@dataclass(slots=True)
class _Reply:
    status: int | None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    failure: str | None = None  # "timeout" or "connect: ..." when there was no HTTP answer

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        if self.failure == "timeout":
            return f"no answer in {self.elapsed_s:.1f} s"
        if self.failure:
            return self.failure
        message = "" if self.ok else _error_message(self.body)
        return f"{self.status} in {self.elapsed_s:.2f} s" + (f": {message}" if message else "")


def _clean(text: str, limit: int = 160) -> str:
    """Server text made safe to show anywhere: no control characters, one line, bounded."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return _clean(body.decode("utf-8", "replace"))
    for key in ("error", "detail", "message"):
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, dict):
            value = value.get("message", value)
        if value:
            return _clean(value if isinstance(value, str) else json.dumps(value))
    return _clean(json.dumps(data)) if data not in (None, {}, []) else ""


@dataclass(slots=True)
class _Context:
    session: aiohttp.ClientSession
    base: str
    config: ProbeConfig
    model: str | None = None
    engine: str | None = None
    context_tokens: int | None = None
    health: _Reply | None = None
    server_header: str | None = None

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}

    @property
    def generate_path(self) -> str:
        return "/v1/chat/completions" if self.config.api == "chat" else "/v1/completions"

    def generate_body(self, prompt: str, max_tokens: int, *, stream: bool, model: str | None = None) -> dict:
        body: dict[str, Any] = {
            "model": model or self.model or "default",
            "max_tokens": max_tokens,
            "stream": stream,
        }
        if self.config.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        auth: bool = True,
        timeout_s: float | None = None,
    ) -> _Reply:
        timeout_s = timeout_s or self.config.request_timeout_s
        headers = dict(self.auth_headers) if auth else {}
        if data is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                async with self.session.request(
                    method,
                    self.base + path,
                    json=json_body,
                    data=data,
                    headers=headers,
                    allow_redirects=False,
                ) as resp:
                    body = await resp.content.read(_BODY_LIMIT)
                    self.server_header = self.server_header or resp.headers.get("Server")
                    return _Reply(resp.status, body, dict(resp.headers), time.perf_counter() - started)
        except TimeoutError:
            return _Reply(None, elapsed_s=time.perf_counter() - started, failure="timeout")
        except aiohttp.ClientError as exc:
            return _Reply(
                None, elapsed_s=time.perf_counter() - started, failure=f"connect: {_clean(str(exc))}"
            )


def _base_url(url: str) -> str:
    """Probes address the server root: a trailing ``/v1`` given by habit is dropped."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _needs_key(reply: _Reply) -> bool:
    return reply.status in (401, 403)


_KEY_HINT = "needs an API key (give --api-key-env or --api-key-file)"


# -- the probes ---------------------------------------------------------------------------------------


async def _probe_metrics(ctx: _Context) -> ProbeResult:
    reply = await ctx.call("GET", "/metrics")
    if not reply.ok:
        hint = " (llama-server needs --metrics)" if reply.status == 404 else ""
        return ProbeResult("metrics", ProbeStatus.FAIL, f"no /metrics: {reply.describe()}{hint}")
    try:
        series = parse_exposition(reply.body.decode("utf-8", "replace"))
    except ValueError as exc:
        why = f"/metrics is not Prometheus text: {_clean(str(exc), 80)}"
        return ProbeResult("metrics", ProbeStatus.FAIL, why)
    if not series:
        return ProbeResult("metrics", ProbeStatus.FAIL, "/metrics answered but holds no Prometheus series")
    ctx.engine = detect_engine(series)
    where = f"engine {ctx.engine}" if ctx.engine else "no engine signals (process metrics only)"
    return ProbeResult(
        "metrics", ProbeStatus.PASS, f"/metrics: {len(series)} series, {where}", {"engine": ctx.engine}
    )


async def _probe_models(ctx: _Context) -> ProbeResult:
    reply = await ctx.call("GET", "/v1/models")
    data = reply.json() if reply.ok else None
    models = (
        [m for m in (data or {}).get("data", []) if isinstance(m, dict) and m.get("id")]
        if isinstance(data, dict)
        else []
    )
    if not models:
        detail = _KEY_HINT if _needs_key(reply) else reply.describe()
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
    names = ", ".join(_clean(str(m["id"]), 60) for m in models[:3])
    return ProbeResult(
        "models",
        ProbeStatus.PASS,
        f"/v1/models lists {len(models)}: {names}",
        {"models": [str(m["id"]) for m in models[:20]], "context_tokens": ctx.context_tokens},
    )


async def _probe_version(ctx: _Context) -> ProbeResult:
    replies = await asyncio.gather(*(ctx.call("GET", path) for path in _VERSION_PATHS))
    for path, reply in zip(_VERSION_PATHS, replies, strict=True):
        data = reply.json() if reply.ok else None
        if not isinstance(data, dict):
            continue
        if path == "/props" and isinstance(data.get("default_generation_settings"), dict):
            n_ctx = data["default_generation_settings"].get("n_ctx")
            ctx.context_tokens = n_ctx if isinstance(n_ctx, int) else ctx.context_tokens
        version = data.get("version") or data.get("build_info")
        if version:
            text = _clean(str(version), 80)
            return ProbeResult(
                "version", ProbeStatus.PASS, f"{path}: {text}", {"version": text, "path": path}
            )
    if ctx.server_header:
        text = _clean(ctx.server_header, 80)
        return ProbeResult(
            "version", ProbeStatus.PASS, f"Server header: {text}", {"version": text, "path": None}
        )
    tried = ", ".join(_VERSION_PATHS)
    return ProbeResult("version", ProbeStatus.FAIL, f"no version on {tried} and no Server header")


async def _probe_health(ctx: _Context) -> list[ProbeResult]:
    health = await asyncio.gather(*(ctx.call("GET", path, auth=False) for path in _HEALTH_PATHS))
    ready = await asyncio.gather(*(ctx.call("GET", path, auth=False) for path in _READY_PATHS))
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


async def _stream_once(ctx: _Context) -> tuple[_Reply, dict[str, Any]]:
    """One short streamed generation; returns the reply head and what the stream showed."""
    seen: dict[str, Any] = {
        "events": 0,
        "content_chunks": 0,
        "done": False,
        "usage": None,
        "ttft_s": None,
        "finish_reason": None,
        "content_type": "",
    }
    body = ctx.generate_body("Say hello in five words.", 8, stream=True)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(ctx.config.request_timeout_s):
            async with ctx.session.post(
                ctx.base + ctx.generate_path, json=body, headers=ctx.auth_headers, allow_redirects=False
            ) as resp:
                seen["content_type"] = resp.headers.get("Content-Type", "")
                if resp.status != 200 or "event-stream" not in seen["content_type"]:
                    data = await resp.content.read(_BODY_LIMIT)
                    return _Reply(resp.status, data, dict(resp.headers), time.perf_counter() - started), seen
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        seen["done"] = True
                        break
                    seen["events"] += 1
                    _read_event(payload, seen, time.perf_counter() - started)
                return _Reply(resp.status, b"", dict(resp.headers), time.perf_counter() - started), seen
    except TimeoutError:
        return _Reply(None, elapsed_s=time.perf_counter() - started, failure="timeout"), seen
    except aiohttp.ClientError as exc:
        return _Reply(
            None, elapsed_s=time.perf_counter() - started, failure=f"connect: {_clean(str(exc))}"
        ), seen


def _read_event(payload: bytes, seen: dict[str, Any], elapsed_s: float) -> None:
    try:
        event = json.loads(payload)
    except ValueError:
        return
    if not isinstance(event, dict):
        return
    if isinstance(event.get("usage"), dict) and event["usage"].get("completion_tokens") is not None:
        seen["usage"] = event["usage"]
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or {}
        text = delta.get("content") or delta.get("reasoning_content") or choice.get("text")
        if text:
            seen["content_chunks"] += 1
            if seen["ttft_s"] is None:
                seen["ttft_s"] = elapsed_s
        seen["finish_reason"] = choice.get("finish_reason") or seen["finish_reason"]


async def _probe_streaming(ctx: _Context) -> list[ProbeResult]:
    reply, seen = await _stream_once(ctx)
    if reply.status == 404 and ctx.config.api == "chat":
        ctx.config = replace(ctx.config, api="completions")
        reply, seen = await _stream_once(ctx)
    if _needs_key(reply):
        return [
            ProbeResult("streaming", ProbeStatus.UNKNOWN, _KEY_HINT),
            ProbeResult("usage", ProbeStatus.UNKNOWN, _KEY_HINT),
        ]
    if reply.failure and not seen["content_chunks"]:
        return [
            ProbeResult("streaming", ProbeStatus.FAIL, f"{ctx.generate_path}: {reply.describe()}"),
            ProbeResult("usage", ProbeStatus.UNKNOWN, "no generation came back"),
        ]
    if seen["content_chunks"]:
        ending = (
            "[DONE]"
            if seen["done"]
            else f"finish_reason {seen['finish_reason']}"
            if seen["finish_reason"]
            else ""
        )
        status = ProbeStatus.PASS if ending else ProbeStatus.FAIL
        evidence = (
            f"{ctx.generate_path}: {seen['content_chunks']} content chunks, first after "
            f"{seen['ttft_s'] * 1000:.0f} ms, "
            + (f"ended with {ending}" if ending else "stream never ended cleanly")
        )
        streaming = ProbeResult(
            "streaming", status, evidence, {"api": ctx.config.api, "ttft_s": seen["ttft_s"]}
        )
    else:
        streaming = ProbeResult(
            "streaming",
            ProbeStatus.FAIL,
            f"{ctx.generate_path}: {reply.describe()} "
            f"(content type {_clean(seen['content_type'], 40) or 'none'})",
        )
    return [streaming, await _usage_result(ctx, seen)]


async def _usage_result(ctx: _Context, seen: dict[str, Any]) -> ProbeResult:
    if seen["usage"]:
        usage = seen["usage"]
        return ProbeResult(
            "usage",
            ProbeStatus.PASS,
            f"streamed usage: {usage.get('prompt_tokens')} prompt, "
            f"{usage.get('completion_tokens')} completion tokens",
            {"streamed": True},
        )
    reply = await ctx.call(
        "POST", ctx.generate_path, json_body=ctx.generate_body("Say hello.", 4, stream=False)
    )
    usage = (reply.json() or {}).get("usage") if reply.ok and isinstance(reply.json(), dict) else None
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        return ProbeResult(
            "usage",
            ProbeStatus.FAIL,
            "usage only in non-streamed answers: streamed token counts fall back to chunk counts "
            "(an estimate)",
            {"streamed": False},
        )
    return ProbeResult(
        "usage", ProbeStatus.FAIL, f"no usage in streamed or plain answers ({reply.describe()})"
    )


def _client_error_result(name: str, reply: _Reply, what: str) -> ProbeResult:
    """The shared verdict for inputs the server should refuse with a 4xx."""
    if _needs_key(reply):
        return ProbeResult(name, ProbeStatus.UNKNOWN, _KEY_HINT)
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


async def _probe_bad_json(ctx: _Context) -> ProbeResult:
    reply = await ctx.call("POST", ctx.generate_path, data=b'{"model": "x", "messages": [{"role": ')
    return _client_error_result("bad_json", reply, "malformed JSON")


async def _probe_unknown_model(ctx: _Context) -> ProbeResult:
    name = f"servewise-probe-no-such-model-{secrets.token_hex(3)}"
    reply = await ctx.call(
        "POST", ctx.generate_path, json_body=ctx.generate_body("Hi", 1, stream=False, model=name)
    )
    result = _client_error_result("unknown_model", reply, "unknown model")
    if reply.ok:
        return ProbeResult(
            "unknown_model",
            ProbeStatus.FAIL,
            f"unknown model served anyway ({reply.describe()}): "
            "a client pointed at the wrong model is not told",
            {"ignores_model_name": True},
        )
    return result


async def _probe_oversized(ctx: _Context) -> ProbeResult:
    words = ctx.config.oversized_words or (
        2 * ctx.context_tokens + 64 if ctx.context_tokens else _DEFAULT_OVERSIZED_WORDS
    )
    prompt = "word " * words
    reply = await ctx.call("POST", ctx.generate_path, json_body=ctx.generate_body(prompt, 1, stream=False))
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


async def _probe_overload(ctx: _Context) -> ProbeResult:
    """A short burst above capacity: a production server sheds it with fast 429/503, not timeouts."""
    size = max(1, min(ctx.config.burst_size, MAX_BURST))
    body = ctx.generate_body("Tell me a long story about the sea.", ctx.config.burst_max_tokens, stream=False)
    replies = await asyncio.gather(
        *(
            ctx.call("POST", ctx.generate_path, json_body=body, timeout_s=ctx.config.burst_timeout_s)
            for _ in range(size)
        )
    )
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
    if rejected and _needs_key(rejected[0]):
        return ProbeResult("overload", ProbeStatus.UNKNOWN, _KEY_HINT, facts)
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


async def _probe_auth(ctx: _Context) -> ProbeResult:
    reply = await ctx.call("GET", "/v1/models", auth=False)
    if reply.status == 404:
        reply = await ctx.call(
            "POST", ctx.generate_path, json_body=ctx.generate_body("Hi", 1, stream=False), auth=False
        )
    host = urlsplit(ctx.base).hostname or ""
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if _needs_key(reply):
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


async def _guarded(name: str, make: Callable[[], Awaitable[Any]], limit_s: float) -> list[ProbeResult]:
    """One probe that breaks or overruns becomes an 'unknown' result instead of stopping the rest."""
    try:
        async with asyncio.timeout(limit_s):
            found = await make()
    except TimeoutError:
        return [ProbeResult(name, ProbeStatus.UNKNOWN, f"probe overran its {limit_s:g} s bound")]
    except (aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
        return [
            ProbeResult(name, ProbeStatus.UNKNOWN, f"probe broke: {type(exc).__name__}: {_clean(str(exc))}")
        ]
    return found if isinstance(found, list) else [found]


async def run_probes(url: str, config: ProbeConfig | None = None) -> list[ProbeResult]:
    """Every probe, in a safe order: discovery first, the overload burst last."""
    config = config or ProbeConfig()
    limit = config.request_timeout_s * 3 + 5
    # a fresh connection per request: a pooled one the server has already closed would turn a clean
    # 4xx into a write error (llama-server closes idle keep-alive connections)
    connector = aiohttp.TCPConnector(limit=MAX_BURST, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        ctx = _Context(session=session, base=_base_url(url), config=config, model=config.model)
        first = await ctx.call("GET", "/")
        if first.failure and first.failure != "timeout":
            why = f"target unreachable: {first.describe()}"
            return [
                ProbeResult(name, ProbeStatus.UNKNOWN, why, {"unreachable": True}) for name in PROBE_NAMES
            ]
        results: list[ProbeResult] = []
        for name, make in (
            ("metrics", lambda: _probe_metrics(ctx)),
            ("models", lambda: _probe_models(ctx)),
            ("version", lambda: _probe_version(ctx)),
            ("health", lambda: _probe_health(ctx)),
            ("streaming", lambda: _probe_streaming(ctx)),
            ("bad_json", lambda: _probe_bad_json(ctx)),
            ("unknown_model", lambda: _probe_unknown_model(ctx)),
            ("oversized_prompt", lambda: _probe_oversized(ctx)),
            ("auth", lambda: _probe_auth(ctx)),
        ):
            results += await _guarded(name, make, limit)
        if config.include_overload:
            burst_limit = config.burst_timeout_s + limit
            results += await _guarded("overload", lambda: _probe_overload(ctx), burst_limit)
        else:
            results.append(
                ProbeResult("overload", ProbeStatus.UNKNOWN, "not run: the overload burst was turned off")
            )
        return results


def run_probes_sync(url: str, config: ProbeConfig | None = None) -> list[ProbeResult]:
    """For callers outside an event loop (the CLI)."""
    return asyncio.run(run_probes(url, config))
