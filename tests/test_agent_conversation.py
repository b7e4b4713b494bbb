"""Conversation items (aigw.agent.conversation): stored input items, the checks before the model
sees a conversation, and the view of it the model is given."""

from __future__ import annotations

import pytest

from aigw.agent.conversation import approvals, check, input_items, model_view
from aigw.errors import GatewayError


def call(call_id: str, name: str = "lookup") -> dict:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": "{}", "id": f"fc_{call_id}"}


def output(call_id: str, text: str = "ok") -> dict:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def mcp_call(id: str, name: str, out: str | None, error: str | None = None) -> dict:
    return {"id": id, "type": "mcp_call", "server_label": "srv", "name": name, "arguments": '{"a":1}', "output": out, "error": error}


def test_input_items_get_types_ids_and_part_lists():
    (item,) = input_items("hello")
    assert item["type"] == "message" and item["role"] == "user" and item["id"].startswith("msg_")
    assert item["content"] == [{"type": "input_text", "text": "hello"}]
    assistant, out = input_items([{"role": "assistant", "content": "hi"}, output("c1")])
    assert assistant["content"] == [{"type": "output_text", "text": "hi"}] and out["id"].startswith("fco_")
    (kept,) = input_items([{"type": "message", "role": "user", "content": "x", "id": "msg_mine"}])
    assert kept["id"] == "msg_mine"


@pytest.mark.parametrize(
    ("history", "new", "message", "param"),
    [
        ([], [output("c9")], "No tool call found for function call output with call_id c9.", "input[0]"),
        ([call("c1")], [{"type": "message", "role": "user", "content": "x"}], "No tool output found for function call c1.", "input"),
        ([], [call("c2")], "No tool output found for function call c2.", "input"),
        ([], [{"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True}], "mcpr_1", "input[0]"),
    ],
)
def test_conversations_no_model_could_continue_are_400s(history, new, message, param):
    with pytest.raises(GatewayError) as caught:
        check(history, new)
    assert caught.value.status == 400 and message in caught.value.message and caught.value.param == param


def test_good_conversations_pass():
    check([call("c1")], [output("c1")])
    check([], [call("c1"), output("c1")])
    check([{"type": "mcp_approval_request", "id": "mcpr_1"}], [{"type": "mcp_approval_response", "approval_request_id": "mcpr_1"}])


def test_each_approval_request_is_answered_once():
    request = {"type": "mcp_approval_request", "id": "mcpr_1", "server_label": "srv", "name": "add"}
    answer = {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True}
    assert approvals([request], [answer, {**answer, "approve": False}]) == [(request, True)]
    done = {**mcp_call("mcp_1", "add", "2"), "approval_request_id": "mcpr_1"}
    assert approvals([request, done], [answer]) == []  # already run


def test_model_view():
    items = [
        {"type": "message", "role": "user", "content": "q", "id": "msg_1"},
        {"type": "mcp_list_tools", "server_label": "srv", "tools": []},
        mcp_call("mcp_1", "add", "2"),
        mcp_call("mcp_2", "lookup", None, error="down"),
        {"type": "mcp_approval_request", "id": "mcpr_1"},
        {"type": "reasoning", "id": "rs_1", "encrypted_content": "x", "summary": []},
        call("c1"),
        output("c1"),
    ]
    view = model_view(items, lambda server, name: f"{server}_{name}")
    assert view == [
        {"type": "message", "role": "user", "content": "q"},
        {"type": "function_call", "call_id": "mcp_1", "name": "srv_add", "arguments": '{"a":1}'},
        {"type": "function_call", "call_id": "mcp_2", "name": "srv_lookup", "arguments": '{"a":1}'},
        {"type": "function_call_output", "call_id": "mcp_1", "output": "2"},
        {"type": "function_call_output", "call_id": "mcp_2", "output": "Error: down"},
        {"type": "reasoning", "id": "rs_1", "encrypted_content": "x", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
        output("c1"),
    ]


def test_model_view_never_sends_a_bare_reference():
    # References are resolved before the loop; one that were not would keep its id, the whole of it.
    reference = {"type": "item_reference", "id": "msg_1"}
    assert model_view([reference], lambda server, name: name) == [reference]
