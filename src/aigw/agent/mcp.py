"""The agent loop's MCP client: config-declared MCP servers (streamable HTTP or stdio), one long-lived session each.

The SDK's transport and session contexts are anyio context managers that must be entered and exited
by the same task, so every connection has one owner task that enters them, initializes, and then
waits to be told to stop. Any other task uses the live `ClientSession` directly (requests on it may
run concurrently). A session that died (owner ended, or a request failed with a connection error)
is replaced once, by the next request, before that request fails with `McpError`.

The SDK is imported where it is first used, not with this module: importing it (its pydantic
models, its server package) costs more than the whole rest of the gateway's start-up, and most
gateways never open an MCP session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import IO, TYPE_CHECKING, Any, NamedTuple, TypeVar

import anyio
import httpx2

if TYPE_CHECKING:
    import mcp_types as types
    from mcp import ClientSession
    from mcp.shared.exceptions import MCPError

from aigw.agent.egress import EgressPolicy, checked_transport
from aigw.config import ConnectionConfig

logger = logging.getLogger("aigw.mcp")

_T = TypeVar("_T")
_MAX_TOOL_PAGES = 100  # a server whose tools/list cursor never ends cannot hang the loop
_SSE_READ_TIMEOUT = 300.0  # the HTTP read timeout: a server may hold a response stream open this long
# Transport-level failures: the connection (not the request) is broken, so a fresh session may succeed.
# What an inline server's failure says, whatever it was: the same words for a refused address, a
# closed port, a timeout or a non-MCP answer, so none of them can be told apart from outside.
OPAQUE_FAILURE = "the request failed"
_CONNECTION_ERRORS = (httpx2.TransportError, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError, EOFError)


class McpTool(NamedTuple):
    name: str
    description: str
    parameters: dict[str, Any]  # the tool's inputSchema


class ToolResult(NamedTuple):
    output: str
    is_error: bool


class McpError(Exception):
    """A connection or protocol failure talking to an MCP server. Its message never holds header values."""


class _Connection:
    """One session's lifetime: the owner task, the session once initialized, or why it failed."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()  # set once `session` or `error` is known
        self.stop = asyncio.Event()  # tells the owner task to exit its contexts
        self.session: ClientSession | None = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.session is not None and self.task is not None and not self.task.done()


class McpClient:
    """One MCP server, one long-lived session."""

    def __init__(self, config: ConnectionConfig, egress: EgressPolicy | None = None) -> None:
        """`egress`, for a server a request named (inline): its connections are checked against
        the policy, and its failures are told in a fixed message, never the server's own words
        (they could be an internal service's answer, read back through the gateway)."""
        if not config.url and not config.command:
            raise ValueError(f"MCP connection {config.name!r} needs a url or a command")
        self.config = config
        self.egress = egress
        self._conn: _Connection | None = None
        self._connect_lock = asyncio.Lock()
        self._tools: list[McpTool] | None = None

    # -- public API --------------------------------------------------------------------------

    async def list_tools(self) -> list[McpTool]:
        """The server's tools (filtered by `allowed_tools`); listed once, then cached."""
        if self._tools is None:
            listed = await self._request(self._list_all_tools)
            allowed = self.config.allowed_tools
            self._tools = [tool for tool in listed if allowed is None or tool.name in allowed]
        return list(self._tools)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Call one tool, bounded by `config.timeout`. A failing tool is a result (is_error), not an exception."""
        allowed = self.config.allowed_tools
        if allowed is not None and name not in allowed:
            return ToolResult(f"Tool {name!r} is not allowed on MCP server {self.config.name!r}", True)

        result = await self._request(lambda session: session.call_tool(name, arguments))
        return ToolResult(_result_text(result), bool(result.is_error))

    async def close(self) -> None:
        """End the session; for stdio the server process is gone once this returns."""
        async with self._connect_lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await self._stop(conn)

    # -- connection management --------------------------------------------------------------

    async def _request(self, fn: Callable[[ClientSession], Awaitable[_T]]) -> _T:
        """Run `fn(session)` on the live session; on a dead session, reconnect once and retry."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import REQUEST_TIMEOUT

        for attempt in (1, 2):
            conn = await self._connected()
            assert conn.session is not None
            try:
                return await fn(conn.session)
            except MCPError as exc:
                if exc.code == REQUEST_TIMEOUT:
                    raise McpError(self._message(f"timed out after {self.config.timeout:g}s")) from None
                if not _session_gone(exc) or attempt == 2:
                    raise McpError(self._message(str(exc))) from None
                error: BaseException = exc
            except _CONNECTION_ERRORS as exc:
                if attempt == 2:
                    raise McpError(self._message(_describe(exc))) from None
                error = exc
            except (RuntimeError, ValueError) as exc:  # a malformed or schema-violating answer (pydantic, jsonschema)
                raise McpError(self._message(f"bad response: {_describe(exc)}")) from None
            detail = self._scrub(_describe(error))
            logger.info("MCP server %r: session lost (%s); reconnecting", self.config.name, detail)
            await self._discard(conn)
        raise AssertionError("unreachable")

    async def _connected(self) -> _Connection:
        """The live connection, starting one if there is none (or the last one died)."""
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        async with self._connect_lock:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            if conn is not None:  # died on its own: reap its owner task before replacing it
                self._conn = None
                await self._stop(conn)
            conn = _Connection()
            conn.task = asyncio.create_task(self._own(conn), name=f"mcp-session:{self.config.name}")
            try:
                await asyncio.wait_for(conn.ready.wait(), self.config.timeout)
            except (TimeoutError, asyncio.CancelledError) as exc:
                await self._stop(conn)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise McpError(self._message(f"connect timed out after {self.config.timeout:g}s")) from None
            if conn.session is None:
                await self._stop(conn)
                raise McpError(self._message(f"connect failed: {_describe(conn.error)}"))
            self._conn = conn
            return conn

    async def _own(self, conn: _Connection) -> None:
        """The owner task: enters (and later exits) the transport and session contexts, in this one task."""
        from mcp import ClientSession

        try:
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                # The session's read timeout bounds every request on it: initialize, tools/list, tools/call.
                session = await stack.enter_async_context(ClientSession(read, write, self.config.timeout))
                await session.initialize()
                conn.session = session
                conn.ready.set()
                await conn.stop.wait()
        except Exception as exc:  # an ExceptionGroup too: the transports run task groups
            conn.error = exc
            if conn.session is not None and not conn.stop.is_set():
                logger.warning("MCP server %r: session ended: %s", self.config.name, self._scrub(_describe(exc)))
        finally:
            conn.ready.set()

    def _transport(self) -> AbstractAsyncContextManager[Any]:
        config = self.config
        if config.url:
            return _http_transport(config, self.egress)
        assert config.command
        from mcp import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=config.command, args=config.args, env={**os.environ, **config.env})
        return stdio_client(params, errlog=_errlog())  # type: ignore[arg-type]

    async def _discard(self, conn: _Connection) -> None:
        """Drop a connection a request found broken (unless another task already replaced it)."""
        async with self._connect_lock:
            if self._conn is conn:
                self._conn = None
        await self._stop(conn)

    async def _stop(self, conn: _Connection) -> None:
        """Signal the owner task to exit its contexts and wait for it (cancel it if it does not finish)."""
        conn.stop.set()
        task = conn.task
        if task is None or task.done():
            return
        if conn.session is not None:
            # Exiting is bounded inside the SDK (stdio: close stdin, SIGTERM, SIGKILL); allow a bit beyond that.
            done, _ = await asyncio.wait({task}, timeout=max(self.config.timeout, 10.0))
            if done:
                return
        # Still connecting (it would not look at `stop` yet), or stuck: cancel it. The SDK's exits are
        # cancellation-safe (stdio shields the shutdown that stops the server process).
        task.cancel()
        await asyncio.wait({task})

    async def _list_all_tools(self, session: ClientSession) -> list[McpTool]:
        import mcp_types as types

        tools: list[McpTool] = []
        cursor: str | None = None
        for _ in range(_MAX_TOOL_PAGES):
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            for tool in page.tools:
                schema = tool.input_schema or {"type": "object", "properties": {}}
                tools.append(McpTool(tool.name, tool.description or "", schema))
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    def _message(self, detail: str) -> str:
        if self.egress is not None:
            logger.info("inline MCP server %r: %s", self.config.name, self._scrub(detail))
            return f"MCP server {self.config.name!r}: {OPAQUE_FAILURE}"
        return f"MCP server {self.config.name!r}: {self._scrub(detail)}"

    def _scrub(self, text: str) -> str:
        """Header values are credentials: never let one into a message or a log line."""
        for value in self.config.headers.values():
            if value:
                text = text.replace(value, "***")
                # A bearer token's secret part can appear without its scheme.
                _, _, secret = value.partition(" ")
                if len(secret) >= 4:
                    text = text.replace(secret, "***")
        return text


class McpConnections:
    """The config-declared servers by name; each connected lazily, kept open, reconnected once if its session died."""

    def __init__(self, configs: list[ConnectionConfig]) -> None:
        self._clients = {config.name: McpClient(config) for config in configs}

    def get(self, name: str) -> McpClient | None:
        return self._clients.get(name)

    def reconfigured(self, configs: list[ConnectionConfig]) -> tuple[McpConnections, list[McpClient]]:
        """For a configuration reload: the new set, keeping each client whose configuration did not
        change (its session stays open), and the clients it no longer holds (for the caller to close
        once the requests using them are done)."""
        new = McpConnections([])
        for config in configs:
            old = self._clients.get(config.name)
            new._clients[config.name] = old if old is not None and old.config == config else McpClient(config)
        kept = {id(client) for client in new._clients.values()}
        return new, [client for client in self._clients.values() if id(client) not in kept]

    async def close(self) -> None:
        clients = list(self._clients.values())
        results = await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
        for client, result in zip(clients, results):
            if isinstance(result, Exception):
                logger.warning("MCP server %r: close failed: %s", client.config.name, client._scrub(_describe(result)))


# -- helpers ------------------------------------------------------------------------------------


def _session_gone(exc: MCPError) -> bool:
    """Whether an MCP error means the session (not the request) is dead, so a new one may succeed."""
    # A streamable HTTP server that no longer knows our session id (it restarted, or expired the
    # session) answers 404, which surfaces as INVALID_REQUEST "Session not found" / "Session terminated".
    from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST

    return exc.code == CONNECTION_CLOSED or (exc.code == INVALID_REQUEST and "session" in exc.message.lower())


def _result_text(result: types.CallToolResult) -> str:
    """The content as text, in order: text parts as they are, others as short placeholders.
    With no text part at all, the structured content (JSON) says more than placeholders would."""
    import mcp_types as types

    parts: list[str] = []
    has_text = False
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
            has_text = True
        elif isinstance(block, types.EmbeddedResource) and isinstance(block.resource, types.TextResourceContents):
            parts.append(block.resource.text)
            has_text = True
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource: {block.uri}]")
        else:
            parts.append(f"[{getattr(block, 'type', 'content')}]")
    if not has_text and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def _describe(exc: BaseException | None) -> str:
    """A one-line description of the innermost meaningful error (the transports wrap errors in groups)."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    if exc is None:
        return "unknown error"
    text = str(exc).strip()
    sdk_errors = sys.modules.get("mcp.shared.exceptions")  # only an SDK already in use can have raised one
    if sdk_errors is not None and isinstance(exc, sdk_errors.MCPError) and text == "Server returned an error response":
        text += " (check the URL and the credentials in headers)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@asynccontextmanager
async def _http_transport(config: ConnectionConfig, egress: EgressPolicy | None) -> AsyncIterator[Any]:
    """Streamable HTTP with our own HTTP client: it carries the configured headers and timeouts,
    and for an inline server, the egress check on every connection."""
    from mcp.client.streamable_http import streamable_http_client

    timeout = httpx2.Timeout(config.timeout, read=max(config.timeout, _SSE_READ_TIMEOUT))
    transport = checked_transport(egress) if egress is not None else None
    async with httpx2.AsyncClient(headers=config.headers, timeout=timeout, transport=transport) as http_client:
        async with streamable_http_client(config.url or "", http_client=http_client) as streams:
            yield streams


def _errlog() -> IO[str] | int:
    """Where a stdio server's stderr goes: ours if it is a real file, else nowhere (it needs a file descriptor)."""
    try:
        sys.stderr.fileno()
        return sys.stderr
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL
