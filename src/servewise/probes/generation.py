"""Does the server generate the way bench will measure it: a clean token stream, and usage counts in it.

The streamed request is bench's own (``OpenAIAdapter``, the engine transport, ``StreamReader``), so its
TTFT is bench's TTFT: first content-bearing chunk arrival minus the request write. A server that streams
no usage makes every bench token count an estimate; that is what the usage probe tells.
"""

from __future__ import annotations

from dataclasses import replace

from servewise.probes.context import KEY_HINT, ProbeContext, Reply, clean, needs_key
from servewise.probes.exchange import prompt_request, send
from servewise.probes.results import ProbeResult, ProbeStatus
from servewise.protocols.openai import OpenAIAdapter, StreamReader
from servewise.records import RequestRecord, TokenSource


async def _stream_once(ctx: ProbeContext) -> tuple[OpenAIAdapter, RequestRecord, StreamReader]:
    """One short streamed generation, recorded as bench records one."""
    adapter = ctx.adapter(stream=True)
    reader = StreamReader()
    request = adapter.request_bytes(prompt_request("Say hello in five words.", 8))
    [record] = await send(adapter, [(request, reader)], ctx.config.request_timeout_s)
    return adapter, record, reader


async def probe_streaming(ctx: ProbeContext) -> list[ProbeResult]:
    """Streaming and usage are one question asked once: the usage probe reads the same stream."""
    adapter, record, reader = await _stream_once(ctx)
    if record.status == 404 and ctx.config.api == "chat":
        ctx.config = replace(ctx.config, api="completions")
        adapter, record, reader = await _stream_once(ctx)
    reply = Reply.of(record)
    if needs_key(reply):
        return [
            ProbeResult("streaming", ProbeStatus.UNKNOWN, KEY_HINT),
            ProbeResult("usage", ProbeStatus.UNKNOWN, KEY_HINT),
        ]
    chunks = reader.chunk_times
    if reply.failure and not chunks:
        return [
            ProbeResult("streaming", ProbeStatus.FAIL, f"{adapter.path}: {reply.describe()}"),
            ProbeResult("usage", ProbeStatus.UNKNOWN, "no generation came back"),
        ]
    if chunks:
        ttft_s = chunks[0] - record.t_send
        ending = "[DONE]" if reader.done else ""
        if not ending and reader.finish_reason:
            ending = f"finish_reason {reader.finish_reason}"
        if record.error is not None:
            outcome = f"then {clean(record.error_detail)}"
        elif ending:
            outcome = f"ended with {ending}"
        else:
            outcome = "stream never ended cleanly"
        status = ProbeStatus.PASS if ending and record.error is None else ProbeStatus.FAIL
        evidence = (
            f"{adapter.path}: {len(chunks)} content chunks, first after {ttft_s * 1000:.0f} ms, {outcome}"
        )
        streaming = ProbeResult("streaming", status, evidence, {"api": ctx.config.api, "ttft_s": ttft_s})
    else:
        # an error status already says why; a 200 without content says what came instead
        why = clean(record.error_detail) if record.error is not None else "no content in the stream"
        evidence = f"{adapter.path}: {reply.describe()}" + (f" ({why})" if reply.ok else "")
        streaming = ProbeResult("streaming", ProbeStatus.FAIL, evidence)
    return [streaming, await _usage_result(ctx, record)]


async def _usage_result(ctx: ProbeContext, streamed: RequestRecord) -> ProbeResult:
    if streamed.ok and streamed.output_tokens_source is TokenSource.USAGE:
        return ProbeResult(
            "usage",
            ProbeStatus.PASS,
            f"streamed usage: {streamed.input_tokens} prompt, {streamed.output_tokens} completion tokens",
            {"streamed": True},
        )
    reply = await ctx.generate("Say hello.", 4)
    if reply.ok and reply.usage:
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
