"""A lean HTTP/1.1 client for upstream calls: a keep-alive connection pool on asyncio and httptools.

Why not aiohttp or httpx: a gateway's overhead is the product, and measured on the benchmark their
general-purpose client machinery (cookie jars, tracing hooks, multidicts, per-request task and
timeout objects) cost more CPU per request than everything else the gateway does. Upstream calls
need little of it: POST a body, read the status and headers, then the body whole or as it arrives.

One `_Connection` carries one request at a time. A finished response returns its connection to the
pool; a response abandoned mid-body (the client went away) closes it, which is what cancels the
upstream generation. Bodies are never decompressed: no Accept-Encoding is sent, so upstreams answer
in identity encoding and streams pass through byte for byte.

Nothing an upstream sends can hold a call or grow memory without bound (`UpstreamLimits`): the head
is capped in bytes and in headers; a streamed body is read no faster than it is relayed (reading
pauses past `_HIGH_WATER` unread); a body read whole is read at the network's pace up to the
destination's `max_body_bytes` and within its `total_timeout`, however slowly it flows; an error
status's body is read for its message only, so it is cut short rather than refused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

from aigw.errors import ErrorKind, GatewayError
from aigw.http.upstream import UpstreamLimits, UpstreamRequest

_HIGH_WATER = 1 << 20  # pause reading a streamed body when this much waits unread
# A response head past these is not an answer (an endless header section grew the process to 1 GB).
# Real ones are far smaller: OpenAI, Anthropic and Google send 15-40 headers in 1-3 KiB; Azure
# behind API Management about 40. 64 KiB is what nginx allows a request's headers by default
# (4 x 8k buffers, doubled), and the count leaves room for proxies that add their own.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 128
ERROR_BODY_BYTES = 1 << 20  # an error status's body is read for its message only: the rest is dropped


class _Target(NamedTuple):
    key: tuple[str, int, bool]  # (host, port, tls): the pool a connection belongs to
    request_line_and_host: bytes


@lru_cache(maxsize=4096)
def _target(method: str, url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"unsupported upstream URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = port == (443 if tls else 80)
    host_header = parts.hostname if default_port else f"{parts.hostname}:{port}"
    if ":" in parts.hostname and not default_port:  # IPv6 literal
        host_header = f"[{parts.hostname}]:{port}"
    line = f"{method} {path} HTTP/1.1\r\nhost: {host_header}\r\n".encode("latin-1")
    return _Target((parts.hostname, port, tls), line)


class ConnectionClosed(Exception):
    pass


class HeadTooLarge(Exception):
    """The response head went past MAX_HEAD_BYTES or MAX_HEADERS: a broken or hostile upstream."""


class BodyTooLarge(Exception):
    """A body read whole went past the destination's `max_body_bytes`."""


class _TotalTimeout(Exception):
    """A whole exchange went past the destination's `total_timeout`."""


class _BodyCut(Exception):
    """An error body reached the bytes read of it: parsing stops there (the connection is closed)."""


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the response currently arriving on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.keep_alive = False
        self.headers: dict[str, str] = {}
        self.received_any = False
        self.complete = False
        self.error: BaseException | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.head_bytes = 0
        self.header_count = 0
        self._paused = False
        self._whole = False  # the body is read whole (`read_whole`), not streamed
        self._cut = False  # ... and cut short at `_limit` (an error body) rather than refused
        self._limit = _HIGH_WATER  # buffered bytes past which on_body acts (see `_past_limit`)
        self._waiter: asyncio.Future | None = None  # woken on headers, body, completion or error

    # --- request -----------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._reset()
        assert self.transport is not None
        self.transport.write(data)

    async def wait(self, timeout: float) -> None:
        """Until something happens on this connection, or `timeout` passes (TimeoutError)."""
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def read_whole(self, limit: int, cut: bool) -> None:
        """From now on the body is read whole: at the network's pace (no pausing, since nobody
        takes chunks out), up to `limit` bytes; past them it is cut short there (`cut`) or refused
        (BodyTooLarge), without reading further. A declared length past the limit is refused at once."""
        self._whole, self._cut, self._limit = True, cut, limit
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        length = self.headers.get("content-length", "")
        if not cut and length.isdigit() and int(length) > limit:
            self._end(BodyTooLarge(f"a declared length of {length} bytes"))
        elif self.buffered > limit:  # it arrived before the reader (maybe whole, in one read)
            stop = self._past_limit()
            if stop is not None:
                self._end(stop)

    def take_chunk(self) -> bytes:
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self._paused and self.buffered < _HIGH_WATER // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # --- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._end(exc.__context__ or exc)  # what a callback raised to stop the parser
            return
        except httptools.HttpParserError as exc:
            self._end(exc)
            return
        if not self.status:  # still in the head: the parser keeps what it has of it, so bound it
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._end(HeadTooLarge(f"a response head over {MAX_HEAD_BYTES // 1024} KiB"))

    def _end(self, exc: BaseException) -> None:
        """Stop reading this response: cut short where `exc` is _BodyCut, failed otherwise."""
        if isinstance(exc, _BodyCut):
            self.complete = True
        else:
            self.error = exc
            self.chunks.clear()  # nobody will read them: give the memory back now
            self.buffered = 0
        self.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            if self.status and "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", ""):
                self.complete = True  # a body delimited by the connection's end
            else:
                self.error = exc or ConnectionClosed()
        self._wake()

    # --- httptools callbacks -------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            raise HeadTooLarge(f"more than {MAX_HEADERS} headers")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()  # only meaningful before the body is parsed
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > self._limit:
            stop = self._past_limit()
            if stop is not None:
                raise stop  # ends the parser's run: data_received hands it to `_end`
        self._wake()

    def _past_limit(self) -> Exception | None:
        """More than `_limit` bytes wait unread. A stream pauses reading until its reader catches
        up; a body read whole has reached its size: the exception that ends it."""
        if not self._whole:
            if not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            return None
        if self._cut:
            return _BodyCut()
        return BodyTooLarge(f"over {self._limit} bytes")

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()


class _Response:
    """An upstream response whose status and headers are in; the body is read through it."""

    __slots__ = ("status", "headers", "_connection", "_client", "_key", "_limits", "_deadline", "_destination", "_done")

    def __init__(
        self, connection: _Connection, client: PooledUpstreamClient, key: tuple, limits: UpstreamLimits, deadline: float, destination: str
    ) -> None:
        self.status = connection.status
        self.headers = connection.headers
        self._connection = connection
        self._client = client
        self._key = key
        self._limits = limits
        self._deadline = deadline  # loop time by which a body read whole must be in
        self._destination = destination
        self._done = False

    async def read(self) -> bytes:
        connection = self._connection
        limits = self._limits
        error_body = self.status >= 400
        limit = min(ERROR_BODY_BYTES, limits.max_body_bytes) if error_body else limits.max_body_bytes
        connection.read_whole(limit, cut=error_body)
        try:
            while not connection.complete:
                if connection.error is not None:
                    raise connection.error
                await self._wait_within_deadline()
            if connection.error is not None:  # a body complete on arrival, but over the limit
                raise connection.error
            body = b"".join(connection.chunks)
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise _network_error(exc, self._destination, limits) from None
        self._finish()
        return body[:limit] if error_body and len(body) > limit else body

    async def _wait_within_deadline(self) -> None:
        """Wait for more of the body: at most `timeout` (the body must keep flowing), and never
        past the deadline (it must also end: a body dripping a byte at a time would otherwise hold
        the call forever)."""
        timeout = self._limits.timeout
        left = self._deadline - self._connection.loop.time()
        if left <= 0:
            raise _TotalTimeout()
        if left >= timeout:
            await self._connection.wait(timeout)
            return
        try:
            await self._connection.wait(left)
        except asyncio.TimeoutError:
            raise _TotalTimeout() from None

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        try:
            while True:
                if connection.chunks:
                    yield connection.take_chunk()
                elif connection.complete:
                    break
                elif connection.error is not None:
                    raise connection.error
                else:
                    await connection.wait(self._limits.timeout)
        except Exception as exc:  # the connection's failure (network, parser, a limit): never the caller's
            self.close()
            raise _network_error(exc, self._destination, self._limits) from None
        finally:
            if not connection.complete:
                self.close()  # abandoned mid-body: closing the connection cancels the upstream
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._client._release(self._key, self._connection)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._connection.close()


class PooledUpstreamClient:
    """Keep-alive connection pools per (host, port, TLS). Create inside the running event loop."""

    def __init__(self, *, keepalive_seconds: float = 60.0, max_idle_per_host: int = 256) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle: dict[tuple, list[_Connection]] = {}
        self._keepalive = keepalive_seconds
        self._max_idle = max_idle_per_host
        self._ssl: ssl.SSLContext | None = None

    async def send(self, request: UpstreamRequest, *, limits: UpstreamLimits, destination: str) -> _Response:
        deadline = self._loop.time() + limits.total_timeout
        try:
            target = _target(request.method, request.url)
        except ValueError as exc:
            raise GatewayError(ErrorKind.UPSTREAM_ERROR, f"Destination '{destination}': {exc}") from None
        data = _serialize(target, request)
        connection = self._idle_connection(target.key)
        if connection is not None:
            try:
                return await self._exchange(connection, data, target.key, limits, deadline, destination)
            except ConnectionClosed:
                pass  # the upstream had closed the idle connection: retry once on a fresh one
        try:
            connection = await self._connect(target.key, limits.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise _network_error(exc, destination, limits, connecting=True) from None
        try:
            return await self._exchange(connection, data, target.key, limits, deadline, destination)
        except ConnectionClosed as exc:
            raise _network_error(exc, destination, limits) from None

    async def _exchange(
        self, connection: _Connection, data: bytes, key: tuple, limits: UpstreamLimits, deadline: float, destination: str
    ) -> _Response:
        """Send the request and wait for the status and headers (one wait: nothing wakes it before
        the head is complete, so `timeout` bounds the whole head however it trickles in). A reused
        connection that closes before answering anything raises ConnectionClosed so the caller may retry."""
        connection.send(data)
        try:
            while not connection.status:
                if connection.error is not None:
                    raise connection.error
                await connection.wait(limits.timeout)
        except BaseException as exc:
            stale = isinstance(exc, (ConnectionClosed, ConnectionResetError, BrokenPipeError)) and not connection.received_any
            connection.close()
            if stale:
                raise ConnectionClosed() from None
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise _network_error(exc, destination, limits) from None
        return _Response(connection, self, key, limits, deadline, destination)

    def _idle_connection(self, key: tuple) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self._keepalive:
                return connection
            connection.close()
        return None

    async def _connect(self, key: tuple, timeout: float) -> _Connection:
        host, port, tls = key
        context = None
        if tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        connect = self._loop.create_connection(
            lambda: _Connection(self._loop), host, port, ssl=context, server_hostname=host if tls else None
        )
        _, connection = await asyncio.wait_for(connect, timeout)
        return connection

    def _release(self, key: tuple, connection: _Connection) -> None:
        if connection.closed or not connection.keep_alive:
            connection.close()
            return
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _serialize(target: _Target, request: UpstreamRequest) -> bytes:
    lines = [target.request_line_and_host]
    for name, value in request.headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            continue  # never let a header value split the request
        lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    body = request.body or b""
    lines.append(b"content-length: %d\r\n\r\n" % len(body))
    lines.append(body)
    return b"".join(lines)


def _network_error(exc: BaseException, destination: str, limits: UpstreamLimits, connecting: bool = False) -> GatewayError:
    """The caller's error for a failed exchange. Timeouts and broken answers are retryable: another
    destination (or a later try) may well answer. A body over the size limit is not: its size
    follows from the request (a big embeddings batch), so a retry would pay for the same answer
    again, and counting it towards a cool-down would bench a healthy destination."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, asyncio.TimeoutError):
        return GatewayError(
            ErrorKind.UPSTREAM_TIMEOUT, f"Destination '{destination}' did not answer within {limits.timeout:g}s.", retryable=True
        )
    if isinstance(exc, _TotalTimeout):
        return GatewayError(
            ErrorKind.UPSTREAM_TIMEOUT,
            f"Destination '{destination}' did not finish its answer within {limits.total_timeout:g}s (its total_timeout).",
            retryable=True,
        )
    if isinstance(exc, BodyTooLarge):
        return GatewayError(
            ErrorKind.UPSTREAM_ERROR,
            f"Destination '{destination}' sent a response body larger than the {limits.max_body_bytes} bytes "
            f"allowed (its max_response_bytes): {exc}.",
            code="upstream_response_too_large",
        )
    if isinstance(exc, HeadTooLarge):
        return GatewayError(
            ErrorKind.UPSTREAM_ERROR, f"Destination '{destination}' sent a malformed response: {exc}.", retryable=True
        )
    if connecting:
        return GatewayError(ErrorKind.UPSTREAM_UNAVAILABLE, f"Destination '{destination}' is unreachable.", retryable=True)
    return GatewayError(
        ErrorKind.UPSTREAM_ERROR,
        f"Destination '{destination}' failed: the connection was closed or the response was malformed "
        f"({type(exc).__name__}).",
        retryable=True,
    )
