"""What the agent API keeps for the gateway's lifetime: the MCP connections, the Python functions,
tracing, the response store, and the background runs under way in this process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from sqlalchemy import Engine

from aigw.agent.egress import EgressPolicy
from aigw.agent.functions import PythonFunction
from aigw.agent.mcp import McpConnections
from aigw.agent.tracing import Tracing
from aigw.config import Settings
from aigw.store.responses import ResponseStore

log = logging.getLogger("aigw.agent")


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
        await asyncio.to_thread(self.tracing.shutdown)
