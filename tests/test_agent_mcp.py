"""The agent loop's MCP client against a real MCP server (tests/fakes/mcp_server.py), over streamable HTTP and stdio."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import mcp_types as types
import pytest
import uvloop

from aigw.agent.mcp import McpClient, McpConnections, McpError, ToolResult, _result_text
from aigw.config import ConnectionConfig
from tests.fakes.mcp_server import STDIO_COMMAND, free_port, start_http_server

TOKEN = "tok-SECRET-4242"
TRANSPORTS = ("http", "stdio")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    process, url = start_http_server()
    yield url
    stop(process)


@pytest.fixture(scope="module")
def token_url() -> Iterator[str]:
    process, url = start_http_server(token=TOKEN)
    yield url
    stop(process)


@pytest.fixture
def make_config(http_url: str) -> Any:
    def make(transport: str, **fields: Any) -> ConnectionConfig:
        fields.setdefault("timeout", 10.0)
        if transport == "http":
            return ConnectionConfig(name="weather", url=http_url, **fields)
        return ConnectionConfig(name="weather", command=STDIO_COMMAND[0], args=STDIO_COMMAND[1:], **fields)

    return make


def stdio_children() -> set[int]:
    """Live stdio test servers started by this process (Linux /proc)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"stdio" in cmdline and any(arg.endswith(b"mcp_server.py") for arg in cmdline):
            pids.add(int(entry))
    return pids


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_list_tools(make_config: Any, transport: str) -> None:
    client = McpClient(make_config(transport))
    try:
        tools = {tool.name: tool for tool in await client.list_tools()}
        assert set(tools) == {"add", "lookup_city", "slow"}
        assert tools["add"].description == "Add two integers."
        assert tools["lookup_city"].description == "Weather of a city."
        schema = tools["add"].parameters
        assert schema["type"] == "object"
        assert set(schema["properties"]) == {"a", "b"}
        assert schema["properties"]["a"]["type"] == "integer"
        assert set(tools["lookup_city"].parameters["properties"]) == {"city"}
        assert await client.list_tools() == list(tools.values())  # cached
    finally:
        await client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_call_tools(make_config: Any, transport: str) -> None:
    client = McpClient(make_config(transport))
    try:
        assert await client.call_tool("add", {"a": 2, "b": 3}) == ToolResult("5", False)
        assert await client.call_tool("lookup_city", {"city": "Paris"}) == ToolResult("Paris: 21 C, sunny", False)
        failed = await client.call_tool("lookup_city", {"city": "Atlantis"})
        assert failed.is_error
        assert "Atlantis is under water" in failed.output
        unknown = await client.call_tool("nope", {})
        assert unknown.is_error  # MCPServer reports an unknown tool as a failing call, not a protocol error
    finally:
        await client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_allowed_tools(make_config: Any, transport: str) -> None:
    client = McpClient(make_config(transport, allowed_tools=["add"]))
    try:
        assert [tool.name for tool in await client.list_tools()] == ["add"]
        refused = await client.call_tool("lookup_city", {"city": "Paris"})
        assert refused.is_error and "not allowed" in refused.output
        assert (await client.call_tool("add", {"a": 1, "b": 1})).output == "2"
    finally:
        await client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_concurrent_calls(make_config: Any, transport: str) -> None:
    client = McpClient(make_config(transport))
    try:
        # Gathered on a fresh client: they race to connect, and must share one session.
        results = await asyncio.gather(*(client.call_tool("add", {"a": i, "b": 100}) for i in range(10)))
        assert [r.output for r in results] == [str(i + 100) for i in range(10)]
        assert not any(r.is_error for r in results)
        if transport == "stdio":
            assert len(stdio_children()) == 1
    finally:
        await client.close()


async def test_call_timeout(make_config: Any) -> None:
    # Over HTTP: the server is already up, so connecting fits in the short timeout (a stdio server's start may not).
    client = McpClient(make_config("http", timeout=0.5))
    try:
        await client.list_tools()
        started = time.monotonic()
        with pytest.raises(McpError, match="timed out"):
            await client.call_tool("slow", {"seconds": 5})
        assert time.monotonic() - started < 2
        assert (await client.call_tool("add", {"a": 2, "b": 3})).output == "5"  # the session survives
    finally:
        await client.close()


async def test_stdio_connect_timeout_leaves_no_process(make_config: Any) -> None:
    client = McpClient(make_config("stdio", timeout=0.05))
    started = time.monotonic()
    with pytest.raises(McpError, match="connect timed out"):
        await client.list_tools()
    assert time.monotonic() - started < 5
    assert stdio_children() == set()


async def test_connect_failures_are_quick() -> None:
    refused = McpClient(ConnectionConfig(name="gone", url=f"http://127.0.0.1:{free_port()}/mcp", timeout=5))
    missing = McpClient(ConnectionConfig(name="missing", command="/nonexistent/mcp-server", timeout=5))
    for client in (refused, missing):
        started = time.monotonic()
        with pytest.raises(McpError, match="connect failed"):
            await client.call_tool("add", {"a": 1, "b": 2})
        assert time.monotonic() - started < 2
        await client.close()


async def test_bearer_header(token_url: str, caplog: pytest.LogCaptureFixture) -> None:
    good = McpClient(ConnectionConfig(name="auth", url=token_url, headers={"Authorization": f"Bearer {TOKEN}"}))
    try:
        assert (await good.call_tool("add", {"a": 2, "b": 3})).output == "5"
    finally:
        await good.close()

    wrong = "Bearer wrong-SECRET-9999"
    caplog.set_level(logging.DEBUG, logger="aigw.mcp")
    bad = McpClient(ConnectionConfig(name="auth", url=token_url, headers={"Authorization": wrong}, timeout=5))
    with pytest.raises(McpError) as raised:
        await bad.list_tools()
    await bad.close()
    assert "auth" in str(raised.value)
    assert "SECRET" not in str(raised.value) and "wrong" not in str(raised.value)
    assert "SECRET" not in caplog.text


async def test_reconnect_after_http_server_restart() -> None:
    process, url = start_http_server()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    client = McpClient(ConnectionConfig(name="restarting", url=url, timeout=5))
    try:
        assert (await client.call_tool("add", {"a": 2, "b": 3})).output == "5"
        stop(process)
        with pytest.raises(McpError):  # down: the one reconnect fails too, quickly
            await client.call_tool("add", {"a": 2, "b": 3})
        process, _ = start_http_server(port=port)
        assert (await client.call_tool("add", {"a": 4, "b": 5})).output == "9"
        # Restarted under a live session: the new server does not know its session id.
        stop(process)
        process, _ = start_http_server(port=port)
        assert (await client.call_tool("add", {"a": 6, "b": 7})).output == "13"
    finally:
        await client.close()
        stop(process)


async def test_stdio_reconnects_after_server_died(make_config: Any) -> None:
    client = McpClient(make_config("stdio"))
    try:
        assert (await client.call_tool("add", {"a": 2, "b": 3})).output == "5"
        (pid,) = stdio_children()
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        assert (await client.call_tool("add", {"a": 4, "b": 5})).output == "9"
        assert stdio_children() - {pid}
    finally:
        await client.close()
    assert stdio_children() == set()


async def test_stdio_close_leaves_no_process(make_config: Any) -> None:
    client = McpClient(make_config("stdio", env={"AIGW_MCP_TEST": "1"}))
    await client.list_tools()
    pids = stdio_children()
    assert len(pids) == 1
    (pid,) = pids
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read().split(b"\0")
    assert b"AIGW_MCP_TEST=1" in environ  # config.env on top of ...
    assert any(entry.startswith(b"PATH=") for entry in environ)  # ... os.environ
    await client.close()
    assert not os.path.exists(f"/proc/{pid}")


async def test_connections(make_config: Any) -> None:
    http, stdio = make_config("http"), make_config("stdio")
    connections = McpConnections(
        [ConnectionConfig(name="h", url=http.url), ConnectionConfig(name="s", command=stdio.command, args=stdio.args)]
    )
    assert connections.get("unknown") is None
    h, s = connections.get("h"), connections.get("s")
    assert h is not None and s is not None and connections.get("h") is h
    assert (await h.call_tool("add", {"a": 1, "b": 2})).output == "3"
    assert (await s.call_tool("add", {"a": 1, "b": 2})).output == "3"
    await connections.close()
    assert stdio_children() == set()


def test_on_uvloop(http_url: str) -> None:
    """The gateway runs on uvloop: both transports, start to close, on it."""

    async def scenario() -> list[str]:
        clients = [
            McpClient(ConnectionConfig(name="h", url=http_url, timeout=10)),
            McpClient(ConnectionConfig(name="s", command=STDIO_COMMAND[0], args=STDIO_COMMAND[1:], timeout=10)),
        ]
        try:
            return [(await client.call_tool("add", {"a": 20, "b": 22})).output for client in clients]
        finally:
            for client in clients:
                await client.close()

    assert uvloop.run(scenario()) == ["42", "42"]
    assert stdio_children() == set()


def test_result_text() -> None:
    image = types.ImageContent(type="image", data="aGk=", mime_type="image/png")
    text = types.TextContent(type="text", text="hello")
    assert _result_text(types.CallToolResult(content=[text, image, text])) == "hello\n[image]\nhello"
    assert _result_text(types.CallToolResult(content=[image], structured_content={"x": 1})) == '{"x": 1}'
    assert _result_text(types.CallToolResult(content=[image])) == "[image]"
    assert _result_text(types.CallToolResult(content=[])) == ""
