"""Server-sent events, read the way real servers write them.

Events end at a blank line (``\\n\\n`` or ``\\r\\n\\r\\n``); an event may carry several ``data:`` lines;
lines may be of any length (no 64 KB cap); comments (``:``) and ``event:``/``id:``/``retry:`` fields
are allowed and ignored.
"""

from __future__ import annotations

from servewise.records import ErrorClass

_FIELDS = (b"event:", b"id:", b"retry:")


class MalformedEvent(ValueError):
    """A line that is no SSE field."""


def split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete events in ``buffer`` and the unfinished rest."""
    if b"\r" in buffer:
        buffer = buffer.replace(b"\r\n", b"\n")
    events = buffer.split(b"\n\n")
    return events[:-1], events[-1]


def split_payloads(buffer: bytes) -> tuple[list[bytes], bytes, tuple[ErrorClass, str] | None]:
    """The data payloads of the complete events in ``buffer`` (data-less events dropped), the unfinished
    rest, and the protocol error a line that is no SSE field makes of the whole stream."""
    events, rest = split_events(buffer)
    try:
        return [payload for payload in map(event_data, events) if payload is not None], rest, None
    except MalformedEvent as exc:
        return [], b"", (ErrorClass.PROTOCOL, str(exc))


def event_data(event: bytes) -> bytes | None:
    """The event's data payload (``data:`` lines joined by newlines), or None for a data-less event."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[5:].strip()
    parts = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            parts.append(line[5:].strip())
        elif line and not line.startswith(b":") and not line.startswith(_FIELDS):
            raise MalformedEvent(f"not an SSE line: {line[:80]!r}")
    return b"\n".join(parts) if parts else None
