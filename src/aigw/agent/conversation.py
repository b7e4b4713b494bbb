"""Conversation items: a request's input as stored items, the checks a conversation must pass
before the model sees it, and the view of it the model is given.

The conversation is kept in the Responses item format (the API's own), hosted-tool items included;
`model_view` turns the items only the gateway understands (`mcp_call`, approvals, tool listings)
into the function calls and outputs every model understands.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aigw.errors import invalid
from aigw.wire.openai_responses import new_id

Item = dict[str, Any]

CALLS = {"function_call": "function_call_output", "custom_tool_call": "custom_tool_call_output"}
OUTPUTS = {output: call for call, output in CALLS.items()}
GATEWAY_ONLY = frozenset({"mcp_list_tools", "mcp_approval_request", "mcp_approval_response"})
_ID_PREFIXES = {
    "message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "custom_tool_call": "ctc_",
    "custom_tool_call_output": "ctco_", "mcp_approval_response": "mcpa_",
}  # fmt: skip


def input_items(value: str | list[Any]) -> list[Item]:
    """A request's `input` as stored items: each with a type and an id, messages with part lists."""
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items = []
    for raw in value:
        item = dict(raw)
        kind = item.setdefault("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": content}]
            item.setdefault("status", "completed")
        if kind in _ID_PREFIXES and not item.get("id"):
            item["id"] = new_id(_ID_PREFIXES[kind])
        items.append(item)
    return items


def check(history: list[Item], new: list[Item]) -> None:
    """400 for a conversation no model could continue: a tool output without its call, a call
    without its output, an approval answer without its request. Each names the id."""
    calls: set[str] = set()
    answered: set[str] = set()
    requests = {i.get("id") for i in history if i.get("type") == "mcp_approval_request"}
    for item in history:
        _note(item, calls, answered)
    for n, item in enumerate(new):
        kind = item.get("type")
        if kind in OUTPUTS and item.get("call_id") not in calls:
            raise invalid(f"No tool call found for function call output with call_id {item.get('call_id')}.", f"input[{n}]")
        if kind == "mcp_approval_response" and item.get("approval_request_id") not in requests:
            raise invalid(f"No approval request found with id {item.get('approval_request_id')}.", f"input[{n}]")
        _note(item, calls, answered)
    for call_id in calls - answered:
        raise invalid(f"No tool output found for function call {call_id}.", "input")


def _note(item: Item, calls: set[str], answered: set[str]) -> None:
    kind = item.get("type")
    if kind in CALLS:
        calls.add(item.get("call_id"))
    elif kind in OUTPUTS:
        answered.add(item.get("call_id"))


def approvals(history: list[Item], new: list[Item]) -> list[tuple[Item, bool]]:
    """The approval requests `new` answers: (request, approved), each request once."""
    requests = {i.get("id"): i for i in history if i.get("type") == "mcp_approval_request"}
    done = {i.get("approval_request_id") for i in history if i.get("type") == "mcp_call"}
    answers = []
    for item in new:
        if item.get("type") == "mcp_approval_response":
            request = requests.get(item.get("approval_request_id"))
            if request is not None and request.get("id") not in done:
                done.add(request.get("id"))
                answers.append((request, item.get("approve") is True))
    return answers


def model_view(items: Iterable[Item], model_name: Any) -> list[Item]:
    """What the model is given: gateway-only items left out, MCP calls as function calls with their
    outputs (`model_name(server, tool)` names them as the model knows them), and no item ids, which
    a destination that keeps no state could take for references to items it does not have.

    Consecutive MCP calls (the calls of one turn are) become one run of calls, then their outputs:
    one assistant turn with parallel calls, the shape every provider takes."""
    view: list[Item] = []
    calls: list[Item] = []
    outputs: list[Item] = []
    for item in items:
        kind = item.get("type")
        if kind in GATEWAY_ONLY:
            continue
        if kind == "mcp_call":
            call_id = item.get("id") or new_id("mcp_")
            name = model_name(item.get("server_label"), item.get("name"))
            calls.append({"type": "function_call", "call_id": call_id, "name": name, "arguments": item.get("arguments") or "{}"})
            result = item.get("output") if item.get("error") is None else f"Error: {item.get('error')}"
            outputs.append({"type": "function_call_output", "call_id": call_id, "output": result or ""})
            continue
        view += calls + outputs
        calls, outputs = [], []
        # A reasoning item's id goes with its encrypted content (without it, a destination that keeps
        # no state would look the id up and fail), and a reference is nothing but its id (the surfaces
        # resolve references before the loop runs); other ids are left out.
        keep_id = kind == "item_reference" or (kind == "reasoning" and item.get("encrypted_content"))
        view.append(item if keep_id else {k: v for k, v in item.items() if k != "id"})
    return view + calls + outputs
