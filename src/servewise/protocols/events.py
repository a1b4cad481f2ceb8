"""Readers for APIs whose answers are typed JSON events (Anthropic Messages, OpenAI Responses) or one
JSON body (rerank, images, a non-streamed answer): framing, decoding and the record's timings once, so
each API module only says what its events mean.

These APIs are not servewise's one-core hot path, so every event is decoded; times are still the
arrival of the bytes that carried the event, stamped before parsing.
"""

from __future__ import annotations

from typing import Any

from servewise.protocols.base import Failure, ResponseReader, StreamedReader, decode_object
from servewise.protocols.sse import split_payloads
from servewise.records import ErrorClass, RequestRecord, TokenSource


class Tokens:
    """What an answer's usage said; ``None`` where the server said nothing."""

    __slots__ = ("cached", "input", "output", "reasoning")

    def __init__(self) -> None:
        self.input: int | None = None
        self.output: int | None = None
        self.cached: int | None = None
        self.reasoning: int | None = None

    def apply(self, record: RequestRecord, chunks: int, text: str | None) -> None:
        """Usage wins; else the content chunks counted (an estimate, marked as one)."""
        record.input_tokens = self.input
        record.cached_tokens = self.cached
        record.reasoning_tokens = self.reasoning or None
        if self.output is not None:
            record.output_tokens, record.output_tokens_source = self.output, TokenSource.USAGE
        else:
            record.output_tokens = chunks if chunks or text is None else round(len(text) / 4)
            record.output_tokens_source = TokenSource.CHUNKS


class EventStreamReader(StreamedReader):
    """A streamed answer of typed JSON events; a subclass's ``event`` says what each one means."""

    expected = "events"
    __slots__ = ("_ended", "_rest", "_texts", "tokens")

    def __init__(self, collect_text: bool = False) -> None:
        super().__init__()
        self._rest = b""
        self._texts: list[str] | None = [] if collect_text else None
        self._ended = False
        self.tokens = Tokens()

    def feed(self, data: bytes, now: float) -> None:
        if self.error is not None:
            return
        buffer = self._rest + data if self._rest else data
        payloads, self._rest, self.error = split_payloads(buffer)
        for payload in payloads:
            if payload == b"[DONE]":
                continue
            event, self.error = decode_object(payload, self.expected)
            if event is not None:
                self.event(event, now)
            if self.error is not None:
                return

    def event(self, event: dict[str, Any], now: float) -> None:
        raise NotImplementedError

    def content(self, text: str, now: float, *, answer: bool) -> None:
        """A content-bearing event: TTFT's chunk when first; TTFA's when it is the first answer text."""
        if not text:
            return
        self.chunk_times.append(now)
        if answer:
            if self.t_answer is None:
                self.t_answer = now
            if self._texts is not None:
                self._texts.append(text)
        elif self.t_answer is None:
            self.reasoning_chunks += 1

    def end(self) -> None:
        self._ended = True

    @property
    def text(self) -> str | None:
        return None if self._texts is None else "".join(self._texts)

    def finish(self, record: RequestRecord) -> None:
        if self.error is None and self._rest.strip():
            self.feed(b"\n\n", record.t_end or 0.0)  # a last event without its blank line still counts
        if self.error is None and not (self.chunk_times or self._ended):
            self.error = (ErrorClass.PROTOCOL, f"the stream ended without {self.expected}")
        self.write_timings(record)
        self.tokens.apply(record, len(self.chunk_times), None)
        self.write_reasoning(record)


class JsonBodyReader(ResponseReader):
    """A whole JSON answer: its first byte is the one chunk (TTFT = latency to the first byte of it)."""

    expected = "JSON"
    __slots__ = ("_body", "_first", "answer")

    def __init__(self) -> None:
        super().__init__()
        self._body = bytearray()
        self._first: float | None = None
        self.answer: str | None = None

    @property
    def text(self) -> str | None:
        return self.answer

    def feed(self, data: bytes, now: float) -> None:
        if self._first is None:
            self._first = now
        self._body += data

    def finish(self, record: RequestRecord) -> None:
        body, error = decode_object(self._body, self.expected)
        if body is not None:
            record.t_first = record.t_answer = self._first
            record.chunk_times = [self._first] if self._first is not None else []
            error = self.read(body, self._body, record)
        if error is not None:
            record.error, record.error_detail = error

    def read(self, body: dict[str, Any], raw: bytearray, record: RequestRecord) -> Failure | None:
        """Fill the record from the decoded answer; the error when it is not this API's."""
        raise NotImplementedError


class CountedBodyReader(JsonBodyReader):
    """A whole answer that must carry ``wanted`` items (documents scored, images made): fewer is an error,
    not a success, since documents/s and images/s count what the server did."""

    __slots__ = ("wanted",)

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.wanted = wanted

    @staticmethod
    def no_text(record: RequestRecord) -> None:
        """The answer is scores or images: no tokens were asked for and none made, so the run's output tokens
        are a known zero and no request "stopped before max_tokens"."""
        record.output_tokens, record.output_tokens_source, record.max_tokens = 0, TokenSource.USAGE, None
