"""The seam between the router and the network: send an `UpstreamRequest`, get an `UpstreamResponse`.

`UpstreamClient` is the transport interface (tests may swap it); `aigw.http.pool` has the real one.
Implementations turn network failures into `GatewayError`s named by destination and never carrying
credentials, so nothing above the seam knows about sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import msgspec


class UpstreamRequest(msgspec.Struct):
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


class UpstreamResponse(Protocol):
    status: int
    headers: dict[str, str]  # lower-case names

    async def read(self) -> bytes: ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class UpstreamClient(Protocol):
    async def send(self, request: UpstreamRequest, *, timeout: float, destination: str) -> UpstreamResponse:
        """Send and return once the status and headers are in; the body is read by the caller.
        `timeout` bounds connecting, the wait for headers, and every later wait for body bytes."""
        ...

    async def close(self) -> None: ...
