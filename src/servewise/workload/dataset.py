"""JSONL datasets: one request per line, ``prompt`` or ``messages``, optionally ``output_tokens``.

ShareGPT-style lines (``conversations`` with ``from``/``value``) are read too: the first human turn is
the prompt and the first model turn's length (in words) is the output length. Replayed as sessions, a
ShareGPT or ``messages`` line is a whole conversation: every user turn in order (a system message first,
when there is one), each answer's length taken from the file's reply and its text from the live server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from servewise.spec.errors import SpecError


@dataclass(frozen=True, slots=True)
class DatasetEntry:
    prompt: str | None
    messages: list[dict[str, str]] | None
    output_tokens: int | None
    user_turns: tuple[str, ...] = ()  # the conversation's user messages, for session replay
    answer_tokens: tuple[int | None, ...] = ()  # the length (in words x 1.3) of the file's reply to each
    system: str | None = None
    tenant: str | None = None  # the line's own, for per-request headers (a tenant's quota, a priority class)
    priority: str | None = None


def _words_as_tokens(text: object) -> int | None:
    return max(1, round(len(text.split()) * 1.3)) if isinstance(text, str) else None


def _conversation(turns: list[tuple[str, object]]) -> tuple[tuple[str, ...], tuple[int | None, ...], str | None]:
    """(role, text) pairs -> user turns, the length of the reply to each, and the system message."""
    system = next((str(t) for role, t in turns if role == "system" and isinstance(t, str)), None)
    users: list[str] = []
    answers: list[int | None] = []
    for role, text in turns:
        if role == "user" and isinstance(text, str):
            users.append(text)
            answers.append(None)
        elif role == "assistant" and answers and answers[-1] is None:
            answers[-1] = _words_as_tokens(text)
    return tuple(users), tuple(answers), system


def _entry(line: dict, where: str) -> DatasetEntry:
    """A line's request and who sends it (``tenant``, ``priority``: strings or numbers, one line each)."""
    entry = _request(line, where)
    tenant, priority = (one_line(line.get(key), where, key) for key in ("tenant", "priority"))
    return entry if tenant is None and priority is None else replace(entry, tenant=tenant, priority=priority)


def one_line(value: object, where: str, key: str) -> str | None:
    """A line's ``tenant`` or ``priority`` as the header value it fills (a dataset's or a trace's)."""
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool) or "\n" in str(value) or "\r" in str(value):
        raise SpecError(f"{where}: {key} must be a one-line string or an integer")
    return str(value)


def _request(line: dict, where: str) -> DatasetEntry:
    output = line.get("output_tokens", line.get("max_tokens"))
    if output is not None and (not isinstance(output, int) or output < 1):
        raise SpecError(f"{where}: output_tokens must be a positive integer")
    if isinstance(line.get("prompt"), str):
        return DatasetEntry(prompt=line["prompt"], messages=None, output_tokens=output, user_turns=(line["prompt"],))
    if isinstance(line.get("messages"), list) and line["messages"]:
        messages = line["messages"]
        pairs = [(str(m.get("role")), m.get("content")) for m in messages if isinstance(m, dict)]
        users, answers, system = _conversation(pairs)
        return DatasetEntry(prompt=None, messages=messages, output_tokens=output, user_turns=users,
                            answer_tokens=answers, system=system)  # fmt: skip
    if isinstance(line.get("conversations"), list):
        turns = line["conversations"]
        roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
        pairs = [(roles.get(str(t.get("from")), ""), t.get("value")) for t in turns if isinstance(t, dict)]
        users, answers, system = _conversation(pairs)
        if users:
            guess = output or (answers[0] if answers else None)
            return DatasetEntry(prompt=users[0], messages=None, output_tokens=guess, user_turns=users,
                                answer_tokens=answers, system=system)  # fmt: skip
    raise SpecError(f"{where}: a line needs a 'prompt' string, a 'messages' list or ShareGPT 'conversations'")


def load_dataset(path: str) -> list[DatasetEntry]:
    """Read every line; errors name the file and line so the user can fix the data."""
    file = Path(path)
    try:
        lines = file.read_text().splitlines()
    except OSError as exc:
        raise SpecError(f"dataset: cannot read {path}: {exc.strerror}") from None
    entries = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SpecError(f"dataset {path}, line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(line, dict):
            raise SpecError(f"dataset {path}, line {number}: each line must be a JSON object")
        entries.append(_entry(line, f"dataset {path}, line {number}"))
    if not entries:
        raise SpecError(f"dataset {path} has no requests")
    return entries
