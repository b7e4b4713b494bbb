"""What the agent API keeps for the gateway's lifetime: the MCP connections, the Python functions,
tracing, the response store, and the background runs under way in this process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, NamedTuple

from sqlalchemy import Engine

from aigw.agent.egress import EgressPolicy
from aigw.agent.functions import PythonFunction
from aigw.agent.mcp import McpClient, McpConnections
from aigw.agent.tracing import Tracing
from aigw.config import AgentConfig, Settings
from aigw.store.responses import ResponseStore

log = logging.getLogger("aigw.agent")


class AgentParts(NamedTuple):
    """What a configuration reload replaces in the runtime (see `AgentRuntime.prepare`)."""

    config: AgentConfig
    connections: McpConnections
    dropped: list[McpClient]  # clients of the old set the new one does not keep
    inline_mcp: EgressPolicy | None
    functions: dict[str, PythonFunction]


class AgentRuntime:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.config = settings.agent
        self.connections = McpConnections(self.config.connections)
        # Where inline MCP servers may be; None when they are not allowed at all.
        self.inline_mcp = EgressPolicy(self.config.inline_mcp_allowed_hosts) if self.config.allow_inline_mcp else None
        # Loaded once the configuration named them all; a bad import path fails at start.
        self.functions = {f.name: PythonFunction.load(f) for f in self.config.functions}
        self.tracing = Tracing(settings.tracing)
        self.responses = ResponseStore(engine)
        self.runs: dict[str, asyncio.Task[None]] = {}  # background runs of this process, by response id
        self.closing = False
        # MCP clients a reload dropped, closed once the runs that may still use them are over.
        self._retired: dict[McpClient, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def prepare(self, settings: Settings) -> AgentParts:
        """For a configuration reload: the agent parts built from `settings` (raises if a function
        does not load), to `swap` in once everything else is built too."""
        config = settings.agent
        connections, dropped = self.connections.reconfigured(config.connections)
        inline_mcp = EgressPolicy(config.inline_mcp_allowed_hosts) if config.allow_inline_mcp else None
        functions = {f.name: PythonFunction.load(f) for f in config.functions}
        return AgentParts(config, connections, dropped, inline_mcp, functions)

    def swap(self, prepared: AgentParts) -> None:
        """Take the parts `prepare` built. Requests under way keep the connections they started with;
        the dropped ones close after the longest a run may last (`max_background_seconds`)."""
        old_limit = self.config.max_background_seconds
        self.config, self.connections, dropped, self.inline_mcp, self.functions = prepared
        loop = asyncio.get_running_loop()
        for client in dropped:
            self._retired[client] = loop.call_later(old_limit, self._close_retired, client)

    def _close_retired(self, client: McpClient) -> None:
        if self._retired.pop(client, None) is not None:
            task = asyncio.get_running_loop().create_task(client.close(), name="aigw-mcp-retired-close")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def start_background(self, response_id: str, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` detached from the request that asked for it: the client may go away."""
        task = asyncio.get_running_loop().create_task(work, name=f"aigw-background-{response_id}")
        self.runs[response_id] = task
        task.add_done_callback(lambda _: self.runs.pop(response_id, None))

    async def close(self) -> None:
        """At shut-down: background runs still going end as failed (each records itself), then the
        MCP sessions close and the spans are flushed."""
        self.closing = True
        tasks = list(self.runs.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.connections.close()
        retired, self._retired = list(self._retired.items()), {}
        for client, timer in retired:
            timer.cancel()
        closing = [client.close() for client, _ in retired]
        await asyncio.gather(*closing, *self._closing, return_exceptions=True)
        await asyncio.to_thread(self.tracing.shutdown)
