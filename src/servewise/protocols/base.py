"""What every API adapter shares: the raw HTTP/1.1 request framing, the reader interface, and the one
line that names another API's answer when a server speaks the wrong one.

An adapter builds request bytes and a fresh reader per request; the engine's transport feeds the reader
body bytes stamped with their arrival time before any parsing, so TTFT means the same for every API.
"""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import urlsplit

from servewise.protocols.endpoint import host_port, request_path
from servewise.records import ErrorClass, RequestRecord
from servewise.spec.models import Api, TargetSpec
from servewise.workload.plan import PlannedRequest

Failure = tuple[ErrorClass, str]  # why a request failed: its error class and one line naming the cause


class ResponseReader:
    """Turns one response body into the record's content timings, token counts and errors."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: Failure | None = None

    def feed(self, data: bytes, now: float) -> None:
        raise NotImplementedError

    def finish(self, record: RequestRecord) -> None:
        raise NotImplementedError

    @property
    def text(self) -> str | None:
        """The answer's text, when it was collected (a conversation's next turn carries it)."""
        return None


class StreamedReader(ResponseReader):
    """What every streamed answer records alike: each content chunk's arrival (TTFT is the first), the first
    answer chunk's (TTFA), the finish reason, and the reasoning chunks that came before the answer."""

    __slots__ = ("chunk_times", "finish_reason", "reasoning_chunks", "t_answer")

    def __init__(self) -> None:
        super().__init__()
        self.chunk_times: list[float] = []
        self.finish_reason: str | None = None
        self.t_answer: float | None = None
        self.reasoning_chunks = 0

    def write_timings(self, record: RequestRecord) -> None:
        if self.error is not None:
            record.error, record.error_detail = self.error
        record.chunk_times = self.chunk_times
        record.t_first = self.chunk_times[0] if self.chunk_times else None
        record.t_answer = self.t_answer
        record.finish_reason = self.finish_reason

    def write_reasoning(self, record: RequestRecord) -> None:
        """Reasoning chunks stand in for reasoning tokens where usage gave none."""
        if record.reasoning_tokens is None and self.reasoning_chunks:
            record.reasoning_tokens = self.reasoning_chunks


class Adapter(Protocol):
    """What the engine, probes and coldstart need from any API: where to connect, the bytes, a reader."""

    api: Api
    host: str
    port: int
    tls: bool
    path: str
    stream: bool

    def request_bytes(self, request: PlannedRequest) -> bytes: ...

    def frame(self, payload: bytes) -> bytes: ...

    def reader(self, collect_text: bool = False) -> ResponseReader: ...


class Framing:
    """Builds the request head for one target once, so each request only adds its own headers and body.

    A target header holding ``{session}``, ``{tenant}`` or ``{priority}`` is filled per request from the
    workload (session affinity, a tenant's quota, a priority class); one without is part of the head."""

    def __init__(self, target: TargetSpec, model: str | None, auth: dict[str, str], stream: bool) -> None:
        self.target = target
        self.model = model
        self.api = target.api
        self.stream = stream
        parts = urlsplit(target.url)
        self.host, self.port = host_port(target.url)
        self.tls = parts.scheme == "https"
        self.path = request_path(target)
        self._per_request = {k: v for k, v in target.headers.items() if "{" in v}
        fixed = {k: v for k, v in target.headers.items() if k not in self._per_request}
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {parts.netloc.rsplit('@', 1)[-1]}",
            "Content-Type: application/json",
            "Accept: text/event-stream" if stream else "Accept: application/json",
            "User-Agent: servewise",
        ]
        lines += [f"{name}: {value}" for name, value in (fixed | auth).items()]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self._split = len(lines[0]) + 2  # after the request line: where a request's own headers go

    def frame(self, payload: bytes, request: PlannedRequest | None = None) -> bytes:
        """The whole request around any body, even one that is not JSON (probes send malformed ones)."""
        head = self._head
        if self._per_request and request is not None:
            cut = self._split
            head = head[:cut] + own_headers(self._per_request, request) + head[cut:]
        return head + str(len(payload)).encode() + b"\r\n\r\n" + payload

    def frame_json(self, body: dict[str, Any], request: PlannedRequest) -> bytes:
        return self.frame(json.dumps(body, separators=(",", ":")).encode(), request)

    def model_field(self) -> dict[str, Any]:
        """A body's start: the model named, or left out so the server's default answers."""
        return {} if self.model is None else {"model": self.model}

    def generation_fields(self, body: dict[str, Any], length_field: str, max_tokens: int) -> dict[str, Any]:
        """A generating API's body ends alike: its length field, ``ignore_eos`` so outputs run to the planned
        length, ``stream``, and the target's ``extra_body`` last (it may replace any of them)."""
        body[length_field] = max_tokens
        if self.target.ignore_eos:
            body["ignore_eos"] = True
        if self.stream:
            body["stream"] = True
        return body | self.target.extra_body


def own_headers(templates: dict[str, str], request: PlannedRequest) -> bytes:
    """This request's filled headers; one whose value the workload does not know is left out."""
    known = {"session": request.session, "tenant": request.tenant, "priority": request.priority}
    lines = []
    for name, template in templates.items():
        try:
            value = template.format_map({k: v for k, v in known.items() if v is not None})
        except (KeyError, ValueError):
            continue
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


def messages_text(messages: list[dict[str, str]] | None) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages or ())


def request_messages(request: PlannedRequest) -> list[dict[str, str]]:
    return request.messages or [{"role": "user", "content": request.prompt or ""}]


def request_text(request: PlannedRequest) -> str:
    return request.prompt if request.prompt is not None else messages_text(request.messages)


def shape_of(body: Any) -> str | None:
    """Which API a JSON answer (or one stream event) belongs to, from the fields each API always has."""
    if not isinstance(body, dict):
        return None
    kind, obj = str(body.get("type", "")), str(body.get("object", ""))
    if obj.startswith("chat.completion") or (isinstance(body.get("choices"), list) and "delta" in str(body)):
        return "OpenAI chat completions"
    if obj == "text_completion" or isinstance(body.get("choices"), list):
        return "OpenAI completions"
    if kind.startswith("response.") or obj == "response":
        return "OpenAI Responses"
    if kind.startswith(("message", "content_block")) or kind == "ping":
        return "Anthropic Messages"
    if isinstance(body.get("results"), list):
        return "rerank"
    data = body.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "embedding" in data[0]:
            return "OpenAI embeddings"
        if "b64_json" in data[0] or "url" in data[0]:
            return "OpenAI images"
    return None


def other_api(expected: str, body: Any) -> Failure | None:
    """The one line naming another API when ``body`` is recognisably its answer, so a wrong ``--api`` is
    obvious; None when it is no API's that servewise knows."""
    found = shape_of(body)
    if found is None or expected.startswith(found):  # "Anthropic Messages events" are Anthropic Messages'
        return None
    return ErrorClass.PROTOCOL, f"the server answered with {found}, not {expected}: check --api"


def mismatch(expected: str, body: Any, raw: bytes | bytearray) -> Failure:
    """Why an answer is not ``expected``'s: another API's, named, or these bytes."""
    return other_api(expected, body) or (
        ErrorClass.PROTOCOL,
        f"not an {expected} answer: {bytes(raw[:120])!r}",
    )


def decode_object(payload: bytes | bytearray, expected: str) -> tuple[dict[str, Any] | None, Failure | None]:
    """A JSON object, or the error saying why the bytes are none."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None, (ErrorClass.PROTOCOL, f"{expected} answer is not JSON: {bytes(payload[:120])!r}")
    if not isinstance(body, dict):
        return None, (
            ErrorClass.PROTOCOL,
            f"{expected} answer is not a JSON object: {bytes(payload[:120])!r}",
        )
    return body, None


def int_at(mapping: Any, *keys: str) -> int | None:
    """An integer found by following ``keys`` through nested objects; None when any step is missing."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping if isinstance(mapping, int) and not isinstance(mapping, bool) else None
