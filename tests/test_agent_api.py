"""The agent API at /mlflow/v1/responses end to end: the official `openai` SDK's `responses` client
(and raw HTTP for the wire details) -> a real gateway process -> fake model upstreams, with real MCP
servers (the MCP SDK's server side, over streamable HTTP and over stdio) and Python functions as
hosted tools.

The fake models follow tests/fakes/scenario.py: `[[tool NAME {...}]]` in the last user message makes
them call NAME; after tool results they answer "tool said: <results>" (or call again when a result
holds a directive). `openai` passes the Responses body through to the fake's /v1/responses; the
others are translated (Anthropic Messages, Gemini, Chat Completions)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests
import yaml

from tests.conftest import PROVIDER_DESTINATIONS, SECRETS
from tests.fakes.mcp_server import STDIO_COMMAND, start_http_server
from tests.gateway_process import GatewayProcess, cleanup, start_gateway
from tests.goldens import Goldens

ENDPOINTS = ["openai", "anthropic", "gemini", "compat"]  # openai: pass-through; the others translated
MCP_TOKEN = "mcp-SECRET-7788"
MAX_BACKGROUND_SECONDS = 2.5
ROOT = Path(__file__).resolve().parent.parent
goldens = Goldens("agent")

# The Response fields the Open Responses spec (and OpenAI) always carry.
RESPONSE_FIELDS = {
    "id", "object", "created_at", "status", "background", "completed_at", "error", "frequency_penalty",
    "incomplete_details", "instructions", "max_output_tokens", "max_tool_calls", "model", "output",
    "parallel_tool_calls", "presence_penalty", "previous_response_id", "prompt_cache_key", "reasoning",
    "prompt_cache_retention", "safety_identifier", "service_tier", "store", "temperature", "text", "tool_choice", "tools", "top_logprobs",
    "top_p", "truncation", "usage", "user", "metadata",
}  # fmt: skip

CLIENT_TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look something up.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}


def agent_config(fake_url: str, mcp_url: str, span_file: Path) -> str:
    endpoints = []
    for name in ENDPOINTS:
        destination = {k: v.replace("{fake}", fake_url) for k, v in PROVIDER_DESTINATIONS[name].items()}
        endpoints.append({"name": name, "destinations": [destination]})
    slow = {k: v.replace("{fake}", fake_url) for k, v in PROVIDER_DESTINATIONS["anthropic"].items()}
    endpoints.append({"name": "slow", "destinations": [{**slow, "model": "slow-4000"}]})
    slow_openai = {k: v.replace("{fake}", fake_url) for k, v in PROVIDER_DESTINATIONS["openai"].items()}
    endpoints.append({"name": "slow-openai", "destinations": [{**slow_openai, "model": "slow-4000"}]})
    endpoints.append({"name": "limited", "destinations": [slow], "rate_limits": [{"key": "endpoint", "tokens": 60}]})
    mcp_auth = {"Authorization": f"Bearer {MCP_TOKEN}"}
    config = {
        "server": {"token_refresh_seconds": 0.5},
        "endpoints": endpoints,
        "agent": {
            "max_turns": 3,
            "max_background_seconds": MAX_BACKGROUND_SECONDS,
            "allow_inline_mcp": True,
            "inline_mcp_allowed_hosts": ["127.0.0.1"],  # the test MCP servers are local
            "connections": [
                {"name": "weather", "url": mcp_url, "headers": mcp_auth, "require_approval": "never"},
                {"name": "local", "command": STDIO_COMMAND[0], "args": STDIO_COMMAND[1:], "require_approval": "never"},
                {"name": "guarded", "url": mcp_url, "headers": mcp_auth, "timeout": 1.0},
            ],
            "functions": [
                {"name": "add_numbers", "function": "tests.agent_functions:add"},
                {"name": "failing", "function": "tests.agent_functions:fail"},
                {"name": "sleepy", "function": "tests.agent_functions:sleepy", "timeout": 0.5},
                {"name": "again", "function": "tests.agent_functions:call_again"},
            ],
        },
        "tracing": {"enabled": True, "file": str(span_file)},
    }
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    process, url = start_http_server(token=MCP_TOKEN)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def agw(fake_upstream, mcp_url, tmp_path_factory) -> Iterator[GatewayProcess]:
    span_file = tmp_path_factory.mktemp("spans") / "spans.jsonl"
    env = {**SECRETS, "PYTHONPATH": str(ROOT)}
    process = start_gateway(agent_config(fake_upstream.url, mcp_url, span_file), env=env)
    process.span_file = span_file  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        cleanup(process)


@pytest.fixture(scope="module")
def client(agw) -> openai.OpenAI:
    return openai.OpenAI(base_url=agw.url + "/mlflow/v1", api_key=agw.admin_token, max_retries=0)


def post(agw: GatewayProcess, body: dict, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or agw.admin_token}", **kwargs.pop("headers", {})}
    return requests.post(agw.url + "/mlflow/v1/responses", json=body, headers=headers, timeout=30, **kwargs)


def sse_events(response: requests.Response) -> tuple[list[dict], list[str]]:
    """(events, raw frames) of a Responses stream; checks each frame is one `event:` + one `data:`
    whose type is the event's name, and that the stream ends with `data: [DONE]`."""
    frames = [f for f in response.text.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    events = []
    for frame in frames[:-1]:
        name_line, data_line = frame.split("\n")
        event = json.loads(data_line.removeprefix("data: "))
        assert name_line == f"event: {event['type']}"
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events, frames


def items_of(response, kind: str) -> list:
    return [item for item in response.output if item.type == kind]


# --- plain, streamed, stored --------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_plain_response_carries_every_field_and_is_stored(client, agw, endpoint):
    response = client.responses.create(model=endpoint, input="hello agent", metadata={"k": "v"})
    assert response.status == "completed"
    assert response.output_text == "echo: hello agent"
    assert response.id.startswith("resp_") and response.metadata == {"k": "v"}
    raw = requests.get(f"{agw.url}/mlflow/v1/responses/{response.id}", headers={"Authorization": f"Bearer {agw.admin_token}"}).json()
    assert set(raw) == RESPONSE_FIELDS
    (message,) = raw["output"]
    assert message["content"][0]["logprobs"] == []
    assert raw["usage"]["total_tokens"] == raw["usage"]["input_tokens"] + raw["usage"]["output_tokens"] > 0
    assert client.responses.retrieve(response.id).output_text == "echo: hello agent"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_streamed_response_in_order_with_done(client, agw, endpoint):
    events, _ = sse_events(post(agw, {"model": endpoint, "input": "stream me", "stream": True}))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    final = events[-1]["response"]
    assert set(final) == RESPONSE_FIELDS and final["status"] == "completed"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "echo: stream me" == final["output"][0]["content"][0]["text"]
    # The SDK reads the same stream, and the stored response is the streamed one.
    with client.responses.stream(model=endpoint, input="stream me") as stream:
        done = stream.get_final_response()
    assert done.output_text == "echo: stream me"
    assert client.responses.retrieve(done.id).output_text == "echo: stream me"


def event_shapes(events: list[dict]) -> list[dict]:
    """Each event's type, every field it carries (names), its output index and its item's kind
    and state: what a golden file pins down without ids and timestamps."""
    shapes = []
    for event in events:
        shape = {"type": event["type"], "fields": sorted(event)}
        if "output_index" in event:
            shape["output_index"] = event["output_index"]
        if "item" in event:
            item = event["item"]
            shape["item"] = {k: item.get(k) for k in ("type", "status", "name", "output", "error") if k in item}
            shape["item_fields"] = sorted(item)
        shapes.append(shape)
    return shapes


@pytest.mark.parametrize(
    ("golden", "endpoint", "input", "tools"),
    [
        ("mcp_call_stream.json", "anthropic", '[[tool add {"a": 2, "b": 3}]]', [{"type": "connection", "name": "weather"}]),
        ("mcp_call_pass_through_stream.json", "openai", '[[tool add {"a": 2, "b": 3}]]', [{"type": "connection", "name": "weather"}]),
        (
            "function_and_client_call_stream.json", "gemini", '[[tool add_numbers {"a": 1}]] [[tool lookup {"query": "q"}]]',
            [{"type": "hosted_function", "name": "add_numbers"}, CLIENT_TOOL],
        ),
    ],
)
def test_stream_event_order_golden(agw, client, golden, endpoint, input, tools):
    """Hosted calls between model turns, streamed: one response, one sequence, every field."""
    events, _ = sse_events(post(agw, {"model": endpoint, "input": input, "stream": True, "tools": tools}))
    goldens.json(golden, event_shapes(events))
    for event in events:
        if "response" in event:
            assert set(event["response"]) == RESPONSE_FIELDS
    final = events[-1]["response"]
    assert [e["item"] for e in events if e["type"] == "response.output_item.done"] == final["output"]
    # The SDK takes the same stream, event by event.
    kinds = [event.type for event in client.responses.create(model=endpoint, input=input, tools=tools, stream=True)]
    assert kinds == [e["type"] for e in events]


def test_input_items_and_delete(client):
    response = client.responses.create(model="anthropic", input=[{"role": "user", "content": "one"}, {"role": "user", "content": "two"}])
    items = client.responses.input_items.list(response.id)
    assert [i.content[0].text for i in items.data] == ["two", "one"]  # newest first
    ascending = client.responses.input_items.list(response.id, order="asc", limit=1)
    assert [i.content[0].text for i in ascending.data] == ["one"] and ascending.has_more
    with pytest.raises(openai.BadRequestError):
        client.responses.retrieve(response.id, stream=True)  # replaying a stored stream is not offered
    deleted = client.responses.delete(response.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_a_client_leaving_a_stream_stops_the_run(agw, fake_upstream):
    fake_upstream.clear()
    with post(agw, {"model": "slow", "input": "never mind", "stream": True}, stream=True) as answer:
        assert answer.status_code == 200  # headers only come with the first event: wait for the model
    deadline = time.monotonic() + 5
    while not (fake_upstream.requests and fake_upstream.requests[0]["cancelled"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_upstream.requests[0]["cancelled"]


def test_store_false_is_not_kept(client):
    response = client.responses.create(model="anthropic", input="forget me", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


# --- conversation state --------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_previous_response_id_continues_without_resending(client, fake_upstream, endpoint):
    first = client.responses.create(model=endpoint, input="my name is Ada", instructions="Be brief.")
    fake_upstream.clear()
    second = client.responses.create(model=endpoint, input="what is my name", previous_response_id=first.id)
    assert second.output_text == "echo: what is my name"
    assert second.previous_response_id == first.id
    sent = json.dumps(fake_upstream.requests[-1]["json"])
    assert "my name is Ada" in sent and "echo: my name is Ada" in sent  # the history went upstream
    assert sent.count("Be brief.") == 1  # in the first answer only: instructions are not carried over


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_client_tool_round_trip(client, endpoint):
    first = client.responses.create(model=endpoint, input="find the answer", tools=[CLIENT_TOOL])
    (call,) = items_of(first, "function_call")
    assert call.name == "lookup" and json.loads(call.arguments) == {"query": "find the answer"}
    second = client.responses.create(
        model=endpoint, previous_response_id=first.id, tools=[CLIENT_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "42"}],
    )  # fmt: skip
    assert second.output_text == "tool said: 42"


def test_only_the_creator_sees_a_response(client, agw):
    response = client.responses.create(model="anthropic", input="private")
    other = agw.cli("tokens", "create", "--name", "someone-else", "--create-principal").stdout.strip()
    headers = {"Authorization": f"Bearer {other}"}
    got = requests.get(f"{agw.url}/mlflow/v1/responses/{response.id}", headers=headers)
    assert got.status_code == 404 and got.json()["error"]["message"] == f"Response with id '{response.id}' not found."
    assert requests.delete(f"{agw.url}/mlflow/v1/responses/{response.id}", headers=headers).status_code == 404
    continued = post(agw, {"model": "anthropic", "input": "x", "previous_response_id": response.id}, token=other)
    assert continued.status_code in (403, 404)  # not allowed on the endpoint, and the response is not theirs
    assert client.responses.retrieve(response.id).id == response.id


# --- bad input: 400s that say which ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "param", "message"),
    [
        ({"input": "x", "stream": True, "background": True}, 400, "background", "stream and background"),
        ({"input": "x", "background": True, "store": False}, 400, "store", "background requires store"),
        ({"input": "x", "tools": [{"type": "function", "name": "bad name!", "parameters": {}}]}, 400, "tools[0].name", "^[a-zA-Z0-9_-]{1,64}$"),
        ({"input": [{"type": "function_call_output", "call_id": "call_nope", "output": "1"}]}, 400, "input[0]", "call_nope"),
        (
            {"input": [{"type": "function_call", "call_id": "call_open", "name": "lookup", "arguments": "{}"}], "tools": [CLIENT_TOOL]},
            400, "input", "No tool output found for function call call_open",
        ),
        ({"input": "x", "tools": [{"type": "connection", "name": "nope"}]}, 400, "tools[0]", "Unknown connection 'nope'"),
        ({"input": "x", "tools": [{"type": "uc_function", "uc_function": {"name": "nope"}}]}, 400, "tools[0]", "Unknown function 'nope'"),
        ({"input": "x", "conversation": "conv_1"}, 400, "conversation", "previous_response_id"),
        ({"input": "x", "previous_response_id": "resp_missing"}, 404, "previous_response_id", "resp_missing"),
        ({"input": [{"type": "item_reference", "id": "msg_missing"}]}, 404, "input", "Item with id 'msg_missing' not found"),
        ({"input": [{"type": "message", "role": "user", "content": "x"}, {"type": "item_reference"}]}, 400, "input[1].id", "input[1].id"),
        ({"input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_x", "approve": True}]}, 400, "input[0]", "mcpr_x"),
        ({"input": "x", "tools": [{"type": "mcp", "server_label": "s", "server_url": "http://127.0.0.1:9/mcp"}]}, 424, "tools[0]", "MCP server 's'"),
    ],
)
def test_bad_requests(agw, body, status, param, message):
    answer = post(agw, {"model": "anthropic", **body})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and message in error["message"]


def test_call_without_output_after_previous_response(client):
    first = client.responses.create(model="anthropic", input="find it", tools=[CLIENT_TOOL])
    (call,) = items_of(first, "function_call")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="anthropic", input="never mind", previous_response_id=first.id, tools=[CLIENT_TOOL])
    assert call.call_id in caught.value.message


def test_inline_mcp_needs_the_operators_consent(gateway):
    """The session gateway keeps the default: no inline servers."""
    body = {"model": "anthropic", "input": "x", "tools": [{"type": "mcp", "server_label": "s", "server_url": "http://127.0.0.1:9/mcp"}]}
    answer = post(gateway, body)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "tools[0].server_url"


# --- hosted tools ------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "tool",
    [
        {"type": "connection", "name": "weather"},
        {"type": "uc_connection", "uc_connection": {"name": "local"}},
        {"type": "mcp", "server_label": "weather"},
    ],
    ids=["http-connection", "stdio-uc-connection", "mcp-by-label"],
)
def test_mcp_connection_loop(client, endpoint, tool):
    response = client.responses.create(model=endpoint, input='[[tool add {"a": 2, "b": 3}]]', tools=[tool])
    kinds = [item.type for item in response.output]
    assert kinds == ["mcp_list_tools", "mcp_call", "message"]
    listing, call, _ = response.output
    assert {t.name for t in listing.tools} == {"add", "lookup_city", "slow"}
    assert call.name == "add" and call.output == "5" and call.error is None
    assert response.output_text == "tool said: 5"
    # The listing is not repeated when the conversation continues.
    more = client.responses.create(model=endpoint, input='[[tool add {"a": 1, "b": 1}]]', tools=[tool], previous_response_id=response.id)
    assert [item.type for item in more.output] == ["mcp_call", "message"] and more.output_text == "tool said: 2"


def test_inline_mcp_server_with_headers(client, mcp_url):
    tool = {
        "type": "mcp", "server_label": "inline", "server_url": mcp_url, "require_approval": "never",
        "headers": {"Authorization": f"Bearer {MCP_TOKEN}"}, "allowed_tools": ["lookup_city"],
    }  # fmt: skip
    response = client.responses.create(model="gemini", input='[[tool lookup_city {"city": "Oslo"}]]', tools=[tool])
    listing = items_of(response, "mcp_list_tools")[0]
    assert [t.name for t in listing.tools] == ["lookup_city"]
    assert response.output_text == "tool said: Oslo: 21 C, sunny"


def test_failing_mcp_tool_gives_the_model_an_error(client):
    response = client.responses.create(
        model="anthropic", input='[[tool lookup_city {"city": "Atlantis"}]]', tools=[{"type": "connection", "name": "weather"}]
    )
    (call,) = items_of(response, "mcp_call")
    assert call.status == "failed" and "under water" in call.error and call.output is None
    assert response.status == "completed" and response.output_text.startswith("tool said: Error: ")


@pytest.mark.parametrize("endpoint", ["openai", "anthropic"])
def test_approval_flow(client, endpoint):
    tools = [{"type": "connection", "name": "guarded"}]
    first = client.responses.create(model=endpoint, input='[[tool add {"a": 20, "b": 22}]]', tools=tools)
    (request,) = items_of(first, "mcp_approval_request")
    assert request.name == "add" and request.server_label == "guarded" and not items_of(first, "mcp_call")
    approved = client.responses.create(
        model=endpoint, tools=tools, previous_response_id=first.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}],
    )  # fmt: skip
    (call,) = items_of(approved, "mcp_call")
    assert call.output == "42" and call.approval_request_id == request.id
    assert approved.output_text == "tool said: 42"
    declined = client.responses.create(
        model=endpoint, tools=tools, previous_response_id=first.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": False}],
    )  # fmt: skip
    (call,) = items_of(declined, "mcp_call")
    assert call.output is None and "declined" in call.error


def test_mcp_tool_timeout_is_an_error_result(client):
    tools = [{"type": "connection", "name": "guarded", "require_approval": "never"}]  # guarded: 1 s per call
    started = time.monotonic()
    response = client.responses.create(model="anthropic", input='[[tool slow {"seconds": 5}]]', tools=tools)
    assert time.monotonic() - started < 4.5
    (call,) = items_of(response, "mcp_call")
    assert call.status == "failed" and call.error
    assert response.status == "completed"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_python_function_loop(client, endpoint):
    tools = [{"type": "hosted_function", "name": "add_numbers"}, CLIENT_TOOL]
    response = client.responses.create(model=endpoint, input='[[tool add_numbers {"a": 40}]]', tools=tools)
    call, output, message = response.output  # the call as the model made it, then its output
    assert call.type == "function_call" and call.name == "add_numbers"
    assert output.type == "function_call_output" and output.call_id == call.call_id and output.output == "42"
    assert message.type == "message" and response.output_text == "tool said: 42"


def test_python_function_schema_reaches_the_model(client, fake_upstream):
    fake_upstream.clear()
    client.responses.create(model="openai", input="x", tools=[{"type": "uc_function", "uc_function": {"name": "add_numbers"}}])
    sent = fake_upstream.requests[0]["json"]["tools"]
    (tool,) = sent
    assert tool["type"] == "function" and tool["name"] == "add_numbers" and tool["strict"] is False
    assert tool["parameters"]["required"] == ["a"] and tool["parameters"]["properties"]["b"]["default"] == 2
    assert tool["description"].startswith("Add two integers.")


@pytest.mark.parametrize(
    ("function", "arguments", "error"),
    [("failing", {"x": "zz"}, "ValueError: bad x: zz"), ("sleepy", {"seconds": 3}, "timed out"), ("add_numbers", {"a": "x"}, "invalid arguments")],
)
def test_python_function_failures_are_told_to_the_model(client, function, arguments, error):
    tools = [{"type": "hosted_function", "name": function}]
    response = client.responses.create(model="anthropic", input=f"[[tool {function} {json.dumps(arguments)}]]", tools=tools)
    (output,) = items_of(response, "function_call_output")
    assert output.output.startswith("Error: ") and error in output.output
    assert response.status == "completed" and response.output_text.startswith("tool said: Error: ")


def test_client_and_hosted_calls_in_one_turn(client):
    tools = [{"type": "hosted_function", "name": "add_numbers"}, CLIENT_TOOL]
    first = client.responses.create(model="anthropic", input='[[tool add_numbers {"a": 1}]] [[tool lookup {"query": "q"}]]', tools=tools)
    kinds = [item.type for item in first.output]
    assert kinds.count("function_call") == 2 and kinds.count("function_call_output") == 1  # the hosted one ran
    pending = next(i for i in items_of(first, "function_call") if i.name == "lookup")
    second = client.responses.create(
        model="anthropic", tools=tools, previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": pending.call_id, "output": "found"}],
    )  # fmt: skip
    assert second.output_text == "tool said: 3 | found"  # the model sees both results of its turn


def test_a_namespaced_client_tool_is_not_taken_for_a_hosted_one(client):
    """A client tool in a namespace (Codex's shape) may share its bare name with a hosted function:
    the model's call to it (a flat name for a translated destination) is the client's to run."""
    namespace = {"type": "namespace", "name": "calc", "description": "Client math.", "tools": [
        {"type": "function", "name": "add_numbers", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}},
    ]}  # fmt: skip
    tools = [{"type": "hosted_function", "name": "add_numbers"}, namespace]
    response = client.responses.create(model="anthropic", input='[[tool calc__add_numbers {"a": 1}]]', tools=tools)
    assert [(i.type, i.namespace, i.name) for i in response.output] == [("function_call", "calc", "add_numbers")]
    assert response.status == "completed"  # waiting for the client's output, nothing run by the gateway


def test_turn_limit_ends_incomplete(client):
    response = client.responses.create(model="anthropic", input='[[tool again {"name": "again"}]]', tools=[{"type": "hosted_function", "name": "again"}])
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_turns"
    assert len(items_of(response, "function_call_output")) == 3  # max_turns: 3 model calls, each called the tool


def test_max_tool_calls_then_the_model_answers(client):
    tools = [{"type": "hosted_function", "name": "add_numbers"}]
    response = client.responses.create(
        model="anthropic", tools=tools, max_tool_calls=1, input='[[tool add_numbers {"a": 1}]] [[tool add_numbers {"a": 2}]]'
    )
    outputs = [i.output for i in items_of(response, "function_call_output")]
    assert outputs[0] == "3" and "max_tool_calls" in outputs[1]
    assert response.status == "completed" and response.output_text.startswith("tool said: 3 | Error: ")


# --- background ---------------------------------------------------------------------------------------


def wait_for(client, id: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(id)
        if response.status not in ("queued", "in_progress") or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


@pytest.mark.parametrize("endpoint", ["openai", "anthropic"])
def test_background_poll(client, endpoint):
    queued = client.responses.create(model=endpoint, input='[[tool add {"a": 2, "b": 3}]]', background=True, tools=[{"type": "connection", "name": "weather"}])
    assert queued.status in ("queued", "in_progress") and queued.background is True and queued.output == []
    done = wait_for(client, queued.id)
    assert done.status == "completed" and done.output_text == "tool said: 5" and done.background is True


@pytest.mark.parametrize("endpoint", ["slow", "slow-openai"])  # translated, passed through
def test_background_cancel(client, agw, fake_upstream, endpoint):
    fake_upstream.clear()
    queued = client.responses.create(model=endpoint, input="take your time", background=True)
    time.sleep(0.3)
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    time.sleep(0.5)
    assert client.responses.retrieve(queued.id).status == "cancelled"
    (upstream,) = fake_upstream.requests
    assert upstream["cancelled"]  # the model call was stopped, not left to run
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(client.responses.create(model="anthropic", input="x").id)  # not a background one


def test_background_outlives_its_client_and_is_bounded(client, agw):
    # The client sends the request and goes away at once: the run goes on.
    response = post(agw, {"model": "anthropic", "input": "left alone", "background": True})
    gone = response.json()["id"]
    response.close()
    assert wait_for(client, gone).output_text == "echo: left alone"
    # A run longer than max_background_seconds is stopped and says so.
    slow = client.responses.create(model="slow", input="too slow", background=True)
    stopped = wait_for(client, slow.id, timeout=MAX_BACKGROUND_SECONDS + 5)
    assert stopped.status == "failed" and "longer than" in stopped.error.message


# --- accounting and tracing ---------------------------------------------------------------------------


def test_every_turns_tokens_are_recorded_and_limited(client, agw):
    response = client.responses.create(
        model="limited", input='[[tool add_numbers {"a": 1}]] ' + "padding " * 40,  # ~90 tokens a turn
        tools=[{"type": "hosted_function", "name": "add_numbers"}],
    )
    deadline = time.monotonic() + 5
    while not (records := [r for r in agw.usage_records() if r["endpoint"] == "limited"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    (record,) = records
    assert record["total_tokens"] == response.usage.total_tokens
    assert len(record["attempts"]) == 2  # two model turns
    assert record["total_tokens"] > 2 * 60
    # The endpoint allows 60 tokens a minute, and the loop's tokens count: it is used up at once.
    answer = post(agw, {"model": "limited", "input": "more"})
    assert answer.status_code == 429 and "60 tokens per minute" in answer.json()["error"]["message"]


def test_spans_follow_the_incoming_traceparent(client, agw):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    client.responses.create(
        model="anthropic", input='[[tool add_numbers {"a": 1}]]', tools=[{"type": "hosted_function", "name": "add_numbers"}],
        extra_headers=headers,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        spans = [json.loads(line) for line in agw.span_file.read_text().splitlines()] if agw.span_file.exists() else []
        ours = [s for s in spans if s["trace_id"] == trace_id]
        if len(ours) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    by_name = {}
    for span in ours:
        by_name.setdefault(span["name"], []).append(span)
    (root,) = by_name["aigw.agent.response"]
    assert root["parent_span_id"] == "00f067aa0ba902b7"
    assert len(by_name["aigw.agent.turn"]) == 2 and len(by_name["aigw.agent.tool"]) == 1
    assert all(s["parent_span_id"] == root["span_id"] for s in by_name["aigw.agent.turn"] + by_name["aigw.agent.tool"])
    assert by_name["aigw.agent.tool"][0]["attributes"]["gen_ai.tool.name"] == "add_numbers"


# --- many instances: state in the shared PostgreSQL ----------------------------------------------------


def test_two_instances_share_responses_and_cancellations(request, fake_upstream, mcp_url, tmp_path):
    """Responses live in the shared database: one instance's response is read, continued and
    cancelled through another; a run stopped by its instance's shut-down ends failed, not pending."""
    from tests.store_fixtures import _fresh_schema_url

    config = agent_config(fake_upstream.url, mcp_url, tmp_path / "spans.jsonl")
    env = {**SECRETS, "PYTHONPATH": str(ROOT), "AIGW_DATABASE_URL": _fresh_schema_url(request.config)}
    first = start_gateway(config, env)
    try:
        second = start_gateway(config, env)  # same database: the first's admin token works here too
        try:
            a = openai.OpenAI(base_url=first.url + "/mlflow/v1", api_key=first.admin_token, max_retries=0)
            b = openai.OpenAI(base_url=second.url + "/mlflow/v1", api_key=first.admin_token, max_retries=0)
            made = a.responses.create(model="anthropic", input="remember me")
            assert b.responses.retrieve(made.id).output_text == "echo: remember me"
            continued = b.responses.create(model="anthropic", input="again", previous_response_id=made.id)
            assert continued.output_text == "echo: again"
            # A run on the first instance, cancelled through the second: the run never overwrites it.
            running = a.responses.create(model="slow", input="cancel me elsewhere", background=True)
            time.sleep(0.3)
            assert b.responses.cancel(running.id).status == "cancelled"
            time.sleep(MAX_BACKGROUND_SECONDS + 0.5)  # the first instance's run has ended by now
            assert a.responses.retrieve(running.id).status == "cancelled"
            # A run whose instance shuts down ends failed, and says why.
            orphan = a.responses.create(model="slow", input="shut down under me", background=True)
            time.sleep(0.3)
            first.stop()
            lost = b.responses.retrieve(orphan.id)
            assert lost.status == "failed" and "shut down" in lost.error.message
        finally:
            cleanup(second)
    finally:
        cleanup(first)


def test_forced_tool_choice_forces_the_first_turn_only(client, fake_upstream):
    fake_upstream.clear()
    tools = [{"type": "hosted_function", "name": "add_numbers"}]
    response = client.responses.create(model="openai", input='[[tool add_numbers {"a": 5}]]', tools=tools, tool_choice="required")
    assert response.status == "completed" and response.output_text == "tool said: 7"
    first, second = (r["json"] for r in fake_upstream.requests)
    assert first["tool_choice"] == "required" and second["tool_choice"] == "auto"


def test_a_turns_hosted_calls_run_together(client):
    started = time.monotonic()
    response = client.responses.create(
        model="anthropic", input='[[tool slow {"seconds": 1}]] [[tool slow {"seconds": 1}]] [[tool add {"a": 1, "b": 1}]]',
        tools=[{"type": "connection", "name": "weather"}],
    )  # fmt: skip
    assert time.monotonic() - started < 1.8  # not 2 s one after the other
    assert [(c.name, c.output) for c in items_of(response, "mcp_call")] == [("slow", "done"), ("slow", "done"), ("add", "2")]
    assert response.output_text == "tool said: done | done | 2"


def test_reasoning_is_replayed_in_full_to_openai_between_turns(client, fake_upstream):
    """The loop calls OpenAI with store false, where a reasoning item named by its id alone is a 404
    (nothing was kept): it asks for the encrypted content and sends the items whole, on the second
    turn and when a stored conversation is continued."""
    fake_upstream.clear()
    tools = [{"type": "hosted_function", "name": "add_numbers"}]
    response = client.responses.create(
        model="openai", input='[[tool add_numbers {"a": 40}]]', tools=tools, reasoning={"effort": "low", "summary": "auto"}
    )
    assert response.status == "completed" and response.output_text.endswith("tool said: 42"), response
    first, second = (r["json"] for r in fake_upstream.requests)
    assert "reasoning.encrypted_content" in first["include"]
    (replayed,) = [i for i in second["input"] if i.get("type") == "reasoning"]
    assert replayed.get("encrypted_content"), replayed

    fake_upstream.clear()
    again = client.responses.create(model="openai", input="and now?", previous_response_id=response.id, reasoning={"effort": "low"})
    assert again.status == "completed", again
    history = [i for i in fake_upstream.requests[0]["json"]["input"] if i.get("type") == "reasoning"]
    assert history and all(i.get("encrypted_content") or not i.get("id") for i in history)
