"""JSONL datasets: one request per line, ``prompt`` or ``messages``, optionally ``output_tokens``.

ShareGPT-style lines (``conversations`` with ``from``/``value``) are read too: the first human turn is
the prompt and the first model turn's length (in words) is the output length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from servewise.spec.errors import SpecError


@dataclass(frozen=True, slots=True)
class DatasetEntry:
    prompt: str | None
    messages: list[dict[str, str]] | None
    output_tokens: int | None


def _entry(line: dict, where: str) -> DatasetEntry:
    output = line.get("output_tokens", line.get("max_tokens"))
    if output is not None and (not isinstance(output, int) or output < 1):
        raise SpecError(f"{where}: output_tokens must be a positive integer")
    if isinstance(line.get("prompt"), str):
        return DatasetEntry(prompt=line["prompt"], messages=None, output_tokens=output)
    if isinstance(line.get("messages"), list) and line["messages"]:
        return DatasetEntry(prompt=None, messages=line["messages"], output_tokens=output)
    if isinstance(line.get("conversations"), list):
        turns = line["conversations"]
        human = next((t.get("value") for t in turns if t.get("from") in ("human", "user")), None)
        model = next((t.get("value") for t in turns if t.get("from") in ("gpt", "assistant")), None)
        if isinstance(human, str):
            guess = output or (max(1, round(len(model.split()) * 1.3)) if isinstance(model, str) else None)
            return DatasetEntry(prompt=human, messages=None, output_tokens=guess)
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
