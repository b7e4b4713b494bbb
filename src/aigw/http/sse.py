"""Incremental Server-Sent Events parsing and framing.

Upstream streams arrive in arbitrary TCP-sized pieces; `SSEParser.feed` takes each piece and returns
the complete events it finished, keeping the rest for the next piece. Only what the gateway needs of
the SSE spec is kept: `event:` and `data:` fields (multi-line data joined with newlines), comments
skipped, any of CRLF / LF / CR as line ends.

The work is linear in the bytes received, however an event is cut: a piece that cannot end an event
is set aside untouched (one search of the piece, plus two bytes either side of the seam), and the
pieces are joined once, when the event's end arrives. Re-joining and re-scanning what waits on every
read made a 50 MB event without an end cost 33 s of CPU. What waits is also capped
(`max_event_bytes`): an upstream cannot grow one event without bound.
"""

from __future__ import annotations

from typing import NamedTuple

from aigw.errors import ErrorKind, GatewayError


class SSEEvent(NamedTuple):
    event: str | None  # the `event:` name, None when absent
    data: bytes  # the `data:` payload (lines joined by b"\n")


def ends_event(data: bytes) -> bool:
    """Whether `data` holds a blank line, which ends an event. A line ends with CRLF, LF or a CR not
    followed by LF, so two line ends in a row always show as one of LF LF, LF CR or CR CR."""
    return b"\n\n" in data or (b"\r" in data and (b"\n\r" in data or b"\r\r" in data))


def event_too_large(limit: int) -> GatewayError:
    """An upstream stream event that outgrew `limit` while waiting for its end. Not retryable: the
    event's size follows from the request (a big image, a long final response), as a body's does."""
    return GatewayError(
        ErrorKind.UPSTREAM_ERROR,
        f"An upstream stream event grew past the {limit} bytes allowed (the destination's max_event_bytes).",
        code="upstream_event_too_large",
    )


class SSEParser:
    """`max_event_bytes`: the most of one event that may wait for its end (None: no limit, for
    streams the gateway made itself); past it `feed` raises the GatewayError of `event_too_large`."""

    __slots__ = ("_pending", "_held", "_max")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._pending: list[bytes] = []  # pieces of an event whose end has not arrived
        self._held = 0  # their bytes
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        pending = self._pending
        if not pending:
            return self._parse(chunk)  # the common case: what arrived starts at an event's start
        if not chunk:
            return []
        # Two bytes of the last piece: a line end split across reads, and an event deferred by
        # `_parse` for a final CR (it ends in LF CR), both show in the seam.
        if not ends_event(chunk) and not ends_event(pending[-1][-2:] + chunk[:2]):
            self._hold(chunk)
            return []
        pending.append(chunk)
        buffer = b"".join(pending)
        pending.clear()
        self._held = 0
        return self._parse(buffer)

    def flush(self) -> list[SSEEvent]:
        """Events left in a stream that ended without a final blank line."""
        if not self._pending:
            return []
        events = self.feed(b"\n\n")
        self._pending.clear()  # at most the blank line just added
        self._held = 0
        return events

    def _parse(self, buffer: bytes) -> list[SSEEvent]:
        tail_cr = False
        if b"\r" in buffer:
            # Normalise line ends, but hold back a final CR: its LF may be in the next piece.
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
        if start < len(buffer) or tail_cr:
            self._hold(buffer[start:] + b"\r" if tail_cr else buffer[start:])
        return events

    def _hold(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._held += len(piece)
        if self._max is not None and self._held > self._max:
            self._pending.clear()
            self._held = 0
            raise event_too_large(self._max)


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
