"""OpenAI-compatible APIs: chat completions, completions (streamed or not) and embeddings.

The reader sees body bytes as they arrive, each call stamped with its arrival time by the transport
before any parsing. On the streamed hot path only the first content event and the events without
content (role, finish, usage) are JSON-decoded; later content events are recognised by a byte pattern,
which keeps per-chunk cost to a regex search.
"""

from __future__ import annotations

import json
import re
from typing import Any

from servewise.protocols.base import (
    Failure,
    Framing,
    ResponseReader,
    StreamedReader,
    mismatch,
    other_api,
    request_messages,
    request_text,
)
from servewise.protocols.endpoint import auth_headers
from servewise.protocols.events import JsonBodyReader
from servewise.protocols.sse import split_payloads
from servewise.records import ErrorClass, RequestRecord, TokenSource
from servewise.spec.models import Api, TargetSpec
from servewise.workload.plan import PlannedRequest

_CONTENT = re.compile(rb'"(?:content|text|reasoning_content|reasoning)"\s*:\s*"(?!")')
_ANSWER = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")')  # not reasoning: a reasoning model's answer
_ANSWER_TEXT = re.compile(rb'"(?:content|text)"\s*:\s*"((?:[^"\\]|\\.)+)"')  # the JSON string, still escaped
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"(\w+)"')
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_CHARS_PER_TOKEN = 4.0
_LENGTH_MARKER = 987_654_321


class StreamReader(StreamedReader):
    __slots__ = ("_done", "_rest", "_texts", "_usage", "_usage_tokens", "chunk_tokens")

    def __init__(self, collect_text: bool = False) -> None:
        super().__init__()
        self._rest = b""
        self._texts: list[bytes] | None = [] if collect_text else None  # escaped: decoded once, at the end
        self._usage: dict[str, Any] | None = None
        self._usage_tokens = 0
        self._done = False
        self.chunk_tokens: list[int] | None = None

    def feed(self, data: bytes, now: float) -> None:
        if self.error is not None:
            return
        if (
            not self._rest
            and data.startswith(b"data: ")
            and data.endswith(b"\n\n")
            and data.find(b"\n") == len(data) - 2
        ):
            self._payload(data[6:-2], now)  # the common case: one single-line event per read
            return
        buffer = self._rest + data if self._rest else data
        if b"\n\n" not in buffer and b"\r\n\r\n" not in buffer:
            self._rest = buffer
            return
        payloads, self._rest, self.error = split_payloads(buffer)
        for payload in payloads:
            self._payload(payload, now)
            if self.error is not None:
                return

    def _payload(self, payload: bytes, now: float) -> None:
        if payload == b"[DONE]":
            self._done = True
            return
        content = _CONTENT.search(payload) is not None
        if not content or not self.chunk_times or _USAGE.search(payload):
            self._decode(payload, content)
            if self.error is not None:
                return
        elif b'"finish_reason":"' in payload or b'"finish_reason": "' in payload:
            match = _FINISH.search(payload)
            self.finish_reason = match.group(1).decode() if match else self.finish_reason
        if content:
            self.chunk_times.append(now)
            if self._texts is not None:  # a conversation's answer: its text from the match, no JSON decode
                match = _ANSWER_TEXT.search(payload)
                if match is not None:
                    self._texts.append(match.group(1))
                if self.t_answer is None:
                    self._answered(match is not None, now)
            elif self.t_answer is None:  # one extra search per request for a model that does not reason
                self._answered(_ANSWER.search(payload) is not None, now)

    def _answered(self, answer: bool, now: float) -> None:
        """A content chunk before the first answer token: the answer starts now, or it was reasoning."""
        if answer:
            self.t_answer = now
        else:
            self.reasoning_chunks += 1

    def _decode(self, payload: bytes, content: bool) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            self.error = (ErrorClass.PROTOCOL, f"stream event is not JSON: {payload[:120]!r}")
            return
        if not isinstance(event, dict):
            self.error = (ErrorClass.PROTOCOL, f"stream event is not a JSON object: {payload[:120]!r}")
            return
        if event.get("error") and not event.get("choices"):
            self.error = (ErrorClass.PROTOCOL, f"server error inside the stream: {str(event['error'])[:300]}")
            return
        if "choices" not in event and "usage" not in event:
            # another API's event is named, once; an event of no API servewise knows is let pass, as before
            self.error = other_api("OpenAI chat or completions events", event)
            if self.error is not None:
                return
        usage = event.get("usage")
        if isinstance(usage, dict):
            tokens = usage.get("completion_tokens")
            if content and isinstance(tokens, int):
                # per-chunk usage (vLLM's continuous_usage_stats) tells how many tokens each chunk carried
                if self.chunk_tokens is None:
                    self.chunk_tokens = [1] * len(self.chunk_times)
                self.chunk_tokens.append(max(tokens - self._usage_tokens, 0))
                self._usage_tokens = tokens
            self._usage = usage
        for choice in event.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])

    @property
    def text(self) -> str | None:
        if self._texts is None:
            return None
        escaped = b'"' + b"".join(self._texts) + b'"'  # each piece was a whole JSON string: joined, still one
        try:
            return str(json.loads(escaped))
        except ValueError:  # a server's broken escape: keep the text it sent rather than lose the answer
            return escaped[1:-1].decode("utf-8", "replace")

    @property
    def done(self) -> bool:
        """The stream ended with ``data: [DONE]`` (a clean end, beside a finish_reason)."""
        return self._done

    def finish(self, record: RequestRecord) -> None:
        if self.error is None and self._rest.strip():
            # a last event without its blank line still counts (some servers end the body right after it)
            self.feed(b"\n\n", record.t_end or 0.0)
        if self.error is None and not (self.chunk_times or self._usage or self._done or self.finish_reason):
            self.error = (ErrorClass.PROTOCOL, "the stream ended without a single event")
        self.write_timings(record)
        if self.chunk_tokens is not None and len(self.chunk_tokens) == len(self.chunk_times):
            record.chunk_tokens = self.chunk_tokens
        _apply_usage(record, self._usage, len(self.chunk_times), None)
        self.write_reasoning(record)


class BodyReader(JsonBodyReader):
    """Non-streamed responses: the whole body is the one chunk."""

    expected = "OpenAI"
    __slots__ = ("_api",)

    def __init__(self, api: Api) -> None:
        super().__init__()
        self._api = api

    def read(self, body: dict[str, Any], raw: bytearray, record: RequestRecord) -> Failure | None:
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
        if self._api is Api.EMBEDDINGS:
            data = body.get("data")
            if not isinstance(data, list) or not data or not isinstance(data[0], dict) or "embedding" not in data[0]:
                return mismatch("OpenAI embeddings", body, raw)
            record.output_tokens = 0
            record.output_tokens_source = TokenSource.USAGE
            if usage and isinstance(usage.get("prompt_tokens"), int):
                record.input_tokens = usage["prompt_tokens"]
            return None
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return mismatch(f"OpenAI {self._api.value}", body, raw)
        choice = choices[0]
        record.finish_reason = choice.get("finish_reason")
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        text = str(content or choice.get("text") or "")
        self.answer = text
        _apply_usage(record, usage, None, text)
        return None


def _apply_usage(
    record: RequestRecord, usage: dict[str, Any] | None, chunks: int | None, text: str | None
) -> None:
    """Usage wins; else a character-based estimate of the text; else the chunk count (an estimate).
    Cached prompt tokens come from ``usage.prompt_tokens_details.cached_tokens`` where a server reports it."""
    if usage and isinstance(usage.get("prompt_tokens"), int):
        record.input_tokens = usage["prompt_tokens"]
    details = usage.get("prompt_tokens_details") if usage else None
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        record.cached_tokens = details["cached_tokens"]
    completion = usage.get("completion_tokens_details") if usage else None
    if isinstance(completion, dict) and isinstance(completion.get("reasoning_tokens"), int):
        record.reasoning_tokens = completion["reasoning_tokens"] or None
    if usage and isinstance(usage.get("completion_tokens"), int):
        record.output_tokens = usage["completion_tokens"]
        record.output_tokens_source = TokenSource.USAGE
    elif chunks is not None:
        record.output_tokens = chunks
        record.output_tokens_source = TokenSource.CHUNKS
    elif text is not None:
        record.output_tokens = round(len(text) / _CHARS_PER_TOKEN)
        record.output_tokens_source = TokenSource.CHUNKS


class OpenAIAdapter(Framing):
    """Builds raw HTTP/1.1 requests for one target once, so each request only adds its body.

    The one builder of OpenAI request bodies in servewise: bench, probes and coldstart all send what it
    builds. ``model=None`` leaves the field out (the server's default model answers)."""

    def __init__(self, target: TargetSpec, model: str | None, api_key: str | None) -> None:
        super().__init__(target, model, auth_headers(api_key), target.stream and target.api.streams)
        self._template = self._body_template()

    def body(self, request: PlannedRequest) -> dict[str, Any]:
        body = self.model_field()
        if self.api is Api.EMBEDDINGS:
            body["input"] = request_text(request)
            return body | self.target.extra_body
        if self.api is Api.CHAT:
            body["messages"] = request_messages(request)
        else:
            body["prompt"] = request_text(request)
        body["max_tokens"] = request.max_tokens
        if self.target.ignore_eos:
            body["ignore_eos"] = True
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body | self.target.extra_body

    def request_bytes(self, request: PlannedRequest) -> bytes:
        if request.messages is None and self._template is not None:
            before, between, after = self._template
            payload = (
                f"{before}{json.dumps(request.prompt or '')}{between}{request.max_tokens}{after}".encode()
            )
            return self.frame(payload, request)
        return self.frame_json(self.body(request), request)

    def _body_template(self) -> tuple[str, str, str] | None:
        """The body serialised once around two markers, so a request only pastes in its prompt and length
        (serialising the whole body per request cost the hot path more than the HTTP write)."""
        if self.api is Api.EMBEDDINGS:
            return None
        marker = "\x00servewise-prompt\x00"
        sample = PlannedRequest(
            index=0, prompt=marker, messages=None, input_tokens=None, max_tokens=_LENGTH_MARKER
        )
        text = json.dumps(self.body(sample), separators=(",", ":"))
        quoted = json.dumps(marker)
        if text.count(quoted) != 1 or text.count(str(_LENGTH_MARKER)) != 1:
            return None  # extra_body replaced a field: serialise each request whole
        before, rest = text.split(quoted)
        between, after = rest.split(str(_LENGTH_MARKER))
        return before, between, after

    def reader(self, collect_text: bool = False) -> ResponseReader:
        return StreamReader(collect_text) if self.stream else BodyReader(self.api)
