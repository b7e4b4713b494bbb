"""Responses tools <-> canonical tools, for destinations that do not speak the Responses API.

What each kind of tool becomes:

    function                      -> a canonical tool of the same name
    custom (free-form text input) -> a function taking one string, {"input": ...}; its grammar goes
                                     into the description (other models have no other way to see it)
    namespace                     -> each of its function and custom tools, under a flat name
    hosted (web_search, file_search, code_interpreter, image_generation, mcp, local_shell, shell,
            computer_use_preview, tool_search, ...) -> dropped: no other provider runs them

Namespaces. A `namespace` tool groups function and custom tools (Codex CLI sends `multi_agent_v1`
with close_agent, resume_agent, send_input, spawn_agent, wait_agent). The model calls a member by
its own name, and the call comes back as a `function_call` (or `custom_tool_call`) item with a
`namespace` field; Codex sends that item back as it is on the next turn. Other providers know no
namespaces, so each member is offered as a tool of its own, named

    {namespace}__{name}                       when every provider accepts that name and no other tool
                                              of the request has it;
    {stem}_{10 hex digits of SHA-256}         otherwise: the stem is that name with characters outside
                                              [a-zA-Z0-9_-] replaced by "_", the namespace cut short
                                              (then the name) to fit 64 characters; the digest is of
                                              namespace and name, so no two members share one.

"Every provider accepts" is ^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$: OpenAI chat's ^[a-zA-Z0-9_-]{1,64}$,
Anthropic's ^[a-zA-Z0-9_-]{1,128}$ and Gemini's (64 characters, a letter or underscore first) at once.
The names derive from the request body alone, so decoding the request, encoding the answer (whole or
streamed) and decoding the next turn's history all agree without the gateway keeping anything: a
call to a flat name is rendered as the namespaced call the Responses API would emit, and a namespaced
call in the input is sent to the provider under its flat name again.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aigw.canonical import Tool, ToolChoice
from aigw.errors import invalid
from aigw.wire.schemas.bounds import MAX_TOOLS

TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
NAMED_TOOL_TYPES = ("function", "custom")
TOOL_CHOICE_MODES = ("auto", "none", "required")
# A custom tool as a canonical function: its free-form text travels as the one string argument.
CUSTOM_TOOL_PARAMETERS: dict[str, Any] = {
    "type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"],
}  # fmt: skip
# A name every provider takes (see the module docstring).
PORTABLE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]{0,63}")
_UNPORTABLE = re.compile(r"[^a-zA-Z0-9_-]")
_DIGEST_CHARS = 10  # 40 bits: a clash between two members of one request is not a practical worry
MAX_NAMESPACE_NAME = 256  # a gateway cap; longer namespaces still flatten, to a hashed name


def validate_namespace(tool: dict[str, Any], where: str) -> None:
    """The checks a namespace tool gets on every path: a name, and a non-empty list of function and
    custom tools, each named as a top-level one must be."""
    name = tool.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAMESPACE_NAME:
        message = f"Invalid '{where}.name': expected a string of 1 to {MAX_NAMESPACE_NAME} characters."
        raise invalid(message, f"{where}.name")
    members = tool.get("tools")
    if not isinstance(members, list) or not members:
        raise invalid(f"Invalid '{where}.tools': expected a non-empty array of function or custom tools.", f"{where}.tools")
    for i, member in enumerate(members):
        at = f"{where}.tools[{i}]"
        if not isinstance(member, dict) or member.get("type") not in NAMED_TOOL_TYPES:
            raise invalid(f"Invalid '{at}': a namespace holds function and custom tools only.", f"{at}.type")
        validate_tool_name(member.get("name"), at)


def validate_tool_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise invalid(
            f"Invalid '{where}.name': {name!r}. Expected a string of 1 to 64 letters, digits, underscores "
            "or dashes (^[a-zA-Z0-9_-]{1,64}$).",
            f"{where}.name",
        )


def flat_name(namespace: str, name: str, taken: set[str] | frozenset[str]) -> str:
    """The canonical name of function `name` of `namespace` (see the module docstring)."""
    candidate = f"{namespace}__{name}"
    if PORTABLE_NAME.fullmatch(candidate) and candidate not in taken:
        return candidate
    digest = hashlib.sha256(f"{namespace}\0{name}".encode()).hexdigest()[:_DIGEST_CHARS]
    room = 63 - _DIGEST_CHARS  # the stem, "_", the digest: 64 characters at most
    tail = "__" + _UNPORTABLE.sub("_", name)  # the function's name survives a long namespace's cut
    stem = (_UNPORTABLE.sub("_", namespace)[: max(0, room - len(tail))] + tail)[:room]
    if not PORTABLE_NAME.fullmatch(stem[:1]):
        stem = "_" + stem[: room - 1]
    return f"{stem}_{digest}"


def _named(tools: Any) -> list[dict[str, Any]]:
    return [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []


class ToolNames:
    """The names a request's tools go by on each side, built from its `tools` alone (no state): a
    namespace member's flat canonical name and back, and which canonical names are custom tools."""

    __slots__ = ("_flat", "_origin", "_custom", "_taken")

    def __init__(self, tools: Any) -> None:
        self._flat: dict[tuple[str, str], str] = {}
        self._origin: dict[str, tuple[str, str]] = {}
        self._custom: set[str] = set()
        top = [t for t in _named(tools) if t.get("type") in NAMED_TOOL_TYPES and isinstance(t.get("name"), str)]
        self._taken: set[str] = {t["name"] for t in top}
        self._custom.update(t["name"] for t in top if t["type"] == "custom")
        for tool in _named(tools):
            namespace = tool.get("name")
            if tool.get("type") != "namespace" or not isinstance(namespace, str):
                continue
            for member in _named(tool.get("tools")):
                name = member.get("name")
                if not isinstance(name, str) or (namespace, name) in self._flat:
                    continue
                flat = flat_name(namespace, name, self._taken)
                self._taken.add(flat)
                self._flat[namespace, name] = flat
                self._origin[flat] = (namespace, name)
                if member.get("type") == "custom":
                    self._custom.add(flat)

    @property
    def has_namespaces(self) -> bool:
        return bool(self._flat)

    def flat(self, namespace: str, name: str) -> str:
        """The canonical name of a namespaced function: its flat name, also for a call in the
        history to a function this request no longer offers (the same rule gives the same name)."""
        known = self._flat.get((namespace, name))
        return known if known is not None else flat_name(namespace, name, self._taken)

    def origin(self, canonical: str) -> tuple[str | None, str]:
        """(namespace, name) a canonical tool name stands for; (None, name) outside namespaces."""
        return self._origin.get(canonical, (None, canonical))

    def is_custom(self, canonical: str) -> bool:
        return canonical in self._custom

    def members(self, namespace: str) -> list[str]:
        """The flat names of `namespace`'s tools."""
        return [flat for (ns, _), flat in self._flat.items() if ns == namespace]

    def by_bare_name(self, name: str) -> str | None:
        """The flat name of the one namespaced tool called `name`, when exactly one is."""
        found = [flat for (_, member), flat in self._flat.items() if member == name]
        return found[0] if len(found) == 1 else None


def decode_tools(tools: list[Any], names: ToolNames) -> list[Tool]:
    """Function, custom and namespaced tools -> canonical tools; hosted ones are dropped."""
    out: list[Tool] = []
    for i, tool in enumerate(tools):
        kind, where = tool["type"], f"tools[{i}]"
        if kind in NAMED_TOOL_TYPES:
            out.append(_decode_tool(tool, tool["name"], where))
        elif kind == "namespace":
            out += _decode_namespace(tool, names, where)
    if len(out) > MAX_TOOLS:
        raise invalid(f"Invalid 'tools': {len(out)} tools, counting each namespace's; at most {MAX_TOOLS} are allowed.", "tools")
    seen: set[str] = set()
    for tool in out:
        if tool.name in seen:
            raise invalid(f"Invalid 'tools': the tool name '{tool.name}' is used twice.", "tools")
        seen.add(tool.name)
    return out


def _decode_tool(tool: dict[str, Any], name: str, where: str, context: str | None = None) -> Tool:
    description = tool.get("description")
    description = description if isinstance(description, str) else None
    if context:  # the namespace's description: the model sees no namespace, only its members
        description = f"{description}\n\n{context}" if description else context
    if tool["type"] == "custom":
        description = custom_description(description, tool.get("format"))
        return Tool(name=name, description=description, parameters=CUSTOM_TOOL_PARAMETERS)
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise invalid(f"Invalid type for '{where}.parameters': expected an object.", f"{where}.parameters")
    strict = tool.get("strict") if isinstance(tool.get("strict"), bool) else None
    return Tool(name=name, description=description, parameters=parameters, strict=strict)


def _decode_namespace(tool: dict[str, Any], names: ToolNames, where: str) -> list[Tool]:
    namespace = tool["name"]
    about = tool.get("description")
    context = f"(Namespace {namespace}: {about})" if isinstance(about, str) and about.strip() else None
    return [
        _decode_tool(member, names.flat(namespace, member["name"]), f"{where}.tools[{i}]", context)
        for i, member in enumerate(tool["tools"])
    ]


def custom_description(description: str | None, format: Any) -> str | None:
    """A custom tool's grammar goes into the description: other models have no other way to see it."""
    if not isinstance(format, dict) or format.get("type") != "grammar" or not isinstance(format.get("definition"), str):
        return description
    grammar = f"The input must follow this {format.get('syntax') or 'formal'} grammar:\n{format['definition']}"
    return f"{description}\n\n{grammar}" if description else grammar


def decode_tool_choice(choice: Any, tools: list[Tool], names: ToolNames) -> tuple[ToolChoice | None, list[Tool]]:
    """tool_choice -> canonical; `allowed_tools` narrows the canonical tools to the ones it names.
    A choice that forces a call no canonical tool can answer (a hosted tool, which is dropped; a name
    not among the tools; `required` with no tool left) is a 400 here, in the client's terms, rather
    than a provider's error about a request the client did not write."""
    if choice is None:
        return None, tools
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE_MODES:
            raise invalid("Invalid value for 'tool_choice': expected auto, none, required or an object.", "tool_choice")
        return _forceable(ToolChoice(mode=choice), tools), tools  # type: ignore[arg-type]
    kind = choice.get("type")
    if kind in NAMED_TOOL_TYPES:
        name = choice.get("name")
        if not isinstance(name, str):
            raise invalid("Missing required parameter: 'tool_choice.name'.", "tool_choice.name")
        return _forceable(ToolChoice(mode="tool", name=_choice_name(choice, name, tools, names)), tools), tools
    if kind == "allowed_tools":
        mode = choice.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise invalid("Invalid value for 'tool_choice.mode': expected auto or required.", "tool_choice.mode")
        allowed = choice.get("tools")
        if not isinstance(allowed, list):
            raise invalid("Missing required parameter: 'tool_choice.tools'.", "tool_choice.tools")
        kept = _allowed_names(allowed, tools, names)
        narrowed = [t for t in tools if t.name in kept]
        return _forceable(ToolChoice(mode=mode), narrowed), narrowed
    if not isinstance(kind, str):
        raise invalid("Missing required parameter: 'tool_choice.type'.", "tool_choice.type")
    raise invalid(
        f"Invalid value for 'tool_choice.type': '{kind}' forces a hosted tool, which this destination does not "
        "run (hosted tools are served by OpenAI only; see the README).",
        "tool_choice.type",
    )


def _choice_name(choice: dict[str, Any], name: str, tools: list[Tool], names: ToolNames) -> str:
    """The canonical name a forced choice names: by its namespace when it gives one, else a
    top-level tool, else the one namespaced tool of that name."""
    namespace = choice.get("namespace")
    if isinstance(namespace, str):
        return names.flat(namespace, name)
    if any(t.name == name for t in tools):
        return name
    return names.by_bare_name(name) or name


def _allowed_names(allowed: list[Any], tools: list[Tool], names: ToolNames) -> set[str]:
    kept: set[str] = set()
    for entry in allowed:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        if entry.get("type") == "namespace":
            kept.update(names.members(entry["name"]))
        else:
            kept.add(_choice_name(entry, entry["name"], tools, names))
    return kept


def _forceable(choice: ToolChoice, tools: list[Tool]) -> ToolChoice:
    if choice.mode == "required" and not tools:
        raise invalid(
            "Invalid value for 'tool_choice': a tool call is required, but none of the request's tools can be "
            "called on this destination (hosted tools are dropped for it; see the README).",
            "tool_choice",
        )
    if choice.mode == "tool" and not any(t.name == choice.name for t in tools):
        raise invalid(f"Invalid value for 'tool_choice': no tool named '{choice.name}' is among the request's tools.", "tool_choice")
    return choice
