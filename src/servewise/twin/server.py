"""The twin: an OpenAI-compatible server whose token timing comes from the capacity simulator, in real time.

One scheduler task advances a ``BatchEngine`` step by step in real time (``time.perf_counter``, the
run clock; uvloop's ``loop.time()`` only has millisecond resolution): it asks the engine for the next
step's length, sleeps until just before the step's end (a coarse sleep, then a short spin), then writes
every token that step produced. Writing n tokens takes n times a learnt per-token cost, so the writes
start half of that early and straddle the due time. No request sleeps on its own; a request's timing is
wholly the batch's.

Streaming tokens are written straight to each connection's transport as ready-made HTTP chunks (the
response was prepared with chunked encoding by aiohttp, which also writes the final chunk): a write
costs a few microseconds, so hundreds of streams are served within one step's deadline on one core.

Prompt length is estimated without a tokenizer (:mod:`servewise.tokens`: a word of up to 7 letters is one
token, a longer word one per 5 letters, each digit or punctuation mark one); a list of token ids counts
exactly. Output length is ``max_tokens`` (or ``max_completion_tokens``, default 256); ``ignore_eos`` is accepted, and as the twin never samples an end-of-sequence it changes
nothing. A request stops early only if it says so, with the extension field ``stop_after_tokens``
(finish_reason ``stop``).

Prefix cache (``prefix_caching``; on in ``servewise twin`` as in vLLM): the same estimate, kept as pieces
(:func:`prompt_pieces`), is the token sequence whose blocks are named, chat messages flattened in order,
followed by the answer the twin will write (its i-th token is ``WORDS[i % n]``), so a conversation's next
turn, which sends that answer back, finds its whole history cached. A request skips the prefill of what it
found, reports it as ``usage.prompt_tokens_details.cached_tokens``, and the engine counts it in
``vllm:prefix_cache_queries`` / ``vllm:prefix_cache_hits`` (tokens, as vLLM v1 does).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from bisect import bisect_left
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from servewise.capacity import (
    BatchEngine,
    CapacityError,
    Deployment,
    Efficiency,
    EngineConfig,
    PrefixCache,
    Seq,
    StepModel,
    block_hashes,
    builtin_catalog,
    default_kv_precision,
    fitted_efficiency,
    get_model,
    memory_plan,
    smallest_fitting_tp,
)
from servewise.tokens import word_tokens
from servewise.twin.metrics import TwinMetrics

WORDS = (
    " the",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " a",
    " lazy",
    " dog",
    " and",
    " runs",
    " far",
)
DEFAULT_MAX_TOKENS = 256
SPIN_S = 0.0012  # wake this early and spin: epoll timers round to whole milliseconds
RESYNC_S = 0.05  # if the loop falls this far behind the ideal clock, restart the clock instead of bursting


@dataclass(frozen=True, slots=True)
class TwinConfig:
    served_model_name: str
    deployment: Deployment
    efficiency: Efficiency
    engine: EngineConfig
    kv_capacity_tokens: int
    time_scale: float = 1.0
    prefix_caching: bool = True

    @property
    def max_model_len(self) -> int:
        return min(self.deployment.model.max_context, self.kv_capacity_tokens)


def build_config(
    model: str = "llama-3.1-8b",
    gpu: str = "rtx4090",
    *,
    num_gpus: int | None = None,
    precision: str = "bf16",
    kv_precision: str | None = None,
    served_model_name: str | None = None,
    efficiency: Efficiency | None = None,
    engine: EngineConfig | None = None,
    time_scale: float = 1.0,
    prefix_caching: bool = True,
) -> TwinConfig:
    """Resolve names into a deployment; raises CapacityError with close matches for bad names.
    ``prefix_caching`` is on, as in vLLM (blocks of ``engine.block_size`` tokens); off, the twin agrees
    with the simulator fed lengths alone."""
    arch = get_model(model)
    card = builtin_catalog().get(gpu)
    engine = engine or EngineConfig()
    kv = kv_precision or default_kv_precision(precision)
    n = num_gpus or smallest_fitting_tp(arch, card, precision, kv, 2048, engine)
    if n is None:
        raise CapacityError(f"{arch.name} in {precision} does not fit on up to 8x {card.name}")
    dep = Deployment(arch, card, n, precision, kv)
    plan = memory_plan(dep, 1, engine)
    if not plan.fits:
        raise CapacityError(plan.reason)
    if time_scale <= 0:
        raise CapacityError("time scale must be positive")
    return TwinConfig(
        served_model_name or model,
        dep,
        efficiency or fitted_efficiency(),
        engine,
        plan.kv_capacity_tokens,
        time_scale,
        prefix_caching,
    )


ANSWER_PIECES = tuple(word.strip() for word in WORDS)  # how the twin's own words read back


def estimate_prompt_tokens(prompt: Any) -> int:
    """Short words 1 token, long words 1 per 5 letters, other characters 1 each; token-id lists count
    exactly; at least 1 (see the module docstring)."""
    return prompt_tokens_of(prompt)[0]


def prompt_pieces(prompt: Any) -> list[Hashable]:
    """The tokens :func:`estimate_prompt_tokens` counts, in order (token ids as given, a long word cut into
    5-letter pieces): two prompts share leading tokens exactly where they share leading text."""
    return prompt_tokens_of(prompt)[1]


def prompt_tokens_of(prompt: Any) -> tuple[int, list[Hashable]]:
    """The prompt's token count and its tokens, from one pass: a request with the prefix cache on needs both."""
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt), list(prompt)
    if isinstance(prompt, list):
        parts = [prompt_tokens_of(part) for part in prompt]
        return sum(n for n, _ in parts), [token for _, pieces in parts for token in pieces]
    pieces: list[Hashable] = [*word_tokens(str(prompt))]
    return max(1, len(pieces)), pieces


def sequence_blocks(pieces: list[Hashable], prompt_tokens: int, answer_tokens: int, block_size: int) -> list[int]:
    """Block names of a request's whole sequence: its prompt's ``pieces``, then the answer the twin will write.
    Only the prompt's when the pieces are not its counted tokens (an empty prompt counts 1), which would shift
    the answer's positions."""
    if len(pieces) == prompt_tokens:
        n = len(ANSWER_PIECES)
        pieces = [*pieces, *(ANSWER_PIECES[i % n] for i in range(1, answer_tokens + 1))]
    return block_hashes(pieces, block_size)


def _chat_text(messages: list[Any]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
        elif content is not None:
            parts.append(str(content))
    return "\n".join(parts)


def _frame(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


@dataclass(slots=True, eq=False)
class Stream:
    """One request in flight: its engine sequence and how its tokens leave."""

    seq: Seq
    request_id: str
    kind: str  # "chat" | "completion"
    streaming: bool
    include_usage: bool
    max_tokens: int
    arrival: float
    transport: Any = None
    chunks: list[bytes] = field(default_factory=list)
    done: asyncio.Future[None] | None = None
    last_token: float = 0.0
    emitted: int = 0
    finish_reason: str = "length"


class TwinScheduler:
    """The one loop that owns the engine and the clock."""

    def __init__(self, config: TwinConfig) -> None:
        self.config = config
        self.prefix_cache = PrefixCache(config.engine.block_size) if config.prefix_caching else None
        self.engine = BatchEngine(
            StepModel(config.deployment, config.efficiency),
            config.kv_capacity_tokens,
            config.engine,
            self.prefix_cache,
        )
        self.metrics = TwinMetrics(config.served_model_name, self._gauges, self.prefix_cache)
        self.registry = self.metrics.registry()
        self.streams: dict[int, Stream] = {}
        self._ids = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._clock = 0.0
        self.lateness: list[tuple[float, float, int]] = []  # per step: first, last write - due; tokens
        self.resyncs = 0
        self._write_cost = 5e-6  # seconds per token written, learnt as it runs

    def _gauges(self) -> tuple[int, int, float]:
        return self.engine.num_running, self.engine.num_waiting, self.engine.kv_used / self.engine.capacity

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="twin-scheduler")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def submit(self, stream: Stream) -> None:
        self.streams[stream.seq.idx] = stream
        self.engine.add(stream.seq)
        self.metrics.prompt_tokens += stream.seq.prompt
        self._wake.set()

    def abort(self, stream: Stream) -> None:
        if self.streams.pop(stream.seq.idx, None) is not None:
            self.engine.abort(stream.seq)
            self.metrics.finished["abort"] += 1
        if stream.done and not stream.done.done():
            stream.done.set_result(None)

    def next_id(self) -> int:
        return next(self._ids)

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        clock = time.perf_counter  # not loop.time(): uvloop's has millisecond resolution
        scale = self.config.time_scale
        while True:
            if self.engine.idle:
                self._wake.clear()
                await self._wake.wait()
                self._clock = clock()
            now = clock()
            if now - self._clock > RESYNC_S:
                self._clock = now
                self.resyncs += 1
            start = self._clock
            result = self.engine.step(start)
            deadline = start + result.duration * scale
            if result.preempted:
                self.metrics.preemptions += len(result.preempted)
            # Writing n tokens takes n·c; start half of that early (never before the step began) so the
            # writes straddle the due time.
            tokens = len(result.first_tokens) + len(result.decoded)
            begin = deadline - min(tokens * self._write_cost / 2, deadline - start)
            delay = begin - SPIN_S - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            while clock() < begin:
                pass
            self._emit(result.first_tokens, result.decoded, result.finished, deadline)
            self._clock = deadline

    def _emit(self, first: list[Seq], decoded: list[Seq], finished: list[Seq], due: float) -> None:
        """Write the step's tokens, then do the step's bookkeeping. The write loop is the twin's hot loop
        and sets its timing error (a step's tokens are all due at once), so it does nothing else."""
        streams = self.streams
        n_words = len(WORDS)
        live: list[Stream] = []
        gone: list[Stream] = []
        new_streams = 0
        written_first = time.perf_counter()
        for batch in (first, decoded):
            for seq in batch:
                stream = streams.get(seq.idx)
                if stream is None:
                    continue
                transport = stream.transport
                if transport is not None:
                    if transport.is_closing():
                        gone.append(stream)
                        continue
                    transport.write(stream.chunks[(stream.emitted + 1) % n_words])
                live.append(stream)
            if batch is first:
                new_streams = len(live)
        written_last = time.perf_counter()
        metrics = self.metrics
        for stream in live[:new_streams]:
            metrics.ttft.observe(due - stream.arrival)
        bounds, counts = metrics.itl.bounds, metrics.itl.counts
        itl_sum = 0.0
        for stream in live[new_streams:]:
            gap = due - stream.last_token
            counts[bisect_left(bounds, gap)] += 1
            itl_sum += gap
        stopped: list[Stream] = []
        for stream in live:
            stream.last_token = due
            stream.emitted += 1
            if stream.emitted >= stream.max_tokens and stream.seq.state != "finished":
                stopped.append(stream)
        count = len(live)
        metrics.itl.total += itl_sum
        metrics.generation_tokens += count
        for stream in gone:
            self.abort(stream)
        for stream in stopped:
            stream.finish_reason = "stop"
            self.streams.pop(stream.seq.idx, None)
            self.engine.abort(stream.seq)
            self._finish(stream, due)
        for seq in finished:
            stream = streams.pop(seq.idx, None)
            if stream is not None:
                self._finish(stream, due)
        if count:
            self._write_cost = 0.9 * self._write_cost + 0.1 * (written_last - written_first) / count
            self.lateness.append((written_first - due, written_last - due, count))
            if len(self.lateness) > 200_000:
                del self.lateness[:100_000]

    def _finish(self, stream: Stream, due: float) -> None:
        self.metrics.e2e.observe(due - stream.arrival)
        self.metrics.finished[stream.finish_reason] += 1
        if stream.transport is not None and not stream.transport.is_closing():
            stream.transport.write(
                _final_chunks(stream, self.config.served_model_name, self.prefix_cache is not None)
            )
        if stream.done and not stream.done.done():
            stream.done.set_result(None)


TWIN_KEY = web.AppKey("twin", TwinScheduler)


def _usage(stream: Stream, cached: bool) -> dict[str, Any]:
    """OpenAI usage; with the prefix cache on, also the prompt tokens it served (vLLM's
    ``prompt_tokens_details``)."""
    prompt = stream.seq.input_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": stream.emitted,
        "total_tokens": prompt + stream.emitted,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": stream.seq.cached_tokens}
    return usage


def _chunk_json(stream: Stream, model: str, text: str | None, finish: str | None) -> dict[str, Any]:
    created = int(time.time())
    if stream.kind == "chat":
        delta = {} if text is None else {"content": text}
        return {
            "id": stream.request_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    return {
        "id": stream.request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}],
    }


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _final_chunks(stream: Stream, model: str, cached: bool) -> bytes:
    out = [_frame(_sse(_chunk_json(stream, model, None, stream.finish_reason)))]
    if stream.include_usage:
        usage = {**_chunk_json(stream, model, None, None), "choices": [], "usage": _usage(stream, cached)}
        out.append(_frame(_sse(usage)))
    out.append(_frame(b"data: [DONE]\n\n"))
    return b"".join(out)


def _error(status: int, message: str, kind: str = "BadRequestError") -> web.Response:
    return web.json_response(
        {"object": "error", "message": message, "type": kind, "param": None, "code": status}, status=status
    )


async def _handle(request: web.Request, kind: str) -> web.StreamResponse:
    scheduler: TwinScheduler = request.app[TWIN_KEY]
    config = scheduler.config
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "request body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "request body must be a JSON object")
    model = body.get("model", config.served_model_name)
    if model != config.served_model_name:
        return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages must be a non-empty list")
        prompt: Any = _chat_text(messages)  # in order, so each turn extends the last one's sequence
    else:
        if "prompt" not in body:
            return _error(400, "prompt is required")
        prompt = body["prompt"]
    prompt_tokens, pieces = prompt_tokens_of(prompt)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    stop_after = body.get("stop_after_tokens")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return _error(400, f"max_tokens must be a positive integer, got {max_tokens!r}")
    if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 1):
        return _error(400, f"stop_after_tokens must be a positive integer, got {stop_after!r}")
    if prompt_tokens + max_tokens > config.max_model_len:
        return _error(
            400,
            f"This model's maximum context length is {config.max_model_len} tokens. However, you "
            f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
            f"{max_tokens} in the completion).",
        )
    loop = asyncio.get_running_loop()
    idx = scheduler.next_id()
    done: asyncio.Future[None] = loop.create_future()
    cache = scheduler.prefix_cache
    answer_tokens = min(max_tokens, stop_after or max_tokens)
    blocks = () if cache is None else sequence_blocks(pieces, prompt_tokens, answer_tokens, cache.block_size)
    stream = Stream(
        seq=Seq(idx, prompt_tokens, max_tokens, time.perf_counter(), blocks),
        request_id=f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-twin{idx:08x}",
        kind=kind,
        streaming=bool(body.get("stream", False)),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage", False)),
        max_tokens=answer_tokens,
        arrival=time.perf_counter(),
        done=done,
    )
    # the fitted per-request cost outside the engine (tokenizing, scheduling), as the simulator charges it
    await asyncio.sleep(scheduler.engine.model.request_overhead_s)
    if not stream.streaming:
        scheduler.submit(stream)
        try:
            await done
        finally:
            if stream.seq.idx in scheduler.streams:
                scheduler.abort(stream)
        text = "".join(WORDS[i % len(WORDS)] for i in range(1, stream.emitted + 1))
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": stream.finish_reason}
        if kind == "chat":
            choice["message"] = {"role": "assistant", "content": text}
            obj = "chat.completion"
        else:
            choice["text"] = text
            obj = "text_completion"
        return web.json_response(
            {
                "id": stream.request_id,
                "object": obj,
                "created": int(time.time()),
                "model": config.served_model_name,
                "choices": [choice],
                "usage": _usage(stream, cache is not None),
            }
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    stream.transport = request.transport
    # the i-th token (counted from 1) is WORDS[i % n], streamed or not
    stream.chunks = [
        _frame(_sse(_chunk_json(stream, config.served_model_name, word, None))) for word in WORDS
    ]
    if kind == "chat":
        role = _chunk_json(stream, config.served_model_name, "", None)
        role["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        stream.transport.write(_frame(_sse(role)))
    scheduler.submit(stream)
    try:
        await done
    finally:
        if stream.seq.idx in scheduler.streams:
            scheduler.abort(stream)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "completion")


async def models(request: web.Request) -> web.Response:
    config: TwinConfig = request.app[TWIN_KEY].config
    return web.json_response(
        {
            "object": "list",
            "data": [
                {
                    "id": config.served_model_name,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "servewise-twin",
                    "root": config.deployment.model.name,
                    "parent": None,
                    "max_model_len": config.max_model_len,
                }
            ],
        }
    )


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def metrics(request: web.Request) -> web.Response:
    scheduler: TwinScheduler = request.app[TWIN_KEY]
    return web.Response(
        body=generate_latest(scheduler.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def twin_info(request: web.Request) -> web.Response:
    """The twin's own view: what it simulates and how close to due its tokens left (write lateness)."""
    scheduler: TwinScheduler = request.app[TWIN_KEY]
    config = scheduler.config
    dep = config.deployment
    return web.json_response(
        {
            "model": dep.model.name,
            "gpu": dep.gpu.name,
            "num_gpus": dep.num_gpus,
            "precision": dep.weight_precision,
            "kv_precision": dep.kv_precision,
            "kv_capacity_tokens": config.kv_capacity_tokens,
            "time_scale": config.time_scale,
            "efficiency": config.efficiency.to_dict(),
            "engine": {
                "max_num_seqs": config.engine.max_num_seqs,
                "max_batched_tokens": config.engine.max_batched_tokens,
            },
            "prefix_cache": _prefix_cache_info(scheduler.prefix_cache, config.engine.block_size),
            "lateness_ms": lateness_summary(scheduler.lateness),
            "resyncs": scheduler.resyncs,
        }
    )


def _prefix_cache_info(cache: PrefixCache | None, block_size: int) -> dict[str, Any]:
    """Whether the twin caches prefixes, at what block size, and what its cache holds and has served."""
    if cache is None:
        return {"enabled": False, "block_size": block_size}
    return {
        "enabled": True,
        "block_size": cache.block_size,
        "query_tokens": cache.queries,
        "hit_tokens": cache.hits,
        "cached_blocks": cache.cached_blocks,
        "free_blocks": cache.free_blocks,
    }


def lateness_summary(steps: list[tuple[float, float, int]]) -> dict[str, float]:
    """Token timing error (ms): write time minus due time. Within a step, tokens are spread evenly between
    the first and the last write; percentiles are of the absolute error, ``mean`` is signed."""
    import numpy as np

    if not steps:
        return {"tokens": 0}
    arr = np.array(steps)
    k = np.minimum(arr[:, 2], 16).astype(int)
    samples = (
        np.concatenate([np.linspace(f, last, n) for (f, last, _), n in zip(steps, k, strict=True)]) * 1e3
    )
    weights = np.repeat(arr[:, 2] / k, k)
    errors = np.abs(samples)
    order = np.argsort(errors)
    cdf = np.cumsum(weights[order]) / weights.sum()

    def pct(p: float) -> float:
        return float(errors[order][min(int(np.searchsorted(cdf, p / 100)), errors.size - 1)])

    return {
        "tokens": int(arr[:, 2].sum()),
        "abs_p50": pct(50),
        "abs_p99": pct(99),
        "abs_max": float(errors.max()),
        "mean": float(np.average(samples, weights=weights)),
    }


def create_app(model: str = "llama-3.1-8b", gpu: str = "rtx4090", **options: Any) -> web.Application:
    """The twin as an aiohttp application (options: see ``build_config``)."""
    config = build_config(model, gpu, **options)
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def start(app: web.Application) -> None:
        scheduler = TwinScheduler(config)
        app[TWIN_KEY] = scheduler
        scheduler.start()

    async def stop(app: web.Application) -> None:
        await app[TWIN_KEY].stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/twin", twin_info)
    return app


class TwinHandle:
    """A twin running inside the caller's event loop (tests, ``servewise demo``)."""

    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self.runner = runner
        self.url = url

    @property
    def scheduler(self) -> TwinScheduler:
        return self.runner.app[TWIN_KEY]

    async def close(self) -> None:
        await self.runner.cleanup()

    async def __aenter__(self) -> TwinHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_twin(host: str = "127.0.0.1", port: int = 0, **options: Any) -> TwinHandle:
    """Start in the running loop; ``port=0`` picks a free port (see ``handle.url``)."""
    return await start_app(create_app(**options), host, port)


async def start_app(app: web.Application, host: str, port: int) -> TwinHandle:
    """Any twin application (language or image engine) served in the running loop."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048)
    await site.start()
    bound = runner.addresses[0][1]
    return TwinHandle(runner, f"http://{host}:{bound}")


def run_twin(host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Serve until interrupted (uvloop when available)."""
    serve_forever(create_app(**options), host, port)


def serve_forever(app: web.Application, host: str, port: int) -> None:
    """Serve any twin application until interrupted (uvloop when available)."""
    new_loop: Callable[[], asyncio.AbstractEventLoop] | None
    try:
        import uvloop
    except ImportError:
        new_loop = None
    else:
        new_loop = uvloop.new_event_loop
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=None,
        backlog=2048,
        loop=new_loop() if new_loop else None,
    )
