"""OpenAI Responses (``/v1/responses``), streamed as typed events: ``response.output_text.delta`` is
answer text, ``response.reasoning_text.delta`` and ``response.reasoning_summary_text.delta`` are
reasoning, ``response.completed`` (or ``.incomplete``) carries usage.

A conversation's later turns go out the way Responses clients send them: ``previous_response_id`` of the
answer the history ends with and only the new user message, so the server holds the history (vLLM needs
``VLLM_ENABLE_RESPONSES_API_STORE=1``). The adapter remembers each conversation's latest answer and its
response id; a turn whose history does not end with that answer (a trace's own assistant text, an answer
without an id) sends the whole history instead. Keyed by conversation, not by text: a tiny model at
temperature 0 gives two conversations the same answer, and one would chain onto the other's history.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from servewise.protocols.base import (
    Failure,
    Framing,
    ResponseReader,
    int_at,
    mismatch,
    other_api,
    request_messages,
)
from servewise.protocols.endpoint import auth_headers
from servewise.protocols.events import EventStreamReader, JsonBodyReader, Tokens
from servewise.records import ErrorClass, RequestRecord
from servewise.spec.models import TargetSpec
from servewise.workload.plan import PlannedRequest

EXPECTED = "OpenAI Responses"
TIMING = (
    "TTFT: arrival of the first response.output_text.delta or reasoning delta (TTFA: the first output_text);"
    " ITL: gaps between deltas; E2E: the last byte; TPOT: (E2E - TTFT) / (usage.output_tokens - 1)"
)
_ANSWER = "response.output_text.delta"
_REASONING = ("response.reasoning_text.delta", "response.reasoning_summary_text.delta")
_DONE = ("response.completed", "response.incomplete")
Remember = Callable[[int, str, str], None]  # a conversation, its answer's text and response id
_CHAINS_KEPT = 65_536  # conversations still going; one that ended leaves its entry behind


class ResponsesAdapter(Framing):
    def __init__(self, target: TargetSpec, model: str | None, api_key: str | None) -> None:
        super().__init__(target, model, auth_headers(api_key), target.stream)
        self._latest: OrderedDict[int, tuple[str, str]] = OrderedDict()  # conversation -> (answer, its id)

    def remember(self, session: int, answer: str, response_id: str) -> None:
        self._latest[session] = (answer, response_id)
        if len(self._latest) > _CHAINS_KEPT:
            self._latest.popitem(last=False)

    def body(self, request: PlannedRequest) -> dict[str, Any]:
        body = self.model_field()
        messages = request.messages
        previous = None
        if messages and len(messages) >= 2 and messages[-2].get("role") == "assistant" and request.session is not None:
            answer, response_id = self._latest.pop(request.session, ("", ""))
            previous = response_id if response_id and answer == messages[-2].get("content") else None
        if previous is not None:
            body["previous_response_id"] = previous
            body["input"] = [request_messages(request)[-1]]
        elif messages is None:
            body["input"] = request.prompt or ""
        else:
            body["input"] = messages
        return self.generation_fields(body, "max_output_tokens", request.max_tokens)

    def request_bytes(self, request: PlannedRequest) -> bytes:
        return self.frame_json(self.body(request), request)

    def reader(self, collect_text: bool = False) -> ResponseReader:
        remember = self.remember if collect_text else None
        return ResponsesStreamReader(collect_text, remember) if self.stream else ResponseBodyReader(remember)


def _read_response(response: dict[str, Any], tokens: Tokens) -> str:
    """Usage and the finish reason from a whole response object."""
    usage = response.get("usage")
    tokens.input = int_at(usage, "input_tokens")
    tokens.output = int_at(usage, "output_tokens")
    tokens.cached = int_at(usage, "input_tokens_details", "cached_tokens")
    tokens.reasoning = int_at(usage, "output_tokens_details", "reasoning_tokens")
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return str(reason or response.get("status") or "")


def _output_text(response: dict[str, Any]) -> str | None:
    output = response.get("output")
    if not isinstance(output, list):
        return None
    parts = [
        part.get("text", "")
        for item in output
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or ()
        if isinstance(part, dict) and part.get("type") == "output_text"
    ]
    return "".join(parts)


class ResponsesStreamReader(EventStreamReader):
    expected = EXPECTED
    __slots__ = ("_remember", "response_id")

    def __init__(self, collect_text: bool, remember: Remember | None = None) -> None:
        super().__init__(collect_text)
        self._remember = remember
        self.response_id: str | None = None

    def event(self, event: dict[str, Any], now: float) -> None:
        kind = str(event.get("type", ""))
        if kind == _ANSWER or kind in _REASONING:
            delta = event.get("delta")
            if isinstance(delta, str):
                self.content(delta, now, answer=kind == _ANSWER)
            return
        response = event.get("response")
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            self.response_id = response["id"]
        if kind in _DONE and isinstance(response, dict):
            self.finish_reason = _read_response(response, self.tokens)
            self.end()
        elif kind in ("error", "response.failed"):
            error = event.get("error") or (response or {}).get("error")
            self.error = (ErrorClass.PROTOCOL, f"server error inside the stream: {str(error)[:300]}")
        elif not kind.startswith("response."):
            self.error = other_api(EXPECTED + " events", event)  # an event type of its own is let pass

    def finish(self, record: RequestRecord) -> None:
        super().finish(record)
        text = self.text
        if self._remember is not None and record.ok and text and self.response_id and record.session is not None:
            self._remember(record.session, text, self.response_id)


class ResponseBodyReader(JsonBodyReader):
    expected = EXPECTED
    __slots__ = ("_remember",)

    def __init__(self, remember: Remember | None = None) -> None:
        super().__init__()
        self._remember = remember

    def read(self, body: dict[str, Any], raw: bytearray, record: RequestRecord) -> Failure | None:
        text = _output_text(body)
        if body.get("object") != "response" or text is None:
            return mismatch(EXPECTED, body, raw)
        self.answer = text
        tokens = Tokens()
        record.finish_reason = _read_response(body, tokens)
        tokens.apply(record, 0, text)
        if self._remember is not None and text and isinstance(body.get("id"), str) and record.session is not None:
            self._remember(record.session, text, body["id"])
        return None
