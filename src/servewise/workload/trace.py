"""Request traces with arrival times: read, check and turned into prompts that share what the trace shares.

Two formats, told apart per file:

* **Mooncake JSONL** (the traces of Mooncake / FAST'25, also read by AIPerf and Dynamo): ``timestamp`` in
  milliseconds, ``input_length``, ``output_length`` and ``hash_ids``, one id per block of ``block_size``
  prompt tokens, in order (the last block may be partial, so a prompt has at most
  ``ceil(input_length / block_size)`` ids).
* **Plain traces**, JSONL or CSV with a header: ``timestamp`` in seconds, ``input_tokens``,
  ``output_tokens`` and an optional ``session_id``.

Either may give a line's ``tenant`` and ``priority`` (a one-line string or an integer), which fill the
``{tenant}`` and ``{priority}`` of the target's headers for that request.

Every line is checked; the first bad one stops the load with one line naming the file, the line number and
the field (a ``SpecError``, exit 2). The trace is kept in numpy arrays (hash ids flat, with row starts), so
a million requests cost tens of megabytes, not gigabytes of Python objects.
"""

from __future__ import annotations

import csv
import json
import math
from array import array
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import numpy as np
import numpy.typing as npt

from servewise.spec.errors import SpecError
from servewise.workload.dataset import one_line
from servewise.workload.prompts import PromptSynthesizer

TraceFormat = Literal["mooncake", "plain"]
DEFAULT_BLOCK_SIZE = 512

_MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")
_PLAIN_FIELDS = ("timestamp", "input_tokens", "output_tokens")
_CSV_COLUMNS = frozenset({*_PLAIN_FIELDS, "session_id", "tenant", "priority"})
_INT32_MAX = 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_M64 = (1 << 64) - 1
_TAIL_SALT = 0x6A09E667F3BCC908
_decode = json.JSONDecoder().decode  # keeps request i's unique tail apart from the block of hash id i


@dataclass(frozen=True, eq=False)
class Trace:
    """A loaded trace: request i arrives ``offsets_s[i]`` seconds after the first (already time-scaled).

    ``hash_values[hash_starts[i]:hash_starts[i + 1]]`` are request i's block ids (none in plain traces);
    ``session_ids[i]`` is a dense int per distinct session id of the file, -1 for none; ``tenant_ids[i]`` and
    ``priority_ids[i]`` index ``labels`` (-1: none), so a million lines hold a few distinct strings once.
    """

    path: str
    format: TraceFormat
    block_size: int
    offsets_s: npt.NDArray[np.float64]
    input_tokens: npt.NDArray[np.int32]
    output_tokens: npt.NDArray[np.int32]
    hash_values: npt.NDArray[np.int64]
    hash_starts: npt.NDArray[np.int64]
    session_ids: npt.NDArray[np.int32]
    tenant_ids: npt.NDArray[np.int32]
    priority_ids: npt.NDArray[np.int32]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.offsets_s)

    def hash_ids(self, i: int) -> npt.NDArray[np.int64]:
        """Request i's block ids, in prompt order (a read-only view)."""
        return self.hash_values[self.hash_starts[i] : self.hash_starts[i + 1]]

    def session_id(self, i: int) -> int | None:
        value = int(self.session_ids[i])
        return None if value < 0 else value

    def tenant(self, i: int) -> str | None:
        return self._label(self.tenant_ids[i])

    def priority(self, i: int) -> str | None:
        return self._label(self.priority_ids[i])

    def _label(self, index: np.int32) -> str | None:
        return None if index < 0 else self.labels[int(index)]

    @property
    def duration_s(self) -> float:
        return float(self.offsets_s[-1]) if len(self.offsets_s) else 0.0


def load_trace(path: str, *, time_scale: float = 1.0, block_size: int = DEFAULT_BLOCK_SIZE) -> Trace:
    """Read a Mooncake or plain trace; ``time_scale`` X replays X times faster (offsets divided by X)."""
    if isinstance(time_scale, bool) or not (
        isinstance(time_scale, int | float) and 0 < time_scale < math.inf
    ):
        raise SpecError(f"trace time scale must be a positive number, got {time_scale!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise SpecError(f"trace block size must be a positive integer, got {block_size!r}")
    builder = _Builder(path, block_size)
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            first = _first_content(file)
            if first is None:
                raise SpecError(f"trace {path} has no requests")
            number, line = first
            if path.lower().endswith(".csv") or not (
                line.lstrip().startswith("{") or path.lower().endswith((".jsonl", ".json", ".ndjson"))
            ):
                file.seek(0)
                builder.read_csv(file)
            else:
                builder.read_jsonl(number, line, file)
    except OSError as exc:
        raise SpecError(f"trace: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SpecError(f"trace {path}: not UTF-8 text") from None
    return builder.build(time_scale)


def _first_content(file: TextIO) -> tuple[int, str] | None:
    for number, line in enumerate(file, start=1):
        if line.strip():
            return number, line
    return None


def _where(path: str, number: int, field: str) -> str:
    return f"trace {path}, line {number}: {field}"


def _length(value: Any, path: str, number: int, field: str) -> int:
    """A token count: a positive integer (an integral float or a CSV cell holding one is accepted)."""
    parsed: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        parsed = value
    elif isinstance(value, float) and value.is_integer():
        parsed = int(value)
    elif isinstance(value, str):
        try:
            parsed = int(value.strip())
        except ValueError:
            try:
                as_float = float(value.strip())
            except ValueError:
                parsed = None
            else:
                parsed = int(as_float) if as_float.is_integer() else None
    if parsed is None or parsed < 1 or parsed > _INT32_MAX:
        raise SpecError(f"{_where(path, number, field)}: must be a positive integer, got {value!r}")
    return parsed


def _timestamp(value: Any, path: str, number: int) -> float:
    parsed: float | None = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            parsed = float(value.strip() if isinstance(value, str) else value)
        except (ValueError, OverflowError):
            parsed = None
    if parsed is None or not math.isfinite(parsed):
        raise SpecError(f"{_where(path, number, 'timestamp')}: must be a number, got {value!r}")
    return parsed


class _Builder:
    """Appends checked requests to compact arrays; ``build`` turns them into a ``Trace``."""

    def __init__(self, path: str, block_size: int) -> None:
        self.path = path
        self.block_size = block_size
        self.format: TraceFormat = "plain"
        self.timestamps = array("d")
        self.inputs = array("q")
        self.outputs = array("q")
        self.hash_values = array("q")
        self.hash_starts = array("q", [0])
        self.sessions = array("q")
        self._session_index: dict[str, int] = {}
        self.tenants: dict[int, int] = {}  # row -> label index, for the rows that give one (most traces: none)
        self.priorities: dict[int, int] = {}
        self._labels: dict[str, int] = {}
        self._last_ts = -math.inf
        self._names = _PLAIN_FIELDS[1:]

    def add(
        self,
        number: int,
        timestamp: Any,
        inputs: Any,
        outputs: Any,
        hash_ids: Any,
        session: Any,
        tenant: Any = None,
        priority: Any = None,
    ) -> None:
        # the common case (JSON numbers of the right kind) is checked inline: a million lines load in seconds
        if type(timestamp) is float and math.isfinite(timestamp):
            ts = timestamp
        else:
            ts = _timestamp(timestamp, self.path, number)
        if ts < self._last_ts:
            raise SpecError(
                f"{_where(self.path, number, 'timestamp')}: goes backwards ({ts:g} after {self._last_ts:g})"
            )
        if not (type(inputs) is int and 0 < inputs <= _INT32_MAX):
            inputs = _length(inputs, self.path, number, self._names[0])
        if not (type(outputs) is int and 0 < outputs <= _INT32_MAX):
            outputs = _length(outputs, self.path, number, self._names[1])
        if hash_ids is not None:
            self._add_hash_ids(number, hash_ids, inputs)
        self.timestamps.append(ts)
        self.inputs.append(inputs)
        self.outputs.append(outputs)
        self.hash_starts.append(len(self.hash_values))
        self.sessions.append(-1 if session is None else self._session(number, session))
        if tenant is not None:
            self.tenants[len(self.sessions) - 1] = self._label(number, "tenant", tenant)
        if priority is not None:
            self.priorities[len(self.sessions) - 1] = self._label(number, "priority", priority)
        self._last_ts = ts

    def _label(self, number: int, field: str, value: Any) -> int:
        """An index into the trace's labels; -1 for a blank CSV cell."""
        text = one_line(value.strip() if isinstance(value, str) else value, f"trace {self.path}, line {number}", field)
        return _dense(self._labels, text or "")

    def _add_hash_ids(self, number: int, hash_ids: Any, n_in: int) -> None:
        where = _where(self.path, number, "hash_ids")
        if not isinstance(hash_ids, list) or not all(
            isinstance(h, int) and not isinstance(h, bool) and _INT64_MIN <= h <= _INT64_MAX for h in hash_ids
        ):
            raise SpecError(f"{where}: must be a list of integers")
        blocks = -(-n_in // self.block_size)
        if len(hash_ids) > blocks:
            raise SpecError(
                f"{where}: {len(hash_ids)} ids, but input_length {n_in} has only {blocks} block(s) of "
                f"{self.block_size} tokens (--block-size)"
            )
        self.hash_values.extend(hash_ids)

    def _session(self, number: int, value: Any) -> int:
        """A dense int per distinct session id (``"7"`` and ``7`` are one); -1 for none or a blank cell."""
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise SpecError(f"{_where(self.path, number, 'session_id')}: must be a string or an integer")
        return _dense(self._session_index, value.strip() if isinstance(value, str) else str(value))

    def read_jsonl(self, number: int, line: str, rest: TextIO) -> None:
        first = self._object(number, line)
        if "input_length" in first or "hash_ids" in first:
            self.format = "mooncake"
        elif "input_tokens" not in first:
            raise SpecError(
                f"{_where(self.path, number, 'input_length')}: missing (a Mooncake line has timestamp, "
                "input_length, output_length, hash_ids; a plain one timestamp, input_tokens, output_tokens)"
            )
        mooncake = self.format == "mooncake"
        fields = _MOONCAKE_FIELDS if mooncake else _PLAIN_FIELDS
        self._names = fields[1:]
        ts_key, in_key, out_key = fields
        add, path = self.add, self.path

        def row(n: int, obj: dict[str, Any]) -> None:
            try:
                ts, n_in, n_out = obj[ts_key], obj[in_key], obj[out_key]
            except KeyError as exc:
                raise SpecError(f"{_where(path, n, str(exc.args[0]))}: missing") from None
            hash_ids = obj.get("hash_ids") if mooncake else None
            add(n, ts, n_in, n_out, hash_ids, obj.get("session_id"), obj.get("tenant"), obj.get("priority"))

        row(number, first)
        for n, line in enumerate(rest, start=number + 1):
            if not line.isspace():
                row(n, self._object(n, line))

    def _object(self, number: int, line: str) -> dict[str, Any]:
        """Decode one line, or raise the one-line error saying why it is not a JSON object."""
        try:
            obj = _decode(line)
        except json.JSONDecodeError as exc:
            raise SpecError(f"trace {self.path}, line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise SpecError(f"trace {self.path}, line {number}: each line must be a JSON object")
        return obj

    def read_csv(self, file: TextIO) -> None:
        reader = csv.reader(file)
        header: list[str] | None = None
        for row in reader:
            if row and any(cell.strip() for cell in row):
                header = [cell.strip() for cell in row]
                break
        if header is None:
            raise SpecError(f"trace {self.path} has no requests")
        header_line = reader.line_num
        for column in header:
            if column not in _CSV_COLUMNS:
                raise SpecError(
                    f"{_where(self.path, header_line, repr(column))}: unknown CSV column (a plain trace has "
                    "timestamp, input_tokens, output_tokens and optionally session_id, tenant, priority)"
                )
        for field in _PLAIN_FIELDS:
            if field not in header:
                raise SpecError(f"{_where(self.path, header_line, field)}: missing CSV column")
        ts_at, in_at, out_at = (header.index(f) for f in _PLAIN_FIELDS)
        session_at, tenant_at, priority_at = (
            header.index(name) if name in header else None for name in ("session_id", "tenant", "priority")
        )
        width = len(header)
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            number = reader.line_num
            if len(row) != width:
                raise SpecError(
                    f"trace {self.path}, line {number}: {len(row)} fields where the header has {width}"
                )
            self.add(
                number,
                row[ts_at],
                row[in_at],
                row[out_at],
                None,
                row[session_at] if session_at is not None else None,
                row[tenant_at] if tenant_at is not None else None,
                row[priority_at] if priority_at is not None else None,
            )

    def _label_ids(self, rows: dict[int, int]) -> npt.NDArray[np.int32]:
        ids = np.full(len(self.timestamps), -1, dtype=np.int32)
        ids[list(rows)] = list(rows.values())
        return ids

    def build(self, time_scale: float) -> Trace:
        if not self.timestamps:
            raise SpecError(f"trace {self.path} has no requests")
        stamps = np.frombuffer(self.timestamps, dtype=np.float64)
        unit = 1000.0 if self.format == "mooncake" else 1.0  # Mooncake stamps are milliseconds
        offsets = (stamps - stamps[0]) / (unit * time_scale)
        return Trace(
            path=self.path,
            format=self.format,
            block_size=self.block_size,
            offsets_s=_frozen(offsets),
            input_tokens=_frozen(np.frombuffer(self.inputs, dtype=np.int64).astype(np.int32)),
            output_tokens=_frozen(np.frombuffer(self.outputs, dtype=np.int64).astype(np.int32)),
            hash_values=_frozen(np.frombuffer(self.hash_values, dtype=np.int64)),
            hash_starts=_frozen(np.frombuffer(self.hash_starts, dtype=np.int64)),
            session_ids=_frozen(np.frombuffer(self.sessions, dtype=np.int64).astype(np.int32)),
            tenant_ids=_frozen(self._label_ids(self.tenants)),
            priority_ids=_frozen(self._label_ids(self.priorities)),
            labels=tuple(self._labels),
        )


def _dense(index: dict[str, int], key: str) -> int:
    """``key``'s number in the order keys were first seen; -1 for a blank one."""
    if not key:
        return -1
    number = index.get(key)
    if number is None:
        number = index[key] = len(index)
    return number


def _frozen(values: Any) -> Any:
    values.flags.writeable = False
    return values


def _mix(x: int) -> int:
    """splitmix64's finaliser: a fixed, well-spread 63-bit non-negative int for any int."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return (x ^ (x >> 31)) >> 1


def block_offset(hash_id: int) -> int:
    """Where in the synthesizer's text the block of ``hash_id`` starts: a function of the id alone."""
    return _mix(hash_id)


def tail_offset(index: int) -> int:
    """Where request ``index``'s unique text starts (its tail, or the whole prompt without hash ids)."""
    return _mix(index ^ _TAIL_SALT)


def _blocks(trace: Trace, i: int) -> Iterator[tuple[int, int]]:
    """(hash id, tokens) per block of request i; the last block holds what is left of the prompt."""
    left = int(trace.input_tokens[i])
    for h in trace.hash_ids(i).tolist():
        n = min(trace.block_size, left)
        if n <= 0:
            return
        yield h, n
        left -= n


def _uncovered(trace: Trace, i: int) -> int:
    covered = min(len(trace.hash_ids(i)) * trace.block_size, int(trace.input_tokens[i]))
    return int(trace.input_tokens[i]) - covered


def trace_prompt(synth: PromptSynthesizer, trace: Trace, i: int) -> str:
    """Request i's prompt: one text per hash id (the same id, the same text), then a unique tail.

    Blocks are joined with one space, so two requests with the same leading ids share exactly that text.
    """
    parts = [synth.prompt(n, block_offset(h)) for h, n in _blocks(trace, i)]
    tail = _uncovered(trace, i)
    if tail > 0:
        parts.append(synth.prompt(tail, tail_offset(i)))
    return " ".join(parts)


def trace_segments(trace: Trace, i: int) -> list[tuple[Hashable, int]]:
    """Request i's prompt as (key, tokens) segments, for the workload's theoretical prefix hit rate.

    Mooncake's hash ids are rolling hashes: each id stands for its block *and* every block before it
    (Dynamo's ``texts_to_hashes`` hashes ``(parent_hash, block_tokens)`` and numbers the distinct results;
    ``RollingHashIdMapper``: "identical prefixes across requests resolve to identical leading hash_ids"),
    so the id alone would do for such traces. The key here is still a hash of the whole chain of
    (id, tokens) up to the block, so a hand-written trace that reuses an id after a different prefix, or
    with a different block length, is counted the way a prefix cache would see it: as a miss, whether or
    not the consumer chains keys itself (``analysis.cache.PrefixReuse`` does; chaining chains is harmless).
    The uncovered tail is one segment no other request shares.
    """
    segments: list[tuple[Hashable, int]] = []
    key = 0
    for h, n in _blocks(trace, i):
        key = hash((key, h, n))
        segments.append((key, n))
    tail = _uncovered(trace, i)
    if tail > 0:
        segments.append((None, tail))  # shared by no other request: counted, never remembered
    return segments
