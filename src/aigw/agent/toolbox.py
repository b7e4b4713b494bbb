"""A request's tools, sorted into the ones the gateway runs (hosted: MCP servers and Python functions)
and the ones the client runs (function and custom tools), with what the model is shown of each.

Request forms of a hosted tool:
- `{"type": "connection", "name": N}` or `{"type": "uc_connection", "uc_connection": {"name": N}}`:
  the MCP server the configuration declares as N (its credentials stay in the gateway);
- `{"type": "mcp", "server_label": N}`: the same, in the shape OpenAI's SDK types;
- `{"type": "mcp", "server_label", "server_url", "headers", ...}`: an inline server, when the operator
  allows them;
- `{"type": "hosted_function", "name": N}` or `{"type": "uc_function", "uc_function": {"name": N}}`:
  the Python function the configuration registers as N.
The MCP forms take `allowed_tools` and `require_approval` ("always", "never", or
`{"never": {"tool_names": [...]}, "always": {...}}`) as OpenAI's `mcp` tool does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson

from aigw.agent.egress import EgressPolicy
from aigw.agent.functions import PythonFunction, ToolError
from aigw.agent.mcp import McpClient, McpConnections, McpError
from aigw.config import ConnectionConfig
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.wire.openai_responses import TOOL_NAME, new_id

log = logging.getLogger("aigw.mcp")


class ToolOutcome(NamedTuple):
    output: str
    error: str | None = None  # what went wrong, told to the model instead of an output


class HostedTool(NamedTuple):
    name: str  # as the model sees it
    description: str
    parameters: dict[str, Any]
    run: Callable[[str], Awaitable[ToolOutcome]]  # JSON arguments -> outcome (never raises)
    server: str | None = None  # MCP server label; None for a Python function
    remote_name: str = ""  # the tool's name on its MCP server
    needs_approval: bool = False
    grant: tuple[str, str] | None = None  # the (resource kind, name) a caller needs CAN_QUERY on; None: inline


MayUse = Callable[[str, str], bool]  # (resource kind, name) -> may the caller use it? (from memory)


class Toolbox:
    def __init__(self, may_use: MayUse | None = None) -> None:
        self.may_use = may_use
        self.hosted: dict[str, HostedTool] = {}  # by the name the model sees
        self.client_tools: list[dict[str, Any]] = []
        self.listings: list[dict[str, Any]] = []  # mcp_list_tools items, one per MCP server
        self._by_remote: dict[tuple[str, str], str] = {}  # (server, MCP tool name) -> model name
        self._inline: list[McpClient] = []

    def model_tools(self) -> list[dict[str, Any]]:
        """The tools as the model is given them: the client's, then every hosted one as a function."""
        hosted = [
            {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters, "strict": False}
            for t in self.hosted.values()
        ]
        return self.client_tools + hosted

    def permitted(self, tool: HostedTool) -> bool:
        """Asked again when a tool is called: a grant revoked while a response runs stops its calls."""
        return tool.grant is None or self.may_use is None or self.may_use(*tool.grant)

    def model_name(self, server: str, remote_name: str) -> str:
        return self._by_remote.get((server, remote_name), remote_name)

    def for_call(self, server: str, remote_name: str) -> HostedTool | None:
        return self.hosted.get(self._by_remote.get((server, remote_name), ""))

    async def close(self) -> None:
        for client in self._inline:
            await client.close()

    def _add(self, tool: HostedTool) -> None:
        name = tool.name
        if name in self.hosted or not TOOL_NAME.fullmatch(name):
            name = _model_name(f"{tool.server}_{tool.remote_name}" if tool.server else name)
            while name in self.hosted:
                name = _model_name(f"{name[:58]}_{len(self.hosted)}")
            tool = tool._replace(name=name)
        self.hosted[name] = tool
        if tool.server is not None:
            self._by_remote[(tool.server, tool.remote_name)] = name


def _model_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64]


async def open_toolbox(
    tools: list[Any],
    connections: McpConnections,
    functions: dict[str, PythonFunction],
    inline: EgressPolicy | None,
    may_use: MayUse | None = None,
) -> Toolbox:
    """Sort a (validated) request's `tools`; lists the tools of every MCP server it names. A 400 names
    the tool entry that is wrong; a 403 one the caller has no grant on (`may_use`; before anything
    else, so names cannot be probed); a server that cannot be reached is a 424, as with OpenAI.
    Inline MCP servers are allowed when `inline` (where they may be) is given."""
    box = Toolbox(may_use)
    try:
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            kind = tool.get("type")
            if kind in ("connection", "uc_connection") or (kind == "mcp" and not tool.get("server_url")):
                name = _reference(tool, "uc_connection" if kind == "uc_connection" else None, "server_label" if kind == "mcp" else "name", where)
                _check_grant(may_use, "connection", name, where)
                client = connections.get(name)
                if client is None:
                    raise invalid(f"Unknown connection '{name}' in '{where}': the gateway declares no MCP server of that name.", where)
                await _add_server(box, client, tool, where)
            elif kind == "mcp":
                if inline is None:
                    raise invalid(
                        f"Inline MCP servers are not allowed on this gateway ('{where}.server_url'): use a connection the gateway declares.",
                        f"{where}.server_url",
                    )
                client = McpClient(_inline_config(tool, where), egress=inline)
                box._inline.append(client)
                await _add_server(box, client, tool, where)
            elif kind in ("hosted_function", "uc_function"):
                name = _reference(tool, "uc_function" if kind == "uc_function" else None, "name", where)
                _check_grant(may_use, "function", name, where)
                function = functions.get(name)
                if function is None:
                    raise invalid(f"Unknown function '{name}' in '{where}': the gateway registers no Python function of that name.", where)
                runner = _function_runner(function)
                box._add(HostedTool(function.name, function.description, function.parameters, runner, grant=("function", name)))
            else:
                box.client_tools.append(tool)
    except BaseException:
        await box.close()
        raise
    clash = set(box.hosted) & {t.get("name") for t in box.client_tools}
    if clash:
        await box.close()
        raise invalid(f"The tool name '{sorted(clash)[0]}' is used by a client tool and a hosted tool.", "tools")
    return box


def _check_grant(may_use: MayUse | None, kind: str, name: str, where: str) -> None:
    if may_use is not None and not may_use(kind, name):
        raise GatewayError(
            ErrorKind.PERMISSION, f"You do not have permission to use the {kind} '{name}' ('{where}'): it needs a grant.", param=where
        )


def _reference(tool: dict[str, Any], nested: str | None, key: str, where: str) -> str:
    """The name a hosted-tool entry refers to: `tool[key]`, or `tool[nested]["name"]` (the uc_ aliases)."""
    if nested is None:
        name, at = tool.get(key), f"{where}.{key}"
    else:
        holder = tool.get(nested)
        name, at = (holder.get("name") if isinstance(holder, dict) else None), f"{where}.{nested}.name"
    if not isinstance(name, str) or not name:
        raise invalid(f"Missing required parameter: '{at}'.", at)
    return name


def _inline_config(tool: dict[str, Any], where: str) -> ConnectionConfig:
    label, url, headers = tool.get("server_label"), tool.get("server_url"), tool.get("headers") or {}
    if not isinstance(label, str) or not TOOL_NAME.fullmatch(label):
        raise invalid(f"Invalid '{where}.server_label': expected 1 to 64 letters, digits, underscores or dashes.", f"{where}.server_label")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise invalid(f"Invalid '{where}.server_url': expected an http(s) URL.", f"{where}.server_url")
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise invalid(f"Invalid type for '{where}.headers': expected an object of strings.", f"{where}.headers")
    return ConnectionConfig(name=label, url=url, headers=headers)


async def _add_server(box: Toolbox, client: McpClient, tool: dict[str, Any], where: str) -> None:
    label = client.config.name
    try:
        listed = await client.list_tools()
    except McpError as error:
        # An inline server's failure is told in fixed words (see aigw.agent.egress): no detail.
        detail = "." if client.egress is not None else f": {error}"
        raise GatewayError(
            ErrorKind.UPSTREAM_ERROR, f"Error retrieving tool list from MCP server '{label}'{detail}", status=424, param=where
        ) from None
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, dict):  # OpenAI's filter form: {"tool_names": [...]}
        allowed = allowed.get("tool_names")
    if allowed is not None and not (isinstance(allowed, list) and all(isinstance(n, str) for n in allowed)):
        raise invalid(f"Invalid type for '{where}.allowed_tools': expected an array of tool names.", f"{where}.allowed_tools")
    approval = _approval_rule(tool.get("require_approval", client.config.require_approval), where)
    shown = []
    for listed_tool in listed:
        if allowed is not None and listed_tool.name not in allowed:
            continue
        shown.append({"name": listed_tool.name, "description": listed_tool.description, "input_schema": listed_tool.parameters, "annotations": None})
        box._add(
            HostedTool(
                listed_tool.name, listed_tool.description, listed_tool.parameters, _mcp_runner(client, listed_tool.name),
                server=label, remote_name=listed_tool.name, needs_approval=approval(listed_tool.name),
                grant=None if client.egress is not None else ("connection", label),
            )
        )  # fmt: skip
    box.listings.append({"id": new_id("mcpl_"), "type": "mcp_list_tools", "server_label": label, "tools": shown, "error": None})


def _approval_rule(value: Any, where: str) -> Callable[[str], bool]:
    if value in ("always", "never"):
        return lambda name: value == "always"
    if isinstance(value, dict):
        never, always = _names(value.get("never")), _names(value.get("always"))
        return lambda name: name in always or name not in never
    raise invalid(f"Invalid value for '{where}.require_approval': expected 'always', 'never' or an object.", f"{where}.require_approval")


def _names(rule: Any) -> frozenset[str]:
    names = rule.get("tool_names") if isinstance(rule, dict) else None
    return frozenset(n for n in names or () if isinstance(n, str))


def _function_runner(function: PythonFunction) -> Callable[[str], Awaitable[ToolOutcome]]:
    async def run(arguments: str) -> ToolOutcome:
        try:
            return ToolOutcome(await function.call(arguments))
        except ToolError as error:
            return ToolOutcome("", str(error))

    return run


def _mcp_runner(client: McpClient, name: str) -> Callable[[str], Awaitable[ToolOutcome]]:
    async def run(arguments: str) -> ToolOutcome:
        try:
            parsed = orjson.loads(arguments or "{}")
        except orjson.JSONDecodeError:
            return ToolOutcome("", "The arguments are not valid JSON.")
        if not isinstance(parsed, dict):
            return ToolOutcome("", "The arguments must be a JSON object.")
        try:
            result = await client.call_tool(name, parsed)
        except McpError as error:
            log.warning("MCP server %r: tool %r failed: %s", client.config.name, name, error)
            return ToolOutcome("", str(error))
        return ToolOutcome("", result.output) if result.is_error else ToolOutcome(result.output)

    return run
