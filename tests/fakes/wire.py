"""HTTP plumbing shared by the three fake vendors: recording, ids, SSE, faults."""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import threading
from typing import Any, Awaitable, Callable

from aiohttp import web

from .scenario import Scenario

# ------------------------------------------------------------------ recording


class Recorder:
    """Thread-safe list of the requests the fake received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []

    def add(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._items.append(item)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


RECORDER = web.AppKey("recorder", Recorder)


def _headers_dict(request: web.Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in request.headers.items():
        key = key.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


@web.middleware
async def record_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    if not request.path.startswith("/_fake/"):
        raw = await request.read()  # cached: handlers can read it again
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        item = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": _headers_dict(request),
            "json": parsed,
            "cancelled": False,  # set when the client (the gateway) went away mid-response
        }
        request.app[RECORDER].add(item)
        try:
            return await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            item["cancelled"] = True
            raise
    return await handler(request)


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body, or None when absent or malformed."""
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


# ------------------------------------------------------------------------ ids

_ALNUM = string.ascii_letters + string.digits
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def rand_id(prefix: str, length: int, alphabet: str = _ALNUM) -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def openai_id() -> str:
    return rand_id("chatcmpl-", 29)


def openai_call_id() -> str:
    return rand_id("call_", 24)


def anthropic_msg_id() -> str:
    return rand_id("msg_01", 22, _BASE58)


def anthropic_tool_id() -> str:
    return rand_id("toolu_01", 22, _BASE58)


def anthropic_request_id() -> str:
    return rand_id("req_011", 21, _BASE58)


# ----------------------------------------------------------------- responses


def dumps(obj: Any, *, indent: int | None = None, separators: tuple[str, str] = (",", ":")) -> str:
    if indent is not None:
        return json.dumps(obj, ensure_ascii=False, indent=indent)
    return json.dumps(obj, ensure_ascii=False, separators=separators)


def json_response(
    obj: Any,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    indent: int | None = None,
    content_type: str = "application/json",
) -> web.Response:
    body = dumps(obj, indent=indent).encode("utf-8")
    all_headers = {"Content-Type": content_type}
    all_headers.update(headers or {})
    return web.Response(status=status, body=body, headers=all_headers)


async def open_stream(
    request: web.Request,
    headers: dict[str, str] | None = None,
    content_type: str = "text/event-stream; charset=utf-8",
) -> web.StreamResponse:
    """Send 200 headers for a chunked streaming body."""
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = content_type
    resp.headers["Cache-Control"] = "no-cache"
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    await resp.prepare(request)
    return resp


# --------------------------------------------------------------------- faults


def abort_connection(request: web.Request, hard: bool = True) -> None:
    """Kill the TCP connection mid-response or before it: ``hard`` aborts at once
    (unsent data dropped), otherwise bytes already written are flushed first and
    the connection is then closed without finishing the HTTP response."""
    transport = request.transport
    if transport is not None:
        transport.abort() if hard else transport.close()
    protocol = request.protocol
    if protocol is not None:
        protocol.force_close()


class Dropped(Exception):
    """Raised after :func:`abort_connection`; turned into a silent no-op by the fault middleware."""


@web.middleware
async def fault_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    try:
        return await handler(request)
    except (Dropped, ConnectionResetError):
        abort_connection(request)
        # aiohttp ignores writes on a closed transport; an empty response is never sent.
        return web.Response(status=500)


ErrorFactory = Callable[[int], web.StreamResponse]


async def prelude(
    request: web.Request, scenario: Scenario, stream: bool, error: ErrorFactory
) -> web.StreamResponse | None:
    """Apply the pre-response part of a scenario.

    Returns a finished error response, raises :class:`Dropped` for ``drop`` in
    JSON mode, sleeps for ``slow``/``hang``, or returns None to go on.
    """
    if scenario.kind == "hang":
        await asyncio.sleep(3600)
    if scenario.kind == "error":
        return error(scenario.status)
    if scenario.delay:
        await asyncio.sleep(scenario.delay)
    if scenario.kind == "drop" and not stream:
        abort_connection(request)
        raise Dropped()
    return None


class Pacer:
    """Writes stream pieces, honouring ``slow`` pacing and ``drop`` (abort after two writes)."""

    def __init__(self, request: web.Request, resp: web.StreamResponse, scenario: Scenario) -> None:
        self.request = request
        self.resp = resp
        self.scenario = scenario
        self.sent = 0

    async def write(self, data: str | bytes) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self.sent and self.scenario.chunk_delay:
            await asyncio.sleep(self.scenario.chunk_delay)
        await self.resp.write(data)
        self.sent += 1
        if self.scenario.kind == "drop" and self.sent >= 2:
            abort_connection(self.request, hard=False)  # the two chunks still reach the client
            raise Dropped()

    async def finish(self) -> web.StreamResponse:
        await self.resp.write_eof()
        return self.resp
