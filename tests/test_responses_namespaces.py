"""Codex CLI's `namespace` tools end to end: the official `openai` SDK -> a real gateway process ->
fake upstreams (tests/fakes). A translated destination (Anthropic, Gemini, an OpenAI-compatible chat
API) gets each namespace's functions as tools of their own under flat names; its model calls one by
that name; the client sees the namespaced call the Responses API emits (whole and streamed); the
next turn's history, sent back in namespace form, reaches the provider under the flat name again.
The OpenAI destination gets the body as sent. Hosted tools a translated destination cannot run,
forced by tool_choice, are a 400 in OpenAI's error shape.

The tool and item shapes are Codex CLI 0.171.0's, as recorded (tests/golden/openai_responses/
decode_codex_namespace.in.json)."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from tests.conftest import SECRETS
from tests.expected import upstream_tool_names

TRANSLATED = ["anthropic", "gemini", "compat"]
AGENTS = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Tools for spawning and managing sub-agents.",
    "tools": [
        {"type": "function", "name": "close_agent", "description": "Close an agent.", "strict": False,
         "parameters": {"type": "object", "properties": {"target": {"type": "string"}}, "required": ["target"], "additionalProperties": False}},
        {"type": "function", "name": "wait_agent", "description": "Wait for agents.", "strict": False,
         "parameters": {"type": "object", "properties": {"targets": {"type": "array", "items": {"type": "string"}}}, "required": ["targets"]}},
    ],
}  # fmt: skip
TOOLS = [
    {"type": "function", "name": "exec_command", "description": "Run a command.", "strict": False,
     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
    AGENTS,
    {"type": "web_search", "external_web_access": False},
]  # fmt: skip
FLAT_TOOLS = ["exec_command", "multi_agent_v1__close_agent", "multi_agent_v1__wait_agent"]
# The fakes call the tool a [[tool NAME {...}]] directive names: here, as a model would, the flat name.
QUESTION = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": 'stop it [[tool multi_agent_v1__close_agent {"target": "7"}]]'}]}]


@pytest.fixture(scope="module")
def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/codex/v1", api_key=gateway.admin_token, max_retries=0, timeout=20)


@pytest.fixture
def fake(fake_upstream):
    fake_upstream.clear()
    return fake_upstream


def upstream_history_calls(provider: str, body: dict) -> list[tuple[str, str]]:
    """(name of the call, name or id its result answers) of the last assistant turn and result."""
    if provider == "compat":
        call, result = body["messages"][-2]["tool_calls"][0], body["messages"][-1]
        return [(call["function"]["name"], call["id"]), ("result", result["tool_call_id"])]
    if provider == "anthropic":
        call, result = body["messages"][-2]["content"][0], body["messages"][-1]["content"][0]
        return [(call["name"], call["id"]), ("result", result["tool_use_id"])]
    call, result = body["contents"][-2]["parts"][0]["functionCall"], body["contents"][-1]["parts"][0]["functionResponse"]
    return [(call["name"], "gemini"), ("result", result["name"])]


@pytest.mark.parametrize("provider", TRANSLATED)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_namespaced_call_round_trip(client, fake, provider, stream):
    if stream:
        with client.responses.stream(model=provider, input=QUESTION, tools=TOOLS) as events:
            seen = list(events)
            first = events.get_final_response()
        named = [e.item for e in seen if e.type in ("response.output_item.added", "response.output_item.done")]
        assert [(i.type, i.namespace, i.name) for i in named] == [("function_call", "multi_agent_v1", "close_agent")] * 2
        deltas = "".join(e.delta for e in seen if e.type == "response.function_call_arguments.delta")
        assert json.loads(deltas) == {"target": "7"}
    else:
        first = client.responses.create(model=provider, input=QUESTION, tools=TOOLS)
    [call] = first.output
    assert (call.type, call.namespace, call.name, json.loads(call.arguments)) == (
        "function_call", "multi_agent_v1", "close_agent", {"target": "7"},
    )  # fmt: skip
    assert "multi_agent_v1__" not in first.model_dump_json()
    sent = fake.requests[-1]["json"]
    assert upstream_tool_names(provider, sent) == FLAT_TOOLS  # web_search dropped: no such tool there

    # Turn two, as Codex sends it: the call in namespace form, then its output.
    fake.clear()
    history = [*QUESTION, call.model_dump(exclude_none=True), {"type": "function_call_output", "call_id": call.call_id, "output": "closed"}]
    assert history[1]["namespace"] == "multi_agent_v1"
    final = client.responses.create(model=provider, input=history, tools=TOOLS)
    assert final.output_text == "tool said: closed"
    sent = fake.requests[-1]["json"]
    assert upstream_tool_names(provider, sent) == FLAT_TOOLS
    answered = call.call_id if provider != "gemini" else "multi_agent_v1__close_agent"
    assert upstream_history_calls(provider, sent) == [
        ("multi_agent_v1__close_agent", call.call_id if provider != "gemini" else "gemini"), ("result", answered),
    ]  # fmt: skip


def test_forced_namespaced_function(client, fake):
    choice = {"type": "function", "name": "wait_agent", "namespace": "multi_agent_v1"}
    response = client.responses.create(model="anthropic", input="wait", tools=TOOLS, tool_choice=choice)  # type: ignore[arg-type]
    assert [(c.namespace, c.name) for c in response.output] == [("multi_agent_v1", "wait_agent")]
    assert fake.requests[-1]["json"]["tool_choice"] == {"type": "tool", "name": "multi_agent_v1__wait_agent"}


def test_openai_destination_gets_the_namespace_as_sent(client, fake):
    history = [*QUESTION, {"type": "function_call", "name": "close_agent", "namespace": "multi_agent_v1", "arguments": "{}", "call_id": "call_1"},
               {"type": "function_call_output", "call_id": "call_1", "output": "closed"}]  # fmt: skip
    client.responses.create(model="openai", input=history, tools=TOOLS)
    sent = fake.requests[-1]["json"]
    assert sent["tools"] == TOOLS and sent["input"] == history


@pytest.mark.parametrize(
    ("choice", "param"),
    [({"type": "web_search"}, "tool_choice.type"), ("required", "tool_choice")],
)
def test_forcing_a_dropped_hosted_tool_is_400(gateway, fake, choice, param):
    body = {"model": "anthropic", "input": "search", "tools": [{"type": "web_search"}], "tool_choice": choice}
    for path in ("/openai/v1/responses", "/codex/v1/responses"):
        response = requests.post(gateway.url + path, json=body, headers={"Authorization": f"Bearer {gateway.admin_token}"}, timeout=20)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", param)
        assert "hosted tools" in error["message"] and all(s not in response.text for s in SECRETS.values())
    assert fake.requests == []  # refused before any upstream call
