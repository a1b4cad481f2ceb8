"""Any JSON API (TGI's ``/generate``, a FastAPI app, a gateway's own route): the body is the team's
Jinja template, the answer is read by dotted JSON paths (``choices.0.text``, ``usage.output_tokens``).

Streamed, every SSE event is one JSON object read by the same paths: an event with text at
``text_path`` is a content chunk, so TTFT and ITL mean what they mean for the OpenAI APIs. A path that
finds nothing in the whole answer is named in the error: a silent zero would look like a fast server.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, StrictUndefined, Template

from servewise.protocols.base import Failure, Framing, ResponseReader, int_at, request_messages, request_text
from servewise.protocols.endpoint import auth_headers
from servewise.protocols.events import EventStreamReader, JsonBodyReader, Tokens
from servewise.records import ErrorClass, RequestRecord
from servewise.spec.models import HttpSpec, TargetSpec
from servewise.workload.plan import PlannedRequest

TIMING = (
    "TTFT: arrival of the first event with text at text_path (whole answer: its first byte); ITL: gaps between"
    " those events; E2E: the last byte; TPOT: (E2E - TTFT) / (output tokens - 1)"
)


def at_path(body: Any, path: str) -> Any:
    """The value at a dotted path (list items by number); None when any step is missing."""
    for step in path.split("."):
        if isinstance(body, dict):
            body = body.get(step)
        elif isinstance(body, list) and step.isdigit() and int(step) < len(body):
            body = body[int(step)]
        else:
            return None
    return body


def _tokens(body: Any, spec: HttpSpec, tokens: Tokens) -> None:
    if spec.output_tokens_path:
        tokens.output = int_at({"v": at_path(body, spec.output_tokens_path)}, "v") or tokens.output
    if spec.input_tokens_path:
        tokens.input = int_at({"v": at_path(body, spec.input_tokens_path)}, "v") or tokens.input


class TemplateAdapter(Framing):
    def __init__(self, target: TargetSpec, model: str | None, api_key: str | None) -> None:
        super().__init__(target, model, auth_headers(api_key), target.stream)
        assert target.http is not None, "the spec refuses api http without target.http"
        self.spec = target.http
        self._template: Template = Environment(undefined=StrictUndefined).from_string(self.spec.body)

    def payload(self, request: PlannedRequest) -> bytes:
        """The rendered body (the spec rendered the template once already, so it renders to JSON)."""
        return self._template.render(
            prompt=request_text(request), messages=request_messages(request), max_tokens=request.max_tokens,
            model=self.model, index=request.index, stream=self.stream,
        ).encode()  # fmt: skip

    def request_bytes(self, request: PlannedRequest) -> bytes:
        return self.frame(self.payload(request), request)

    def reader(self, collect_text: bool = False) -> ResponseReader:
        return TemplateStreamReader(self.spec, collect_text) if self.stream else TemplateBodyReader(self.spec)


class TemplateStreamReader(EventStreamReader):
    expected = "events with text at target.http.text_path"
    __slots__ = ("_spec",)

    def __init__(self, spec: HttpSpec, collect_text: bool) -> None:
        super().__init__(collect_text)
        self._spec = spec

    def event(self, event: dict[str, Any], now: float) -> None:
        text = at_path(event, self._spec.text_path)
        if isinstance(text, str):
            self.content(text, now, answer=True)
        _tokens(event, self._spec, self.tokens)


class TemplateBodyReader(JsonBodyReader):
    __slots__ = ("_spec",)

    def __init__(self, spec: HttpSpec) -> None:
        super().__init__()
        self._spec = spec

    def read(self, body: dict[str, Any], raw: bytearray, record: RequestRecord) -> Failure | None:
        text = at_path(body, self._spec.text_path)
        if not isinstance(text, str):
            return (
                ErrorClass.PROTOCOL,
                f"no text at {self._spec.text_path!r} in the answer: {bytes(raw[:120])!r}",
            )
        self.answer = text
        tokens = Tokens()
        _tokens(body, self._spec, tokens)
        tokens.apply(record, 0, text)
        return None
