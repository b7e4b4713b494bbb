"""The seam between the router and the network: send an `UpstreamRequest`, get an `UpstreamResponse`.

`UpstreamClient` is the transport interface (tests may swap it); `aigw.http.pool` has the real one.
Implementations turn network failures into `GatewayError`s named by destination and never carrying
credentials, so nothing above the seam knows about sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple, Protocol

import msgspec


class UpstreamRequest(msgspec.Struct):
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


class UpstreamLimits(NamedTuple):
    """What one destination may take: its answers are bounded in time and size, so nothing an
    upstream sends (or fails to send) can hold a call or the gateway's memory forever."""

    timeout: float  # connecting, the response head, and every wait for more body bytes
    total_timeout: float  # a whole exchange whose body is read at once (`read`), head to last byte
    max_body_bytes: int  # a body read at once; streams are bounded per event instead (aigw.http.sse)


class UpstreamResponse(Protocol):
    status: int
    headers: dict[str, str]  # lower-case names

    async def read(self) -> bytes:
        """The whole body. Bounded by `UpstreamLimits.total_timeout` (counted from `send`) and
        `max_body_bytes`; an error status's body is cut short instead, since only its message is read."""
        ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class UpstreamClient(Protocol):
    async def send(self, request: UpstreamRequest, *, limits: UpstreamLimits, destination: str) -> UpstreamResponse:
        """Send and return once the status and headers are in; the body is read by the caller.
        `limits.timeout` bounds connecting, the wait for the head, and every later wait for body bytes."""
        ...

    async def close(self) -> None: ...
