"""Anthropic Messages (``/v1/messages``): what coding agents send to self-hosted models (llama-server,
vLLM and gateways speak it).

Streamed: ``message_start`` carries the prompt's usage, each ``content_block_delta`` a ``text_delta``
(answer) or ``thinking_delta`` (reasoning), ``message_delta`` the stop reason and output tokens. Usage
counts the prompt in three parts: tokens read from the prompt cache, tokens written to it, and the rest;
servewise's input tokens are their sum (OpenAI's ``prompt_tokens``), its cached tokens the cache reads.
"""

from __future__ import annotations

from typing import Any

from servewise.protocols.base import Failure, Framing, ResponseReader, mismatch, other_api, request_messages
from servewise.protocols.endpoint import anthropic_headers
from servewise.protocols.events import EventStreamReader, JsonBodyReader, Tokens
from servewise.records import ErrorClass, RequestRecord
from servewise.spec.models import TargetSpec
from servewise.workload.plan import PlannedRequest

EXPECTED = "Anthropic Messages"
TIMING = (
    "TTFT: arrival of the first content_block_delta with text (thinking_delta counts; TTFA waits for text_delta);"
    " ITL: gaps between deltas; E2E: the last byte; TPOT: (E2E - TTFT) / (usage.output_tokens - 1)"
)
_DELTAS = {"text_delta": ("text", True), "thinking_delta": ("thinking", False)}


class AnthropicAdapter(Framing):
    """System messages go to the top-level ``system`` field; the key travels as ``x-api-key``."""

    def __init__(self, target: TargetSpec, model: str | None, api_key: str | None) -> None:
        super().__init__(target, model, anthropic_headers(api_key, target.anthropic_version), target.stream)

    def body(self, request: PlannedRequest) -> dict[str, Any]:
        messages = request_messages(request)
        system = "\n".join(m["content"] for m in messages if m.get("role") == "system")
        body = self.model_field()
        body["messages"] = [m for m in messages if m.get("role") != "system"]
        if system:
            body["system"] = system
        return self.generation_fields(body, "max_tokens", request.max_tokens)

    def request_bytes(self, request: PlannedRequest) -> bytes:
        return self.frame_json(self.body(request), request)

    def reader(self, collect_text: bool = False) -> ResponseReader:
        return MessagesStreamReader(collect_text) if self.stream else MessageReader()


def _usage(tokens: Tokens, usage: Any) -> None:
    """Fold one usage object in: ``message_start`` has the prompt's, ``message_delta`` the output's."""
    if not isinstance(usage, dict):
        return
    parts = [usage.get(k) for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")]
    if isinstance(parts[0], int):
        tokens.input = sum(p for p in parts if isinstance(p, int))
    if isinstance(parts[1], int):
        tokens.cached = parts[1]
    if isinstance(usage.get("output_tokens"), int) and usage["output_tokens"] > 0:
        tokens.output = usage["output_tokens"]


class MessagesStreamReader(EventStreamReader):
    expected = EXPECTED
    __slots__ = ()

    def event(self, event: dict[str, Any], now: float) -> None:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            field, answer = (
                _DELTAS.get(str(delta.get("type")), ("", False)) if isinstance(delta, dict) else ("", False)
            )
            text = delta.get(field) if field and isinstance(delta, dict) else None
            if isinstance(text, str):
                self.content(text, now, answer=answer)
        elif kind == "message_start":
            message = event.get("message")
            _usage(self.tokens, message.get("usage") if isinstance(message, dict) else None)
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.finish_reason = str(delta["stop_reason"])
            _usage(self.tokens, event.get("usage"))
        elif kind == "message_stop":
            self.end()
        elif kind == "error":
            self.error = (
                ErrorClass.PROTOCOL,
                f"server error inside the stream: {str(event.get('error'))[:300]}",
            )
        elif kind not in ("content_block_start", "content_block_stop", "ping"):
            self.error = other_api(EXPECTED + " events", event)  # an event type of its own is let pass


class MessageReader(JsonBodyReader):
    expected = EXPECTED
    __slots__ = ()

    def read(self, body: dict[str, Any], raw: bytearray, record: RequestRecord) -> Failure | None:
        content = body.get("content")
        if body.get("type") != "message" or not isinstance(content, list):
            return mismatch(EXPECTED, body, raw)
        self.answer = "".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
        record.finish_reason = body.get("stop_reason")
        tokens = Tokens()
        _usage(tokens, body.get("usage"))
        tokens.apply(record, 0, self.answer)
        return None
