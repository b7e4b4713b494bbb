"""The seam between the router and the network: send an `UpstreamRequest`, get an `UpstreamResponse`.

`UpstreamClient` is the transport interface (tests may swap it); `AiohttpUpstreamClient` is the real
one: one pooled keep-alive session for the whole process. Network failures become `GatewayError`s
here, named by destination and never carrying credentials, so nothing above has to know aiohttp.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import aiohttp
import msgspec

from aigw.errors import ErrorKind, GatewayError


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


class _AiohttpResponse:
    __slots__ = ("status", "headers", "_response", "_timeout", "_destination")

    def __init__(self, response: aiohttp.ClientResponse, timeout: float, destination: str) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.headers.items()}
        self._response = response
        self._timeout = timeout
        self._destination = destination

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _network_error(exc, self._destination, self._timeout) from None
        finally:
            self._response.release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _network_error(exc, self._destination, self._timeout) from None
        finally:
            self._response.release()

    def close(self) -> None:
        self._response.close()


class AiohttpUpstreamClient:
    """One connection pool for all destinations. Create inside the running event loop."""

    def __init__(self, *, max_connections: int = 1000, keepalive_seconds: float = 60.0) -> None:
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, keepalive_timeout=keepalive_seconds, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",), cookie_jar=aiohttp.DummyCookieJar()
        )

    async def send(self, request: UpstreamRequest, *, timeout: float, destination: str) -> UpstreamResponse:
        client_timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        try:
            response = await self._session.request(
                request.method, request.url, headers=request.headers, data=request.body, timeout=client_timeout
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _network_error(exc, destination, timeout) from None
        return _AiohttpResponse(response, timeout, destination)

    async def close(self) -> None:
        await self._session.close()


def _network_error(exc: BaseException, destination: str, timeout: float) -> GatewayError:
    if isinstance(exc, asyncio.TimeoutError):
        return GatewayError(
            ErrorKind.UPSTREAM_TIMEOUT,
            f"Destination '{destination}' did not answer within {timeout:g}s.",
            retryable=True,
        )
    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError)):
        return GatewayError(
            ErrorKind.UPSTREAM_UNAVAILABLE, f"Destination '{destination}' is unreachable.", retryable=True
        )
    # A dropped connection or a malformed response: the upstream's fault, not the client's.
    return GatewayError(
        ErrorKind.UPSTREAM_ERROR,
        f"Destination '{destination}' failed: the connection was closed or the response was malformed "
        f"({type(exc).__name__}).",
        retryable=True,
    )
