"""A lean HTTP/1.1 server for ASGI 3 applications, on asyncio (uvloop) and httptools.

Why our own server rather than granian or uvicorn: it costs less per request and it is the only one
of the three with the hardening a gateway needs. `bench/servers.sh` runs the whole gateway app under
each, interleaved, on a 2-core machine (gateway pinned to one core, wrk and an nginx upstream on the
other; the same app and GC tuning under each, via aigw.factory). Medians of 2 runs on 2026-12-04:

    server                        JSON req/s  stream req/s  CPU µs/req JSON/stream  p50 ms @c8  RSS
    aigw's own                        12,202         9,264             78 / 104          0.71   74 MiB
    granian 2.8.9 (ASGI, 1 worker)    11,165         9,262             88 / 105          1.10  110 MiB
    uvicorn 0.55.0 (uvloop+httptools)  9,852         8,744             97 / 111          0.82   75 MiB

(8 more runs per server that day, on a busier machine: the same order, CPU 80 / 88 / 86 µs per JSON
request.) Streams cost the same under ours and granian; JSON costs ~11% less CPU under ours. On
safety (`bench/hostile.py`, each server's defaults, bench/SERVERS.md), neither granian nor uvicorn
times out a stalled request body, caps connections, refuses a request with two Host or two
Authorization headers (the app would see the last), or cancels a non-streamed upstream call when
the client leaves; uvicorn also has no header-size limit with httptools and keeps a slowloris head
open. Granian's HTTP/2 and rustls are what we give up: HTTP/2 clients are told to use HTTP/1.1
(aigw.http.http2), and TLS is Python's ssl. Re-run the comparison when either changes.

This module keeps what a gateway needs:

- one asyncio.Protocol per connection, one httptools parser, one task per request running the app;
- keep-alive by HTTP/1.1 rules, pipelined requests answered in order (reading pauses meanwhile), and
  one periodic sweep that closes idle connections, ends request bodies that stopped arriving (408:
  a gap between reads, or a total time), gives memory back after large bodies (aigw.http.process)
  and refreshes the cached `date` header;
- at most `max_connections` client connections (aigw.http.connection_limit): past it the longest
  idle one is closed, or the newcomer gets a 503 with Retry-After;
- request bodies handed to `receive()` as they arrive (reading pauses while >1 MiB waits unread),
  `Expect: 100-continue`, limits on the request head (431) and the URL (414), 400 on malformed input,
  on an HTTP/1.1 request without exactly one Host and on a repeated singleton header (two
  credentials: which one counts?), 501 on a transfer coding other than chunked;
- responses framed by content-length or chunked encoding, the head and the first body chunk in one
  write, and write flow control: `send()` waits while the client is slow to read;
- a client that goes away: `http.disconnect` from `receive()` (what cancels a forwarded stream), and,
  if its response has not begun, its request's task cancelled (aigw.http.cancel says why: a
  non-streamed upstream call nobody will read is closed, not paid for);
- ASGI lifespan, graceful shutdown on SIGTERM/SIGINT (what still runs at the end is cancelled and
  answered 503 where it can be), optional TLS.

What it does not do: HTTP/2 (a client opening with its preface gets HTTP/2's own "use HTTP/1.1"
refusal, aigw.http.http2), WebSockets or other upgrades (an `Upgrade` header is ignored), access
logs, proxy headers. Several processes on one port: aigw.http.workers runs one `serve` per worker
on sockets it binds; SIGHUP calls the app's `reload()`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

from aigw.http.cancel import BODY_TIMEOUT, CLIENT_GONE, SHUTTING_DOWN
from aigw.http.connection_limit import ConnectionLimit
from aigw.http.http2 import HTTP2_REFUSAL, PREFACE_START
from aigw.http.lifespan import Lifespan, StartupFailed, StopSignals
from aigw.http.process import HeapTrimmer, default_max_connections, raise_fd_limit, tune_gc
from aigw.http.types import ASGI_VERSION, ASGIApp

log = logging.getLogger("aigw.http.server")

_BODY_HIGH_WATER = 1 << 20  # pause reading a request body when this much waits unread
_REFUSED_LINGER = 1.0  # seconds a refused client has to read its 503 before the connection closes
_LARGE_BODY = 256 * 1024  # request bodies whose release may leave memory worth giving back
_MAX_REFUSED = 256  # refused connections left lingering at once; past this they close at once
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii")) for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_INTERNAL_ERROR_BODY = b'{"error":{"message":"Internal Server Error","type":"server_error"}}'
_FRAMING_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"connection", b"date"))
# Headers a request may carry once: two would leave which one counts to whoever reads them (a proxy in
# front may check one credential and the gateway use the other).
_SINGLETON_HEADERS = frozenset(
    (
        b"host", b"authorization", b"proxy-authorization", b"content-length", b"content-type", b"transfer-encoding",
        b"x-api-key", b"x-goog-api-key", b"api-key", b"anthropic-version", b"x-aigw-request-tags", b"expect",
    )
)  # fmt: skip
_METHODS = {m: m.decode("ascii") for m in (b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS")}


class _RejectRequest(Exception):
    """Raised inside a parser callback: answer the request with `status` and close."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _status_line(status: int) -> bytes:
    return _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status


def _address(info: Any) -> tuple[str, int] | None:
    return (info[0], info[1]) if isinstance(info, tuple) and len(info) >= 2 else None


def _decode_path(raw_path: bytes) -> str:
    path = raw_path.decode("latin-1")  # llhttp admits only ASCII in the URL
    return unquote(path) if "%" in path else path


# --- one server's shared state --------------------------------------------------------------------


class _ServerState:
    """What the connections of one listening server share: the app, limits, the open connections,
    the running request tasks, and the `date` header the sweep refreshes."""

    def __init__(
        self,
        app: ASGIApp,
        loop: asyncio.AbstractEventLoop,
        *,
        keepalive_timeout: float,
        max_head_bytes: int,
        max_url_bytes: int,
        body_read_timeout: float,
        body_timeout: float,
        max_connections: int,
        scheme: str,
        lifespan_state: dict[str, Any],
    ) -> None:
        self.app = app
        self.loop = loop
        self.keepalive_timeout = keepalive_timeout
        self.max_head_bytes = max_head_bytes
        self.max_url_bytes = max_url_bytes
        self.body_read_timeout = body_read_timeout
        self.body_timeout = body_timeout
        self.scheme = scheme
        self.lifespan_state = lifespan_state
        self.connections = ConnectionLimit(max_connections)
        self.tasks: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones
        self.heap = HeapTrimmer()
        self.closing = False
        self.date_header = b""
        self._sweep_interval = min(1.0, max(min(keepalive_timeout, body_read_timeout) / 2, 0.05))
        self._sweep_handle: asyncio.TimerHandle | None = None

    def start_sweep(self) -> None:
        self._sweep()

    def stop_sweep(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None

    def _sweep(self) -> None:
        """Once per interval: refresh the date header, close connections idle for too long (and
        refused ones that had their second to read the 503), end request bodies that stopped
        arriving, and give back memory after large bodies. One timer for the whole server, so
        nothing on a request's path arms or cancels one."""
        self.date_header = b"date: %s\r\n" % formatdate(usegmt=True).encode("ascii")
        now = self.loop.time()
        connections = self.connections
        for connection in connections.idle_since_before(now - self.keepalive_timeout):
            connection.close()
        for connection in [c for c, at in connections.refused.items() if at < now - _REFUSED_LINGER]:
            connection.close()
        for connection in list(connections.open):
            connection.check_body_deadline(now)  # type: ignore[attr-defined]
        self.heap.trim_if_due()
        self._sweep_handle = self.loop.call_later(self._sweep_interval, self._sweep)

    def error_response(self, status: int, extra_headers: bytes = b"") -> bytes:
        """A complete response for requests refused before they reach the app; the connection closes."""
        body = _status_line(status)[13:-2] or b"Error"
        return b"%s%scontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n%sconnection: close\r\n\r\n%s" % (
            _status_line(status),
            self.date_header,
            len(body),
            extra_headers,
            body,
        )

    async def drain(self, timeout: float, hurry: asyncio.Event | None = None) -> None:
        """Graceful shutdown of the connections: close the idle ones at once, let requests in flight
        finish for up to `timeout` seconds (or until `hurry` is set), then cancel what still runs
        (a request not yet answered gets a 503: from the app if it still gives one, else from here)
        and close everything."""
        self.closing = True
        for connection in list(self.connections.open) + list(self.connections.refused):
            if getattr(connection, "active", None) is None:
                connection.close()  # the rest close when their response completes (see response_complete)
        deadline = self.loop.time() + timeout
        while self.tasks and self.loop.time() < deadline and not (hurry is not None and hurry.is_set()):
            await asyncio.sleep(0.05)
        tasks = list(self.tasks)
        if tasks:
            log.warning("graceful shutdown timed out; cancelling %d request(s) in flight", len(tasks))
            for task in tasks:
                task.cancel(SHUTTING_DOWN)
            await asyncio.wait(tasks, timeout=5)
        for connection in list(self.connections.open):
            connection.close()


# --- one request and its response -----------------------------------------------------------------


class _Exchange:
    """One request on a connection and the response to it; `receive` and `send` are the app's ASGI
    callables. The request body arrives through `chunks` while the app runs."""

    __slots__ = (
        "connection",
        "scope",
        "keep_alive",
        "http10",
        "expect_continue",
        "chunks",
        "buffered",
        "complete",
        "body_delivered",
        "waiter",
        "disconnected",
        "started",
        "head",
        "wrote",
        "finished",
        "chunked",
        "app_chunked",
        "remaining",
        "bodyless",
        "task",
        "arrived",
        "last_read",
        "received",
        "cancel_reason",
    )

    def __init__(self, connection: _Connection, scope: dict[str, Any], keep_alive: bool, http10: bool, expect_continue: bool) -> None:
        self.connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self.http10 = http10
        self.expect_continue = expect_continue
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.complete = False  # the whole request message has been parsed
        self.body_delivered = False  # the app has received the final http.request message
        self.waiter: asyncio.Future | None = None
        self.disconnected = False
        self.started = False  # http.response.start received
        self.head: list[bytes] | None = None  # status line and app headers, until the first body message
        self.wrote = False  # anything of the response reached the transport
        self.finished = False  # the response is complete (or abandoned)
        self.chunked = False
        self.app_chunked = False
        self.remaining = -1  # bytes still due under the app's content-length; -1 when it set none
        self.bodyless = False  # HEAD, 1xx, 204, 304: headers only
        self.task: asyncio.Task | None = None
        self.arrived = self.last_read = 0.0  # when its turn came (see _start); the body's latest bytes
        self.received = 0  # body bytes so far
        self.cancel_reason: str | None = None  # why the server cancelled the app's task (aigw.http.cancel)

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- ASGI receive --------------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        while True:
            if self.disconnected or self.finished:
                return {"type": "http.disconnect"}
            if self.chunks:
                chunks = self.chunks
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self.buffered = 0
                self.connection.body_consumed()
                self.body_delivered = self.complete
                return {"type": "http.request", "body": body, "more_body": not self.complete}
            if self.complete:
                if not self.body_delivered:
                    self.body_delivered = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            elif self.expect_continue:
                self.expect_continue = False
                if not self.started:
                    self.connection.write(_CONTINUE)
                    self.last_read = self.connection.loop.time()  # the client's wait for the 100 is over
            waiter = self.waiter
            if waiter is None or waiter.done():
                waiter = self.waiter = self.connection.loop.create_future()
            await waiter

    # --- ASGI send -----------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        if self.disconnected:
            return  # the client is gone: nothing to send, and the app learns it from receive()
        kind = message["type"]
        if kind == "http.response.body":
            more = message.get("more_body", False)
            self.write_body(message.get("body", b""), more)
            if more and self.connection.write_paused:
                await self.connection.wait_writable()
        elif kind == "http.response.start":
            self.start(message["status"], message.get("headers", ()))
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r}")

    def start(self, status: int, headers: Any) -> None:
        if self.started:
            raise RuntimeError("http.response.start sent twice")
        head = [_status_line(status)]
        has_date = False
        for name, value in headers:
            lower = name.lower()
            if lower in _FRAMING_HEADERS:
                if lower == b"content-length":
                    self.remaining = int(value)
                elif lower == b"transfer-encoding":
                    self.app_chunked = b"chunked" in value.lower()
                elif lower == b"connection":
                    if b"close" in value.lower():
                        self.keep_alive = False
                else:
                    has_date = True
            head.append(b"%s: %s\r\n" % (name, value))
        block = b"".join(head)
        # One CR and one LF per line: a header name or value holding either would split the response.
        if block.count(b"\n") != len(head) or block.count(b"\r") != len(head):
            raise RuntimeError("invalid character in a response header")
        self.head = [block] if has_date else [block, self.connection.server.date_header]
        self.bodyless = self.scope["method"] == "HEAD" or status < 200 or status == 204 or status == 304
        self.started = True

    def write_body(self, body: bytes, more: bool) -> None:
        if self.finished or not self.started:
            raise RuntimeError("http.response.body sent before http.response.start" if not self.started else "response already complete")
        head = self.head
        if head is not None:
            self.head = None
            data = self._first_write(head, body, more)
        elif self.bodyless:
            data = b""
        elif self.chunked:
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more:
                data += _LAST_CHUNK
        else:
            data = self._checked_length(body)
        if data:
            self.wrote = True
            self.connection.write(data)
        if not more:
            if self.remaining > 0:
                self.keep_alive = False  # shorter than its content-length: only closing can end it
            self.finished = True
            self.wake()
            self.connection.response_complete(self)

    def _first_write(self, head: list[bytes], body: bytes, more: bool) -> bytes:
        """The framing headers are decided with the first body message, so a body sent whole gets a
        content-length and the head and the body leave in one write."""
        if not self.complete or self.connection.server.closing:
            self.keep_alive = False  # answered before the request body is in, or shutting down: close after
        if self.bodyless:
            if body and self.remaining < 0 and not self.app_chunked and not more:
                head.append(b"content-length: %d\r\n" % len(body))  # HEAD: what GET would have sent
            self.remaining = -1
            body = b""
        elif self.remaining >= 0:
            body = self._checked_length(body)
        elif self.app_chunked:
            self.chunked = True
        elif not more:
            head.append(b"content-length: %d\r\n" % len(body))
        elif self.http10:
            self.keep_alive = False  # no chunked encoding in HTTP/1.0: the end of the connection ends the body
        else:
            head.append(b"transfer-encoding: chunked\r\n")
            self.chunked = True
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        elif self.http10:
            head.append(b"connection: keep-alive\r\n")
        head.append(b"\r\n")
        if self.chunked:
            if body:
                head.append(b"%x\r\n%s\r\n" % (len(body), body))
            if not more:
                head.append(_LAST_CHUNK)
        elif body:
            head.append(body)
        return b"".join(head)

    def _checked_length(self, body: bytes) -> bytes:
        if self.remaining < 0:
            return body
        self.remaining -= len(body)
        if self.remaining < 0:
            raise RuntimeError("response body longer than its content-length")
        return body

    # --- the app's task ------------------------------------------------------------------------------

    def cancel(self, reason: str) -> None:
        """Cancel the app's task, once, saying why (see aigw.http.cancel)."""
        task = self.task
        if self.cancel_reason is None and task is not None and not task.done():
            self.cancel_reason = reason
            task.cancel(reason)

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.finished:
                if not self.wrote and not self.disconnected and self.connection.server.closing:
                    self.connection.write(self.connection.server.error_response(503))  # the app did not answer
                self.connection.close()
            raise
        except Exception as exc:
            self._app_failed(exc)
        else:
            if not self.finished and not self.disconnected:
                log.error("the ASGI app returned without completing the response to %s %s", self.scope["method"], self.scope["path"])
                self._app_failed(None)
        finally:
            server = self.connection.server
            server.tasks.discard(self.task)  # type: ignore[arg-type]
            if self.received >= _LARGE_BODY:
                server.heap.released(self.received)

    def _app_failed(self, exc: Exception | None) -> None:
        if exc is not None:
            log.error("exception in the ASGI app on %s %s", self.scope["method"], self.scope["path"], exc_info=exc)
        if self.disconnected or self.finished:
            return
        if self.wrote:
            self.connection.close()  # part of the response is out: only closing can end it
            return
        self.started, self.head, self.remaining, self.app_chunked = False, None, -1, False
        self.start(500, [(b"content-type", b"application/json")])
        self.write_body(_INTERNAL_ERROR_BODY, False)


# --- one connection -------------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, serves them one at a time in order."""

    __slots__ = (
        "server",
        "loop",
        "transport",
        "parser",
        "client",
        "sockname",
        "closed",
        "active",
        "queue",
        "write_paused",
        "_write_waiter",
        "_reading_paused",
        "_discarding",
        "_pending_error",
        "_parsing",
        "_url",
        "_headers",
        "_feed_len",
        "_first_feed",
        "_head_fed",
        "_in_head",
        "_expect_continue",
        "_upgrade",
    )

    def __init__(self, server: _ServerState) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.sockname: tuple[str, int] | None = None
        self.closed = False
        self.active: _Exchange | None = None  # the request being answered
        self.queue: deque[_Exchange] = deque()  # pipelined requests waiting their turn
        self.write_paused = False
        self._write_waiter: asyncio.Future | None = None
        self._reading_paused = False
        self._discarding = False  # the parser is done with this connection: drop what arrives
        self._pending_error: bytes | None = None  # an error response due once the queue is answered
        self._parsing: _Exchange | None = None  # the request whose body the parser is in
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._feed_len = 0
        self._first_feed = 0
        self._head_fed = 0  # bytes fed since the feed in which the current head began
        self._in_head = False
        self._expect_continue = False
        self._upgrade: tuple[bytes, str] | None = None  # (method, version) of a request asking to upgrade

    # --- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if server.closing:
            self.close()
            return
        if not server.connections.admit(self):
            self._refuse()
            return
        self.client = _address(transport.get_extra_info("peername"))
        self.sockname = _address(transport.get_extra_info("sockname"))
        self._idle()

    def _refuse(self) -> None:
        """Every connection is busy: a plain 503 before any request, then the end of the connection.
        What the client sends meanwhile is read and dropped for a moment, so it reads the 503 rather
        than a reset; past a few hundred such clients at once, they are closed at once."""
        connections = self.server.connections
        self._discarding = True
        self.write(self.server.error_response(503, b"retry-after: 1\r\n"))
        transport = self.transport
        if len(connections.refused) >= _MAX_REFUSED or transport is None or not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        connections.refused[self] = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.closed(self)
        active = self.active
        if active is not None:
            active.disconnected = True
            active.wake()
            if not active.wrote and not active.finished:
                active.cancel(CLIENT_GONE)  # nobody will read the answer: stop the work (an upstream call)
        self.queue.clear()
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._in_head:
            self._head_fed += len(data)
        self._feed_len = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._reparse_without_upgrade(data[exc.args[0] :])
            return
        except httptools.HttpParserCallbackError as exc:
            reason = exc.__context__
            if isinstance(reason, _RejectRequest):
                self._reject(reason.status)
            else:
                log.error("error while parsing a request", exc_info=reason)
                self._reject(400)
            return
        except httptools.HttpParserError:
            if data.startswith(PREFACE_START) and self.active is None and not self.queue:
                self._discarding = True
                self.write(HTTP2_REFUSAL)
                self.close()
                return
            self._reject(400)
            return
        if self._in_head and self._head_fed > self.server.max_head_bytes:
            self._reject(431)  # what arrived since the head began, all of it head, is already too much

    # --- httptools callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_fed = 0
        self._first_feed = self._feed_len
        self._in_head = True
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.server.max_url_bytes:
            raise _RejectRequest(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self._headers.append((name, value))
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True
        elif name == b"transfer-encoding" and value.strip().lower() != b"chunked":
            raise _RejectRequest(501)  # a transfer coding this server cannot decode (RFC 9112 6.1)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_fed + self._first_feed > self.server.max_head_bytes:  # the head may be too large
            self._check_head_size()
        parser = self.parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _RejectRequest(505)
        singletons = [name for name, _ in self._headers if name in _SINGLETON_HEADERS]
        if len(singletons) != len(set(singletons)) or (version == "1.1" and b"host" not in singletons):
            raise _RejectRequest(400)  # RFC 9112 3.2: exactly one Host; two credentials: which one counts?
        if parser.should_upgrade():
            self._upgrade = (parser.get_method(), version)
            return  # httptools stops at the end of this head: see _reparse_without_upgrade
        exchange = _Exchange(self, self._scope(version), parser.should_keep_alive(), version == "1.0", self._expect_continue)
        self._parsing = exchange
        if self.active is None and not self.server.closing:
            self._start(exchange)
        else:
            self.queue.append(exchange)
            self._update_reading()

    def _check_head_size(self) -> None:
        """The head's size is bounded, without counting on the hot path, by what was fed while it was
        parsed; when that bound passes the limit, count exactly."""
        size = len(self._url) + sum(len(name) + len(value) + 4 for name, value in self._headers)
        if size > self.server.max_head_bytes:
            raise _RejectRequest(431)

    def on_body(self, body: bytes) -> None:
        exchange = self._parsing
        if exchange is None:
            return
        exchange.chunks.append(body)
        exchange.buffered += len(body)
        exchange.received += len(body)
        exchange.last_read = self.loop.time()
        exchange.expect_continue = False  # the client sends the body anyway: no 100 is due any more
        if exchange.buffered > _BODY_HIGH_WATER and not self._reading_paused:
            self._update_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self._parsing
        if exchange is None:
            return
        self._parsing = None
        exchange.complete = True
        exchange.wake()

    def _scope(self, version: str) -> dict[str, Any]:
        method = self.parser.get_method()
        url = self._url
        if url[:1] == b"/" and b"#" not in url:
            raw_path, _, query = url.partition(b"?")
        elif url == b"*":
            raw_path, query = url, b""
        else:  # absolute form, or a fragment to drop
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise _RejectRequest(400) from None
            raw_path, query = parsed.path or b"/", parsed.query or b""
        scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": version,
            "server": self.sockname,
            "client": self.client,
            "scheme": self.server.scheme,
            "method": _METHODS.get(method) or method.decode("ascii"),
            "root_path": "",
            "path": _decode_path(raw_path),
            "raw_path": raw_path,
            "query_string": query,
            "headers": self._headers,
        }
        if self.server.lifespan_state:
            scope["state"] = self.server.lifespan_state.copy()
        return scope

    # --- serving requests in turn --------------------------------------------------------------------

    def _idle(self) -> None:
        """Nothing to do until the next request: the idle sweep may close it, a newcomer evict it."""
        self.server.connections.became_idle(self, self.loop.time())

    def _start(self, exchange: _Exchange) -> None:
        self.active = exchange
        exchange.arrived = exchange.last_read = self.loop.time()  # a pipelined body's clock starts now
        self.server.connections.became_busy(self)
        task = self.loop.create_task(exchange.run(self.server.app))
        exchange.task = task
        self.server.tasks.add(task)

    def response_complete(self, exchange: _Exchange) -> None:
        if self.closed or exchange is not self.active:
            return
        if not exchange.complete:
            self._linger()
            return
        if not exchange.keep_alive or self.server.closing:
            self.close()
            return
        self.active = None
        if self.queue:
            self._start(self.queue.popleft())
        elif self._pending_error is not None:
            self.write(self._pending_error)
            self.close()
            return
        else:
            self._idle()
        self._update_reading()

    def _linger(self) -> None:
        """The app answered without reading the whole request body. Closing now, with the body still
        arriving, would make the kernel reset the connection and the client could lose the response:
        send a FIN after the response instead, and discard what the client still sends until it closes
        (or the idle sweep closes the connection)."""
        self._discarding = True
        self.active = None
        self.queue.clear()
        transport = self.transport
        if transport is None or not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self._idle()
        self._update_reading()

    def body_consumed(self) -> None:
        if self._reading_paused:
            self._update_reading()

    def _update_reading(self) -> None:
        parsing = self._parsing
        pause = (
            bool(self.queue)
            or self._pending_error is not None
            or (parsing is not None and parsing.buffered > _BODY_HIGH_WATER and not self._discarding)
        )
        if pause == self._reading_paused or self.closed or self.transport is None or self.transport.is_closing():
            return
        self._reading_paused = pause
        if pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()
            if parsing is not None:
                parsing.last_read = self.loop.time()  # the pause was ours: the client's clock restarts

    def check_body_deadline(self, now: float) -> None:
        """From the sweep: a request body being read must keep arriving (a gap of at most
        `body_read_timeout` seconds while the server is reading) and be complete within
        `body_timeout` seconds of its head; otherwise the client gets a 408 and the connection ends.
        A slow client would otherwise hold its connection and its buffered body for ever."""
        exchange = self._parsing
        if exchange is None or exchange is not self.active or self._reading_paused or exchange.expect_continue:
            return
        server = self.server
        if now - exchange.last_read <= server.body_read_timeout and now - exchange.arrived <= server.body_timeout:
            return
        log.info("request body of %s %s timed out after %d bytes", exchange.scope["method"], exchange.scope["path"], exchange.received)
        self._discarding = True
        self._parsing = None
        if not exchange.wrote:
            exchange.disconnected = True  # the app's later sends are dropped
            exchange.wake()
            self.write(server.error_response(408))
        exchange.cancel(BODY_TIMEOUT)
        self.close()

    # --- errors and upgrades -------------------------------------------------------------------------

    def _reject(self, status: int) -> None:
        """The parser cannot accept what arrived: answer `status` once earlier requests are answered,
        then close. A request whose body broke mid-way closes the connection, which its app sees as a
        disconnect."""
        self._discarding = True
        broken = self._parsing
        self._parsing = None
        response = self.server.error_response(status)
        if broken is not None:
            if broken is not self.active:
                if broken in self.queue:
                    self.queue.remove(broken)
            else:
                if not broken.wrote:
                    broken.disconnected = True  # the app's later sends are dropped
                    broken.wake()
                    self.write(response)
                self.close()
                return
        if self.active is None:
            self.write(response)
            self.close()
        else:
            self._pending_error = response
            self._update_reading()

    def _reparse_without_upgrade(self, rest: bytes) -> None:
        """httptools stops at the head of a request asking to switch protocols, and would not hand over
        its body. No upgrade is supported, so parse the request again without its Upgrade header and
        serve it as plain HTTP/1.1, as RFC 9110 lets a server do."""
        if self._upgrade is None:
            self._reject(400)
            return
        method, version = self._upgrade
        self._upgrade = None
        if method == b"CONNECT":
            self._reject(405)
            return
        head = [b"%s %s HTTP/%s\r\n" % (method, self._url, version.encode("ascii"))]
        head += [b"%s: %s\r\n" % (name, value) for name, value in self._headers if name != b"upgrade"]
        head.append(b"\r\n")
        self.parser = httptools.HttpRequestParser(self)
        self.data_received(b"".join(head) + rest)

    # --- writing -------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def wait_writable(self) -> None:
        """Until the transport's buffer drains below its low-water mark, or the connection is lost."""
        while self.write_paused and not self.closed:
            waiter = self._write_waiter
            if waiter is None or waiter.done():
                waiter = self._write_waiter = self.loop.create_future()
            await waiter

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


# --- public API -----------------------------------------------------------------------------------


async def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    graceful_timeout: float = 10.0,
    keepalive_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    max_head_bytes: int = 64 * 1024,
    max_url_bytes: int = 16 * 1024,
    request_body_read_timeout: float = 30.0,
    request_body_timeout: float = 120.0,
    max_connections: int | None = None,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[], None] | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve `app` until `stop` is set (or, without one, until SIGTERM or SIGINT), then shut down
    gracefully. Runs the lifespan start-up before listening: raises StartupFailed if it fails, and
    OSError if the address cannot be bound. Sets `ready` and calls `on_listening` once listening
    (not before: a bind error must not follow a "listening" line). `max_connections`
    defaults to what the open-file limit leaves room for (see aigw.http.process). With `sock`, a
    listening socket bound by the caller (aigw.http.workers), `host` and `port` are not used.
    SIGHUP awaits the app's `reload()` coroutine method, if it has one (aigw.app.Gateway does)."""
    loop = asyncio.get_running_loop()
    lifespan = Lifespan(app)
    await lifespan.startup()
    tune_gc()
    state = _ServerState(
        app,
        loop,
        keepalive_timeout=keepalive_timeout,
        max_head_bytes=max_head_bytes,
        max_url_bytes=max_url_bytes,
        body_read_timeout=request_body_read_timeout,
        body_timeout=request_body_timeout,
        max_connections=max_connections or default_max_connections(),
        scheme="https" if ssl_context is not None else "http",
        lifespan_state=lifespan.state,
    )
    try:
        if sock is not None:
            listener = await loop.create_server(lambda: _Connection(state), sock=sock, ssl=ssl_context, backlog=2048)
        else:
            listener = await loop.create_server(lambda: _Connection(state), host, port, ssl=ssl_context, backlog=2048)
    except BaseException:
        await lifespan.shutdown()
        raise
    state.start_sweep()
    signals = StopSignals(loop, getattr(app, "reload", None)) if stop is None else None
    if signals is not None:
        stop = signals.stop
    if ready is not None:
        ready.set()
    if on_listening is not None:
        on_listening()
    try:
        await stop.wait()  # type: ignore[union-attr]
    finally:
        listener.close()
        try:
            await state.drain(graceful_timeout, signals.hurry if signals is not None else None)
        finally:
            state.stop_sweep()
            if signals is not None:
                signals.remove()
            await lifespan.shutdown()


def run(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    graceful_timeout: float = 10.0,
    keepalive_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    **limits: Any,
) -> None:
    """Serve `app` on uvloop until SIGTERM or SIGINT, with the open-file limit raised as far as the
    system allows; `limits` are `serve`'s (request_body_read_timeout, max_connections, ...). Exits
    with status 3 if the app's start-up fails and 1 if the address cannot be bound."""
    import uvloop

    raise_fd_limit()
    try:
        uvloop.run(
            serve(app, host, port, graceful_timeout=graceful_timeout, keepalive_timeout=keepalive_timeout, ssl_context=ssl_context, **limits)
        )
    except StartupFailed as exc:
        log.error("application start-up failed: %s", exc)
        raise SystemExit(3) from None
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass
