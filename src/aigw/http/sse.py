"""Incremental Server-Sent Events parsing and framing.

Upstream streams arrive in arbitrary TCP-sized pieces; `SSEParser.feed` takes each piece and returns
the complete events it finished, keeping the rest for the next piece. Only what the gateway needs of
the SSE spec is kept: `event:` and `data:` fields (multi-line data joined with newlines), comments
skipped, any of CRLF / LF / CR as line ends.
"""

from __future__ import annotations

from typing import NamedTuple


class SSEEvent(NamedTuple):
    event: str | None  # the `event:` name, None when absent
    data: bytes  # the `data:` payload (lines joined by b"\n")


class SSEParser:
    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            # Normalise line ends, but keep a trailing lone CR: its LF may be in the next chunk.
            tail_cr = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if tail_cr:
                buffer = buffer[:-1]
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            event = _parse_block(buffer[start:end])
            if event is not None:
                events.append(event)
            start = end + 2
        self._buffer = buffer[start:] + (b"\r" if b"\r" in chunk[-1:] else b"")
        return events

    def flush(self) -> list[SSEEvent]:
        """Events left in a stream that ended without a final blank line."""
        rest, self._buffer = self._buffer.strip(b"\r\n"), b""
        event = _parse_block(rest) if rest else None
        return [event] if event is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and b"\n" not in block:  # the common case: one data line
        return SSEEvent(None, block[6:])
    name: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode()
    if not data and name is None:
        return None
    return SSEEvent(name, b"\n".join(data))


def sse_frame(data: bytes, event: str | None = None) -> bytes:
    """One SSE event, framed. `data` must not contain newlines (compact JSON never does)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
