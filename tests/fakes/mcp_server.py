"""A real MCP server (the SDK's MCPServer) for the agent loop's MCP client tests.

    python tests/fakes/mcp_server.py stdio        # stdio transport
    python tests/fakes/mcp_server.py http PORT    # streamable HTTP on http://127.0.0.1:PORT/mcp

In http mode, if MCP_REQUIRED_TOKEN is set, requests without `Authorization: Bearer <token>` get 401.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SERVER_FILE = str(Path(__file__).resolve())
STDIO_COMMAND: list[str] = [sys.executable, SERVER_FILE, "stdio"]


def build_server() -> Any:
    """The server with the three test tools (imported lazily so importing this module stays cheap)."""
    import anyio
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("aigw-test-mcp", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def lookup_city(city: str) -> str:
        """Weather of a city."""
        if city == "Atlantis":
            # ToolError, not any exception: mcp 2.x hides a crash's text from the client ("Error executing tool ...").
            raise ToolError("Atlantis is under water: no weather station")
        return f"{city}: 21 C, sunny"

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep for a while, then answer."""
        await anyio.sleep(seconds)
        return "done"

    return server


def require_bearer(app: Any, token: str) -> Any:
    """ASGI middleware: 401 for any HTTP request without `Authorization: Bearer <token>`."""
    expected = f"Bearer {token}".encode()

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope.get("headers") or []).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await app(scope, receive, send)

    return wrapped


def run_http(port: int) -> None:
    import uvicorn

    app = build_server().streamable_http_app()
    token = os.environ.get("MCP_REQUIRED_TOKEN")
    if token:
        app = require_bearer(app, token)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_http_server(port: int | None = None, token: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start the http mode as a subprocess; return it and its URL once it accepts connections."""
    port = port or free_port()
    env = dict(os.environ)
    env.pop("MCP_REQUIRED_TOKEN", None)
    if token:
        env["MCP_REQUIRED_TOKEN"] = token
    process = subprocess.Popen([sys.executable, SERVER_FILE, "http", str(port)], env=env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"MCP test server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"MCP test server did not listen on port {port} within 10 s")


def main(argv: list[str]) -> None:
    if len(argv) >= 1 and argv[0] == "stdio":
        build_server().run("stdio")
    elif len(argv) == 2 and argv[0] == "http":
        run_http(int(argv[1]))
    else:
        sys.exit("usage: mcp_server.py stdio | http PORT")


if __name__ == "__main__":
    # Run as a script, this directory heads sys.path; its modules (server.py, wire.py...) must not shadow real ones.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    main(sys.argv[1:])
