"""Responses tools for translated destinations: namespaces flattened to names every provider takes,
calls mapped back to the namespaced items the Responses API emits, history mapped forward again,
tool_choice that names a namespaced tool or forces a dropped one. Goldens for the same cases are in
tests/test_wire_openai_responses.py (decode_codex_namespace, response_namespace, stream_namespace)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson
import pytest

from aigw.canonical import ChatResponse, StreamEvent, ToolChoice
from aigw.errors import GatewayError
from aigw.wire import openai_responses as wire
from aigw.wire import openai_responses_stream as wire_stream
from aigw.wire.openai_responses_tools import ToolNames, flat_name
from aigw.wire.schemas import conform
from aigw.wire.schemas.bounds import MAX_TOOLS
from aigw.wire.schemas.responses import ResponsesRequest
from tests.goldens import Goldens

load = Goldens("openai_responses").load
# Anthropic's, OpenAI chat's and Gemini's rules for a function's name, all at once.
PROVIDER_RULES = [re.compile(r"[a-zA-Z0-9_-]{1,128}"), re.compile(r"[a-zA-Z0-9_-]{1,64}"), re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}")]


def _fn(name: str, **fields: Any) -> dict[str, Any]:
    return {"type": "function", "name": name, "parameters": {"type": "object", "properties": {}}, **fields}


def _namespace(name: str, *members: dict[str, Any], description: str = "Agents.") -> dict[str, Any]:
    return {"type": "namespace", "name": name, "description": description, "tools": list(members)}


AGENTS = _namespace("multi_agent_v1", _fn("close_agent"), _fn("wait_agent"))


@pytest.mark.parametrize(
    ("namespace", "name", "taken", "expected"),
    [
        ("multi_agent_v1", "close_agent", set(), "multi_agent_v1__close_agent"),
        # Taken by a top-level tool: hashed, so neither shadows the other.
        ("multi_agent_v1", "close_agent", {"multi_agent_v1__close_agent"}, "multi_agent_v1__close_agent_4e4a21c0ae"),
        # Characters no provider takes, a leading digit (Gemini), too long (OpenAI chat, Gemini).
        ("crm.v2", "lookup", set(), "crm_v2__lookup_16acaeef91"),
        ("9ns", "lookup", set(), "_9ns__lookup_2c2e4ddf62"),
        ("mcp__company_knowledge_base_with_a_long_server_name__", "search_documents", set(),
         "mcp__company_knowledge_base_with_a___search_documents_fc33beb01b"),
    ],
)  # fmt: skip
def test_flat_name(namespace: str, name: str, taken: set[str], expected: str) -> None:
    flat = flat_name(namespace, name, taken)
    assert flat == expected
    assert all(rule.fullmatch(flat) for rule in PROVIDER_RULES)


def test_flat_names_fit_every_provider_and_never_clash() -> None:
    namespaces = ["n" * 256, "é-ü", "a.b", "a_b", "1", "-", "x" * 62]
    tools = [_fn("shared"), *(_namespace(ns, _fn("shared"), _fn("y" * 64)) for ns in namespaces)]
    request = wire.decode_request({"model": "m", "input": "hi", "tools": tools})
    names = [t.name for t in request.tools]
    assert len(names) == len(set(names)) == 1 + 2 * len(namespaces)
    assert all(rule.fullmatch(name) for name in names for rule in PROVIDER_RULES)
    again = ToolNames(tools)  # built from the body alone: the same on every turn
    assert [again.origin(name) for name in names[1:3]] == [("n" * 256, "shared"), ("n" * 256, "y" * 64)]


def test_a_top_level_tool_keeps_its_name_over_a_namespaced_one() -> None:
    tools = [_namespace("a", _fn("b")), _fn("a__b")]
    request = wire.decode_request({"model": "m", "input": "hi", "tools": tools})
    assert [t.name for t in request.tools] == ["a__b_" + flat_name("a", "b", {"a__b"}).rsplit("_", 1)[1], "a__b"]
    names = ToolNames(tools)
    assert names.origin("a__b") == (None, "a__b")
    assert names.origin(request.tools[0].name) == ("a", "b")


def test_namespaced_calls_round_trip_to_the_same_flat_names() -> None:
    """The model calls flat names; the client sees namespaced items; sent back on the next turn,
    they reach the provider as the very calls the model made, outputs paired by call id."""
    case = load("response_namespace.in.json")
    response = msgspec.convert(case["response"], ChatResponse)
    output = wire.encode_response(response, case["body"])["output"]
    calls = [i for i in output if i["type"] in ("function_call", "custom_tool_call")]
    assert [(c.get("namespace"), c["name"]) for c in calls] == [
        ("multi_agent_v1", "close_agent"),
        ("multi_agent_v1", "send_note"),
        ("mcp__company_knowledge_base_with_a_long_server_name__", "search_documents"),
        (None, "exec_command"),
    ]
    assert "namespace" not in calls[3]
    outputs = [
        {"type": f"{'custom_tool_call' if c['type'] == 'custom_tool_call' else 'function_call'}_output", "call_id": c["call_id"], "output": "ok"}
        for c in calls
    ]  # fmt: skip
    body = {**case["body"], "input": [{"role": "user", "content": "go"}, *output, *outputs]}
    request = wire.decode_request(body)
    turn = request.messages[1]
    model_calls = case["response"]["choices"][0]["message"]["tool_calls"]
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [(c["id"], c["name"], c["arguments"]) for c in model_calls]
    assert [(m.tool_call_id, m.name) for m in request.messages[2:]] == [(c["id"], c["name"]) for c in model_calls]


def test_echoed_namespace_functions_have_strict() -> None:
    case = load("response_namespace.in.json")
    tools = wire.encode_response(msgspec.convert(case["response"], ChatResponse), case["body"])["tools"]
    members = [m for t in tools if t["type"] == "namespace" for m in t["tools"] if m["type"] == "function"]
    assert [(m["name"], m["strict"], m["description"]) for m in members] == [
        ("close_agent", False, "Close an agent."), ("search_documents", None, None),
    ]


def test_a_stream_never_shows_a_flat_name() -> None:
    case = load("stream_namespace.in.json")
    events = msgspec.convert(case["events"], list[StreamEvent])
    encoder = wire_stream.StreamEncoder(case["body"])
    data = b"".join(encoder.encode(e) for e in events) + encoder.finish()
    assert b"multi_agent_v1__" not in data and b"fc33beb01b" not in data
    final = orjson.loads(data.rsplit(b"data: ", 1)[1])["response"]
    assert [(i.get("namespace"), i.get("name")) for i in final["output"][1:]] == [
        ("multi_agent_v1", "close_agent"),
        ("multi_agent_v1", "send_note"),
        ("mcp__company_knowledge_base_with_a_long_server_name__", "search_documents"),
    ]


@pytest.mark.parametrize(
    ("choice", "expected", "names"),
    [
        ({"type": "function", "name": "close_agent", "namespace": "multi_agent_v1"},
         ToolChoice(mode="tool", name="multi_agent_v1__close_agent"), None),
        # No namespace given: the one namespaced tool of that name.
        ({"type": "function", "name": "wait_agent"}, ToolChoice(mode="tool", name="multi_agent_v1__wait_agent"), None),
        ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "namespace", "name": "multi_agent_v1"}]},
         ToolChoice(mode="required"), ["multi_agent_v1__close_agent", "multi_agent_v1__wait_agent"]),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "close_agent", "namespace": "multi_agent_v1"}, {"type": "function", "name": "f"}]},
         ToolChoice(mode="auto"), ["f", "multi_agent_v1__close_agent"]),
    ],
)  # fmt: skip
def test_tool_choice_names_namespaced_tools(choice: Any, expected: ToolChoice, names: list[str] | None) -> None:
    tools = [_fn("f"), AGENTS, {"type": "web_search"}]
    request = wire.decode_request({"model": "m", "input": "x", "tools": tools, "tool_choice": choice})
    assert request.tool_choice == expected
    all_names = ["f", "multi_agent_v1__close_agent", "multi_agent_v1__wait_agent"]
    assert [t.name for t in request.tools] == (names if names is not None else all_names)


@pytest.mark.parametrize(
    ("tools", "input", "param"),
    [
        ([{"type": "namespace", "tools": [_fn("f")]}], "hi", "tools[0].name"),
        ([{"type": "namespace", "name": "", "tools": [_fn("f")]}], "hi", "tools[0].name"),
        ([{"type": "namespace", "name": "n" * 257, "tools": [_fn("f")]}], "hi", "tools[0].name"),
        ([{"type": "namespace", "name": "ns", "tools": []}], "hi", "tools[0].tools"),
        ([{"type": "namespace", "name": "ns"}], "hi", "tools[0].tools"),
        ([_namespace("ns", {"type": "web_search"})], "hi", "tools[0].tools[0].type"),
        ([_namespace("ns", _namespace("inner", _fn("f")))], "hi", "tools[0].tools[0].type"),
        ([_namespace("ns", _fn("f"), _fn("bad name"))], "hi", "tools[0].tools[1].name"),
    ],
)
def test_namespace_shape_400_on_every_path(tools: list[Any], input: Any, param: str) -> None:
    body = {"model": "m", "input": input, "tools": tools}
    for check in (wire.validate_request, wire.decode_request):
        with pytest.raises(GatewayError) as caught:
            check(body)
        assert (caught.value.status, caught.value.param) == (400, param)


def test_translation_400s() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "close_agent", "namespace": 5, "arguments": "{}"}
    with pytest.raises(GatewayError) as caught:
        wire.decode_request({"model": "m", "input": [call], "tools": [AGENTS]})
    assert (caught.value.status, caught.value.param) == (400, "input[0].namespace")
    twice = _namespace("ns", _fn("f"), _fn("f"))
    with pytest.raises(GatewayError) as caught:
        wire.decode_request({"model": "m", "input": "hi", "tools": [twice]})
    assert caught.value.param == "tools" and "used twice" in caught.value.message


def test_tool_count_is_bounded_counting_namespace_members() -> None:
    half = MAX_TOOLS // 2 + 1
    tools = [_namespace(ns, *(_fn(f"f{i}") for i in range(half))) for ns in ("a", "b")]
    body = {"model": "m", "input": "hi", "tools": tools}
    conform(body, ResponsesRequest)  # each list within the schema's bound ...
    with pytest.raises(GatewayError) as caught:
        wire.decode_request(body)  # ... their sum is not
    assert (caught.value.status, caught.value.param) == (400, "tools")
    with pytest.raises(GatewayError) as caught:
        conform({**body, "tools": [_namespace("a", *(_fn(f"f{i}") for i in range(MAX_TOOLS + 1)))]}, ResponsesRequest)
    assert (caught.value.status, caught.value.param) == (400, "tools[0].tools")
