"""A log of captured requests turned into a Mooncake trace that keeps no text: counts and block ids only.

Teams that want to share what their traffic looks like (arrivals, lengths, which prompts share a prefix)
cannot share the prompts. The log read here is the one a gateway or proxy already writes: JSONL, one
captured OpenAI-style request per line (blank lines are skipped)::

    {"timestamp": "2025-06-01T12:00:00.250Z", "session_id": "u7",
     "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64},
     "response": {"usage": {"prompt_tokens": 9, "completion_tokens": 41}}}

* ``timestamp``: when the request arrived, epoch seconds (a number) or an ISO-8601 string (naive is UTC);
  ``created`` is read where ``timestamp`` is absent. Lines are sorted by it: a gateway that logs on
  completion writes them out of order.
* ``request`` (or ``body``, or the line itself when it holds the body's fields): a chat body
  (``messages``, whose ``content`` is a string or a list of parts, of which the text parts count, and
  ``tools``) or a completions body (``prompt``: a string or token ids; a batch of several prompts is
  refused: log one request per line). Images and other non-text parts are not counted.
* the output length is ``response.usage.completion_tokens``, else the request's ``max_completion_tokens``
  or ``max_tokens``, else a default. ``usage.prompt_tokens`` only measures how close the count below is.
* the session (a conversation's turns) is ``session_id`` on the line, else ``request.user``.

Prompts are counted the way the twin estimates them without a tokenizer (a word of up to 7 letters is one
token, a longer one a token per 5 letters, each other visible character one), or exactly with a
``tokenizer.json``. A chat is flattened in order: the tools, then each message as one role token and its
content, so turn k+1 of a conversation starts with all of turn k. No chat template is applied.

Each block of ``block_size`` tokens (the last may be partial) gets a chained digest, keyed with a random
salt made for this export and never written: a digest stands for its block and every block before it,
and no digest can be recomputed from a guessed text. The trace numbers the distinct digests 0, 1, 2, ...
in order of first arrival, so the same log always gives the same trace byte for byte, and ids say nothing
across files. Sessions are numbered the same way. What is written is Mooncake JSONL: ``timestamp`` in
milliseconds from the first request, ``input_length``, ``output_length``, ``hash_ids`` and, where the log
has one, an integer ``session_id``. No prompt text, model name or user id is written.

A bad line stops the conversion with one line naming the file, line and field (a ``SpecError``, exit 2).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from servewise.spec.errors import SpecError
from servewise.tokens import word_tokens
from servewise.workload import prompts

Tokenize = Callable[[str], list[str]]
"""Text to tokens, each a string: its equality is all the hashing needs."""

DEFAULT_OUTPUT_TOKENS = 256  # as the twin: what a request that logged neither usage nor max_tokens asked for
_DIGEST = 16  # bytes: 128 bits, so distinct blocks of even a billion-request log never share an id


def load_tokenizer(path: str) -> Tokenize:
    """A ``tokenizer.json`` (or a folder holding one) as a ``Tokenize``; needs the ``tokenizer`` extra."""
    tokenizer = prompts.load_tokenizer(path, "--tokenizer")

    def tokenize(text: str) -> list[str]:
        return [_id_token(i) for i in tokenizer.encode(text, add_special_tokens=False).ids]

    return tokenize


def _id_token(token_id: int) -> str:
    """A token id as a token: '#' cannot begin a word piece longer than one character, so none is equal."""
    return f"#{token_id}"


@dataclass(frozen=True, slots=True)
class MooncakeRow:
    """One request of the written trace: nothing in it but counts, times and ids."""

    timestamp_ms: int
    input_length: int
    output_length: int
    hash_ids: list[int]
    session_id: int | None

    def json_line(self) -> str:
        row: dict[str, Any] = {
            "timestamp": self.timestamp_ms,
            "input_length": self.input_length,
            "output_length": self.output_length,
            "hash_ids": self.hash_ids,
        }
        if self.session_id is not None:
            row["session_id"] = self.session_id
        return json.dumps(row, separators=(",", ":")) + "\n"


@dataclass(frozen=True, slots=True)
class ConvertedLog:
    """The trace's rows in arrival order, and where its output lengths and sessions came from."""

    rows: list[MooncakeRow]
    sessions: int
    output_from_usage: int
    output_from_max_tokens: int
    output_defaulted: int
    requests_with_prompt_usage: int
    counted_prompt_tokens: int  # this count's tokens, over the requests that logged usage.prompt_tokens
    logged_prompt_tokens: int  # what the server said those prompts held


@dataclass(frozen=True, slots=True)
class _Request:
    timestamp: float
    input_tokens: int
    output_tokens: int
    digests: bytes  # one per block, _DIGEST bytes each, joined: one object per request, not one per block
    session: str | None


class _Line:
    """One log line being read: every error it raises names the file, the line and the field."""

    def __init__(self, path: str, number: int) -> None:
        self.path = path
        self.number = number

    def error(self, field: str, why: str) -> SpecError:
        return SpecError(f"log {self.path}, line {self.number}: {field}: {why}")

    def count(self, value: Any, field: str, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "positive" if minimum > 0 else "non-negative"
            raise self.error(field, f"must be a {kind} integer, got {value!r}")
        return value


def convert_log(
    path: str,
    *,
    block_size: int,
    tokenize: Tokenize = word_tokens,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> ConvertedLog:
    """Read the whole log, check every line, and number its blocks and sessions in arrival order."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise SpecError(f"block size must be a positive integer, got {block_size!r}")
    if isinstance(output_tokens, bool) or not isinstance(output_tokens, int) or output_tokens < 1:
        raise SpecError(f"--output-tokens must be a positive integer, got {output_tokens!r}")
    reader = _Reader(path, block_size, tokenize, output_tokens)
    try:
        with open(path, encoding="utf-8-sig") as file:
            reader.read(file)
    except OSError as exc:
        raise SpecError(f"log: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SpecError(f"log {path}: not UTF-8 text") from None
    if not reader.requests:
        raise SpecError(f"log {path} has no requests")
    return reader.converted()


class _Reader:
    """Checks and counts each line as it is read; ``converted`` then sorts the requests and numbers them."""

    def __init__(self, path: str, block_size: int, tokenize: Tokenize, output_tokens: int) -> None:
        self.path = path
        self.block_size = block_size
        self.tokenize = tokenize
        self.output_tokens = output_tokens
        self.salt = os.urandom(16)  # this export's alone: a digest cannot be matched against a guessed text
        self.requests: list[_Request] = []
        self.sources = {"usage": 0, "max_tokens": 0, "default": 0}
        self.with_usage = self.counted = self.logged = 0

    def read(self, file: TextIO) -> None:
        for number, text in enumerate(file, start=1):
            if text.strip():
                self.requests.append(self._request(_Line(self.path, number), text))

    def _request(self, line: _Line, text: str) -> _Request:
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"log {line.path}, line {line.number}: not valid JSON ({exc.msg})") from None
        if not isinstance(entry, dict):
            raise SpecError(f"log {line.path}, line {line.number}: each line must be a JSON object")
        body, at = _body(line, entry)
        tokens = self._prompt(line, body, at)
        usage = _usage(line, entry)
        output = self._output(line, body, at, usage)
        if "prompt_tokens" in usage:
            self.with_usage += 1
            self.counted += len(tokens)
            self.logged += line.count(usage["prompt_tokens"], "response.usage.prompt_tokens", minimum=0)
        return _Request(
            timestamp=_timestamp(line, entry),
            input_tokens=len(tokens),
            output_tokens=output,
            digests=self._digests(tokens),
            session=_session(line, entry, body, at),
        )

    def _prompt(self, line: _Line, body: dict[str, Any], at: str) -> list[str]:
        if "messages" in body:
            field = f"{at}messages"
            tokens = self._chat(line, body, field)
        elif "prompt" in body:
            field = f"{at}prompt"
            tokens = self._completion(line, body["prompt"], field)
        else:
            raise line.error(f"{at}messages", "missing (a chat body has messages, a completions one prompt)")
        if not tokens:
            raise line.error(field, "holds no tokens")
        return tokens

    def _chat(self, line: _Line, body: dict[str, Any], field: str) -> list[str]:
        messages = body["messages"]
        if not isinstance(messages, list):
            raise line.error(field, "must be a list of messages")
        tokens: list[str] = []
        tools = body.get("tools")
        if tools:  # the engine's template writes them before the first message: a prefix every turn shares
            tokens.append("<|tools|>")
            tokens += self.tokenize(json.dumps(tools, sort_keys=True, separators=(",", ":")))
        for i, message in enumerate(messages):
            where = f"{field}[{i}]"
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise line.error(where, "must be an object with a role")
            tokens.append(f"<|{message['role']}|>")  # never a word piece nor an id token: no text equals it
            tokens += self.tokenize(_content(line, message, where))
        return tokens

    def _completion(self, line: _Line, prompt: Any, field: str) -> list[str]:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, str):
            return self.tokenize(prompt)
        if isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return [_id_token(t) for t in prompt]
        if isinstance(prompt, list) and all(isinstance(p, str | list) for p in prompt):
            raise line.error(field, f"a batch of {len(prompt)} prompts: log one request per line")
        raise line.error(field, "must be a string or a list of token ids")

    def _output(self, line: _Line, body: dict[str, Any], at: str, usage: dict[str, Any]) -> int:
        if "completion_tokens" in usage:
            self.sources["usage"] += 1
            done = line.count(usage["completion_tokens"], "response.usage.completion_tokens", minimum=0)
            return max(1, done)  # a trace request asks for at least one token
        for name in ("max_completion_tokens", "max_tokens"):
            if body.get(name) is not None:
                self.sources["max_tokens"] += 1
                return line.count(body[name], f"{at}{name}", minimum=1)
        self.sources["default"] += 1
        return self.output_tokens

    def _digests(self, tokens: list[str]) -> bytes:
        """One digest per block, each keyed with the salt and chained on the one before."""
        digests: list[bytes] = []
        parent = b""
        for start in range(0, len(tokens), self.block_size):
            block = json.dumps(tokens[start : start + self.block_size]).encode()
            parent = hashlib.blake2b(parent + block, digest_size=_DIGEST, key=self.salt).digest()
            digests.append(parent)
        return b"".join(digests)

    def converted(self) -> ConvertedLog:
        ordered = sorted(self.requests, key=lambda r: r.timestamp)  # stable: ties keep the log's order
        start = ordered[0].timestamp
        block_ids: dict[bytes, int] = {}
        session_ids: dict[str, int] = {}
        rows = []
        for r in ordered:
            chunks = (r.digests[i : i + _DIGEST] for i in range(0, len(r.digests), _DIGEST))
            ids = [block_ids.setdefault(d, len(block_ids)) for d in chunks]
            session = None if r.session is None else session_ids.setdefault(r.session, len(session_ids))
            stamp = round((r.timestamp - start) * 1000)
            rows.append(MooncakeRow(stamp, r.input_tokens, r.output_tokens, ids, session))
        return ConvertedLog(
            rows=rows,
            sessions=len(session_ids),
            output_from_usage=self.sources["usage"],
            output_from_max_tokens=self.sources["max_tokens"],
            output_defaulted=self.sources["default"],
            requests_with_prompt_usage=self.with_usage,
            counted_prompt_tokens=self.counted,
            logged_prompt_tokens=self.logged,
        )


def _content(line: _Line, message: dict[str, Any], field: str) -> str:
    """A message's text: its content (the text parts of a list), then any tool calls it made, as JSON."""
    content = message.get("content")
    if isinstance(content, list):
        text = "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    elif isinstance(content, str):
        text = content
    elif content is None:
        text = ""
    else:
        raise line.error(f"{field}.content", "must be a string, a list of parts or null")
    calls = message.get("tool_calls")
    if calls:
        text += "\n" + json.dumps(calls, sort_keys=True, separators=(",", ":"))
    return text


def _body(line: _Line, entry: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The request body, and the prefix its fields are named with: ``request.``, ``body.`` or none."""
    for key in ("request", "body"):
        if key in entry:
            if not isinstance(entry[key], dict):
                raise line.error(key, "must be an object (the captured request body)")
            return entry[key], f"{key}."
    if "messages" in entry or "prompt" in entry:
        return entry, ""
    raise line.error("request", "missing (the captured request body: messages or prompt; alias body)")


def _usage(line: _Line, entry: dict[str, Any]) -> dict[str, Any]:
    response = entry.get("response")
    if response is None:
        return {}
    if not isinstance(response, dict):
        raise line.error("response", "must be an object")
    usage = response.get("usage")
    if usage is None:
        return {}
    if not isinstance(usage, dict):
        raise line.error("response.usage", "must be an object")
    return {k: v for k, v in usage.items() if v is not None}


def _timestamp(line: _Line, entry: dict[str, Any]) -> float:
    field = "timestamp" if "timestamp" in entry else "created" if "created" in entry else None
    if field is None:
        raise line.error("timestamp", "missing (epoch seconds or an ISO-8601 string; alias created)")
    value = entry[field]
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                pass
            else:
                return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
        else:
            if math.isfinite(seconds):
                return seconds
    raise line.error(field, f"must be epoch seconds or an ISO-8601 string, got {value!r}")


def _session(line: _Line, entry: dict[str, Any], body: dict[str, Any], at: str) -> str | None:
    """The conversation a request belongs to: ``session_id`` on the line, else the body's ``user``."""
    if "session_id" in entry:
        field, value = "session_id", entry["session_id"]
    else:
        field, value = f"{at}user", body.get("user")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise line.error(field, "must be a string or an integer")
    return str(value).strip() or None
