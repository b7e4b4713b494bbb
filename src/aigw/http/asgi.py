"""Minimal ASGI request/response helpers for the hot path.

Pure ASGI, no framework objects: the gateway serves a handful of routes, and every microsecond of
per-request overhead is the product. Streams are sent chunk by chunk as they arrive, never buffered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from aigw.errors import ErrorKind, GatewayError
from aigw.http.cancel import CLIENT_GONE
from aigw.http.encoding import codings, decode_body

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class ClientDisconnected(Exception):
    """The client left while its request body was arriving: there is no request to answer."""


class Request:
    """What a handler needs of an HTTP request: path, headers (lower-case str), query, body."""

    __slots__ = ("scope", "receive", "path", "method", "headers", "_query", "raw_body", "call")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.path: str = scope["path"]
        self.method: str = scope["method"]
        # Header names arrive lower-cased from the server; decode once.
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self._query: dict[str, str] | None = None
        self.raw_body = b""  # once `body()` has read it
        self.call: Any = None  # the `aigw.call.Call` this request is accounted as, once it has one

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            raw = self.scope.get("query_string") or b""
            self._query = dict(parse_qsl(raw.decode("latin-1"))) if raw else {}
        return self._query

    async def body(self, limit: int) -> bytes:
        """The whole body, refusing more than `limit` bytes (413) before reading it where the client
        declared its length, and as soon as it is exceeded otherwise."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        message = await self.receive()
        body = _body_of(message)
        if message.get("more_body"):
            parts = [body]
            size = len(body)
            while message.get("more_body"):
                message = await self.receive()
                chunk = _body_of(message)
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                parts.append(chunk)
            body = b"".join(parts)
        encoding = self.headers.get("content-encoding")
        if encoding is not None and codings(encoding):
            body = await decode_body(body, encoding, limit, _too_large(limit))
        self.raw_body = body
        return body


def _body_of(message: dict[str, Any]) -> bytes:
    if message["type"] == "http.disconnect":
        raise ClientDisconnected()  # not the end of the body: a body cut short must not be read as whole
    return message.get("body", b"")


def _too_large(limit: int) -> GatewayError:
    return GatewayError(ErrorKind.REQUEST_TOO_LARGE, f"The request body exceeds the gateway's limit of {limit} bytes.")


def header_list(headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]


async def send_body(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = JSON_HEADERS
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class EventStream:
    """An open streaming response. `start` sends the status line and headers; `write` sends a chunk
    at once. A client that goes away cancels the task producing the stream (see `run_cancellable`)."""

    __slots__ = ("_send", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def start(self, headers: list[tuple[bytes, bytes]] = SSE_HEADERS, status: int = 200) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, chunk: bytes) -> None:
        if chunk:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def close(self, last: bytes = b"") -> None:
        await self._send({"type": "http.response.body", "body": last})


async def run_cancellable(receive: Receive, work: Awaitable[None]) -> None:
    """Await `work` (which streams a response) in this task while a watcher waits for the client to
    disconnect; if it does, this task is cancelled (with aigw.http.cancel's CLIENT_GONE, so the
    request is recorded as 499), which closes the upstream connection too. The request body has
    been read before this runs, so the next ASGI message can only be the disconnect. (The gateway's
    own server cancels a request whose client left before its response began by itself.)"""
    task = asyncio.current_task()
    assert task is not None

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        task.cancel(CLIENT_GONE)

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await work
    finally:
        watcher.cancel()
