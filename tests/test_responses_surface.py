"""OpenAI's Responses API at /openai/v1/responses and /codex/v1/responses end to end: the official
`openai` SDK (and raw HTTP for the wire details) -> a real gateway process -> fake upstreams.

The `openai` and `azure` endpoints pass the body through to the fake's Responses API (`/v1/responses`,
Azure's `/openai/responses`); every other endpoint is translated over chat (Chat Completions,
Anthropic Messages, Gemini generateContent, the built-in demo provider). Expected texts follow the
fakes' rules (tests/fakes/scenario.py) and the demo provider's."""

from __future__ import annotations

import base64
import json
import uuid

import openai
import pydantic
import pytest
import requests

from tests.expected import PNG, echo, tool_said
from tests.conftest import MAX_REQUEST_BYTES, SECRETS
from tests.expected import upstream_tool_names

PASS_THROUGH = ["openai", "azure"]
TRANSLATED = ["compat", "anthropic", "gemini", "demo"]
PROVIDERS = [*PASS_THROUGH, *TRANSLATED]
FAKE_PROVIDERS = [p for p in PROVIDERS if p != "demo"]  # answer by the fakes' rules
UPSTREAMS = ["openai", "azure", "compat", "anthropic", "gemini"]  # for the "<name>--<scenario>" endpoints
PREFIXES = ["/openai/v1", "/codex/v1"]

# The model each pass-through destination is configured with (tests/conftest.py).
UPSTREAM_MODEL = {"openai": "gpt-4o-mini", "azure": "gpt-4o"}
AZURE_RESPONSES_VERSION = "2025-04-01-preview"


def upstream_path(provider: str, stream: bool = False) -> str:
    """The fake's path a request to `provider` must reach."""
    return {
        "openai": "/v1/responses",
        "azure": "/openai/responses",
        "compat": "/v1/chat/completions",
        "anthropic": "/v1/messages",
        "gemini": f"/v1beta/models/gemini-2.5-flash:{'streamGenerateContent' if stream else 'generateContent'}",
    }[provider]


TOOLS = [
    {
        "type": "function",
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
    {"type": "function", "name": "clock", "description": "The time.", "parameters": {"type": "object", "properties": {}}},
]


def tool_arguments(provider: str, text: str) -> dict:
    return {"input": text} if provider == "demo" else {"query": text}


def message(role: str, text: str) -> dict:
    part = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": part, "text": text}]}


@pytest.fixture(scope="module", params=PREFIXES, ids=["openai", "codex"])
def prefix(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def client(gateway, prefix) -> openai.OpenAI:  # one per prefix: building a client takes ~50 ms
    return openai.OpenAI(base_url=gateway.url + prefix, api_key=gateway.admin_token, max_retries=0, timeout=20)


@pytest.fixture
def async_client(gateway, prefix) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url + prefix, api_key=gateway.admin_token, max_retries=0, timeout=20)


@pytest.fixture
def fake(fake_upstream):
    fake_upstream.clear()
    return fake_upstream


def post(gateway, body, path="/openai/v1/responses", token: str | None = "admin", **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    if token == "admin":
        headers["Authorization"] = f"Bearer {gateway.admin_token}"
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers.setdefault("content-type", "application/json")
    return requests.post(gateway.url + path, headers=headers, data=data, timeout=20, **kwargs)


def assert_openai_error(response: requests.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(response.json()) == {"error"} and set(error) == {"message", "type", "param", "code"}, response.text
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param, error
    assert_no_secret(response.text)
    return error


def assert_no_secret(text: str) -> None:
    for secret in SECRETS.values():
        assert secret not in text


def sse_events(raw: str) -> list[tuple[str, dict]]:
    """(event name, data) of every event of a Responses SSE body; the name must equal data.type."""
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        assert "event" in fields and "data" in fields, block
        data = json.loads(fields["data"])
        assert fields["event"] == data["type"], block
        events.append((fields["event"], data))
    return events


def raw_stream(gateway, body: dict, path="/openai/v1/responses", **kwargs) -> list[tuple[str, dict]]:
    response = post(gateway, {**body, "stream": True}, path=path, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in response.text  # the Responses API has no terminator line
    events = sse_events(response.text)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    return events


def collapse(names: list[str]) -> list[str]:
    """Runs of the same delta event as one, so streams that cut text differently compare equal."""
    out: list[str] = []
    for name in names:
        if not (name.endswith(".delta") and out and out[-1] == name):
            out.append(name)
    return out


def check_upstream(fake, provider: str, sent: dict, stream: bool = False) -> dict | None:
    """The request reached the right path of the fake; a pass-through body exactly as sent but for
    `model`. Returns the recorded request (None for the demo provider, which has no upstream)."""
    if provider == "demo":
        assert fake.requests == []
        return None
    recorded = fake.requests[-1]
    assert recorded["path"] == upstream_path(provider, stream), recorded["path"]
    if provider in PASS_THROUGH:
        assert recorded["json"] == {**sent, "model": UPSTREAM_MODEL[provider]}
        expected_query = {"api-version": AZURE_RESPONSES_VERSION} if provider == "azure" else {}
        assert recorded["query"] == expected_query
        # The gateway's provider key goes upstream, never the client's gateway token.
        if provider == "azure":
            assert recorded["headers"]["api-key"] == SECRETS["TEST_AZURE_KEY"]
        else:
            assert recorded["headers"]["authorization"] == f"Bearer {SECRETS['TEST_OPENAI_KEY']}"
        assert "aigw_" not in json.dumps(recorded["headers"])
    return recorded


# --- plain responses -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_with_string_input_and_instructions(client, fake, provider):
    response = client.responses.create(model=provider, instructions="Be terse.", input="hello there")
    expected = echo(provider, "hello there") if provider == "demo" else "[system: Be terse.] echo: hello there"
    assert response.output_text == expected
    assert response.object == "response" and response.id.startswith("resp_") and response.status == "completed"
    assert [item.type for item in response.output] == ["message"]
    assert response.output[0].role == "assistant" and response.output[0].status == "completed"
    assert response.instructions == "Be terse."
    # The fakes: ceil(chars / 4) of "Be terse." + "hello there" in, one token per word out.
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 4 if provider == "demo" else 6)
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    recorded = check_upstream(fake, provider, {"instructions": "Be terse.", "input": "hello there"})
    if provider == "compat":
        assert recorded["json"]["messages"] == [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "hello there"},
        ]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_create_async(async_client, fake, provider):
    response = await async_client.responses.create(model=provider, input="async hello")
    assert response.output_text == echo(provider, "async hello")
    check_upstream(fake, provider, {"input": "async hello"})


@pytest.mark.parametrize("provider", PROVIDERS)
def test_input_items_multi_turn(client, fake, provider):
    """A stateless conversation: the client re-sends the whole history as items."""
    history = [
        message("developer", "You are terse."),
        message("user", "first"),
        message("assistant", "echo: first"),
        {"role": "user", "content": "second"},  # the short form: no type, string content
    ]
    response = client.responses.create(model=provider, input=history)
    assert response.output_text == (echo(provider, "second") if provider == "demo" else "[system: You are terse.] echo: second")
    recorded = check_upstream(fake, provider, {"input": history})
    if provider == "compat":
        assert [(m["role"], m["content"]) for m in recorded["json"]["messages"]] == [
            ("system", "You are terse."), ("user", "first"), ("assistant", "echo: first"), ("user", "second"),
        ]  # fmt: skip
    elif provider == "anthropic":
        assert [m["role"] for m in recorded["json"]["messages"]] == ["user", "assistant", "user"]
    elif provider == "gemini":
        assert [c["role"] for c in recorded["json"]["contents"]] == ["user", "model", "user"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_max_output_tokens_makes_an_incomplete_response(client, provider):
    response = client.responses.create(model=provider, input="one two three four", max_output_tokens=2)
    assert response.output_text == echo(provider, "one")
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "demo"])
def test_input_image(client, fake, provider):
    content = [
        {"type": "input_text", "text": "what is this"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
    ]
    items = [{"type": "message", "role": "user", "content": content}]
    response = client.responses.create(model=provider, input=items)
    assert response.output_text == "echo: what is this [image]"
    recorded = check_upstream(fake, provider, {"input": items})
    sent = json.dumps(recorded["json"])
    assert PNG in sent  # the image itself went upstream, in whatever shape the vendor takes
    if provider == "anthropic":
        image = recorded["json"]["messages"][0]["content"][1]
        assert image["type"] == "image" and image["source"]["media_type"] == "image/png"


def test_input_image_demo(client):
    content = [{"type": "input_text", "text": "what is this"}, {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]
    items = [{"type": "message", "role": "user", "content": content}]
    assert client.responses.create(model="demo", input=items).output_text == "Echo: what is this"  # it reads text only


JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "name": "reply",
    "schema": {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"], "additionalProperties": False},
    "strict": True,
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_text_format_json_schema(client, fake, provider):
    response = client.responses.create(model=provider, input="give json", text={"format": JSON_SCHEMA_FORMAT})
    assert json.loads(response.output_text) == {"echo": "give json"}
    assert response.text.format.type == "json_schema" and response.text.format.name == "reply"
    recorded = check_upstream(fake, provider, {"input": "give json", "text": {"format": JSON_SCHEMA_FORMAT}})
    if provider == "compat":
        assert recorded["json"]["response_format"]["json_schema"]["schema"] == JSON_SCHEMA_FORMAT["schema"]
    elif provider == "gemini":
        assert recorded["json"]["generationConfig"]["responseMimeType"] == "application/json"


class Echo(pydantic.BaseModel):
    echo: str


@pytest.mark.parametrize("provider", PROVIDERS)
def test_parse_with_a_pydantic_text_format(client, provider):
    response = client.responses.parse(model=provider, input="parse me", text_format=Echo)
    assert response.output_parsed == Echo(echo="parse me")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reasoning_param_accepted(client, fake, provider):
    reasoning = {"effort": "low", "summary": "auto"}
    response = client.responses.create(model=provider, input="think a bit", reasoning=reasoning)
    assert response.output_text == echo(provider, "think a bit")
    assert response.reasoning.effort == "low"
    recorded = check_upstream(fake, provider, {"input": "think a bit", "reasoning": reasoning})
    if provider in PASS_THROUGH:  # the fake's Responses API reasons first, with the summary asked for
        assert [item.type for item in response.output] == ["reasoning", "message"]
        assert response.output[0].summary[0].text == "thinking about: think a bit"
        assert response.usage.output_tokens_details.reasoning_tokens == 5
    elif provider == "compat":
        assert recorded["json"]["reasoning_effort"] == "low"
    elif provider == "anthropic":
        assert recorded["json"]["thinking"]["type"] == "enabled"
    elif provider == "gemini":
        assert recorded["json"]["generationConfig"]["thinkingConfig"]["thinkingBudget"] > 0


def test_previous_response_id_is_passed_through(client, fake):
    response = client.responses.create(model="openai", input="go on", previous_response_id="resp_earlier")
    assert response.output_text == "echo: go on" and response.previous_response_id == "resp_earlier"
    check_upstream(fake, "openai", {"input": "go on", "previous_response_id": "resp_earlier"})


# --- streaming -------------------------------------------------------------------------------------

TEXT_EVENTS = [
    "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
    "response.output_text.delta", "response.output_text.done", "response.content_part.done",
    "response.output_item.done", "response.completed",
]  # fmt: skip


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_with_stream_true(client, fake, provider):
    events = list(client.responses.create(model=provider, input="stream me please", stream=True))
    kinds = [event.type for event in events]
    assert collapse(kinds) == TEXT_EVENTS
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == echo(provider, "stream me please") and len(deltas) > 1  # really streamed
    assert [e.text for e in events if e.type == "response.output_text.done"] == [echo(provider, "stream me please")]
    final = events[-1].response
    assert final.status == "completed" and final.output_text == echo(provider, "stream me please")
    assert final.id == events[0].response.id and final.id.startswith("resp_")
    assert final.usage.input_tokens == 4  # "stream me please": 16 characters
    assert final.usage.output_tokens == (5 if provider == "demo" else 4)  # demo: (chars + 1) // 4
    check_upstream(fake, provider, {"input": "stream me please", "stream": True}, stream=True)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_helper(client, fake, provider):
    with client.responses.stream(model=provider, instructions="Be terse.", input="helper stream") as stream:
        pieces = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    expected = echo(provider, "helper stream") if provider == "demo" else "[system: Be terse.] echo: helper stream"
    assert "".join(pieces) == expected and len(pieces) > 1
    assert final.output_text == expected and final.status == "completed"
    assert final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens > 0
    check_upstream(fake, provider, {"instructions": "Be terse.", "input": "helper stream", "stream": True}, stream=True)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_async(async_client, provider):
    stream = await async_client.responses.create(model=provider, input="async stream", stream=True)
    kinds, text = [], ""
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
    assert collapse(kinds) == TEXT_EVENTS and text == echo(provider, "async stream")
    async with async_client.responses.stream(model=provider, input="async helper") as helper:
        final = await helper.get_final_response()
    assert final.output_text == echo(provider, "async helper")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_cut_by_max_output_tokens_ends_incomplete(gateway, provider):
    events = raw_stream(gateway, {"model": provider, "input": "one two three four", "max_output_tokens": 2})
    assert [name for name, _ in events][-2:] == ["response.output_item.done", "response.incomplete"]
    item, response = events[-2][1]["item"], events[-1][1]["response"]
    assert item["status"] == "incomplete" and item["content"][0]["text"] == echo(provider, "one")
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_raw_sse_event_sequence(gateway, provider, prefix):
    events = raw_stream(gateway, {"model": provider, "input": "a b"}, path=prefix + "/responses")
    names = [name for name, _ in events]
    assert names == [*TEXT_EVENTS[:5], *["response.output_text.delta"] * 2, *TEXT_EVENTS[5:]]
    created, completed = events[0][1]["response"], events[-1][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert completed["id"] == created["id"] and completed["status"] == "completed"
    item_id = events[2][1]["item"]["id"]
    assert events[2][1]["item"] == {"id": item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
    for _, data in events[3:8]:
        assert (data["item_id"], data["output_index"], data["content_index"]) == (item_id, 0, 0)
    assert "".join(data["delta"] for name, data in events if name == "response.output_text.delta") == echo(provider, "a b")
    assert events[-2][1]["item"]["content"][0]["text"] == echo(provider, "a b")
    assert completed["output"] == [events[-2][1]["item"]]
    usage = completed["usage"]
    assert usage["input_tokens"] == 1 and usage["output_tokens"] == (2 if provider == "demo" else 3)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0


# --- tools -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_function_tool_round_trip(client, fake, provider, stream):
    question = [message("user", "weather in Paris")]
    if stream:
        with client.responses.stream(model=provider, input=question, tools=TOOLS) as s:
            events = list(s)
            first = s.get_final_response()
        deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        done = [e.arguments for e in events if e.type == "response.function_call_arguments.done"]
        assert json.loads(deltas) == tool_arguments(provider, "weather in Paris") and done == [deltas]
        added = [e.item for e in events if e.type == "response.output_item.added"]
        assert [(item.type, item.name, item.arguments) for item in added] == [("function_call", "lookup", "")]
    else:
        first = client.responses.create(model=provider, input=question, tools=TOOLS)
    assert [item.type for item in first.output] == ["function_call"]
    call = first.output[0]
    assert call.name == "lookup" and call.call_id and call.id
    assert json.loads(call.arguments) == tool_arguments(provider, "weather in Paris")
    assert first.output_text == "" and first.status == "completed"
    check_upstream(fake, provider, {"input": question, "tools": TOOLS, **({"stream": True} if stream else {})}, stream)

    fake.clear()
    history = [
        *question,
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"},
    ]
    final = client.responses.create(model=provider, input=history, tools=TOOLS)
    assert final.output_text == tool_said(provider, "sunny, 21C")
    recorded = check_upstream(fake, provider, {"input": history, "tools": TOOLS})
    if provider == "compat":
        tool_message = recorded["json"]["messages"][-1]
        assert tool_message == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21C"}
        assert recorded["json"]["messages"][-2]["tool_calls"][0]["id"] == call.call_id


@pytest.mark.parametrize("provider", FAKE_PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_parallel_function_calls(client, provider, stream):
    question = [message("user", "do these in parallel")]
    if stream:
        with client.responses.stream(model=provider, input=question, tools=TOOLS) as s:
            events = list(s)
            first = s.get_final_response()
        for index in (0, 1):
            arguments = "".join(
                e.delta for e in events if e.type == "response.function_call_arguments.delta" and e.output_index == index
            )
            assert json.loads(arguments) == {"query": "do these in parallel"}
    else:
        first = client.responses.create(model=provider, input=question, tools=TOOLS)
    calls = first.output
    assert [(c.type, c.name, json.loads(c.arguments)) for c in calls] == [
        ("function_call", "lookup", {"query": "do these in parallel"}),
        ("function_call", "clock", {"query": "do these in parallel"}),
    ]
    assert len({c.call_id for c in calls}) == 2 and len({c.id for c in calls}) == 2
    history = [
        *question,
        *[c.model_dump(exclude_none=True) for c in calls],
        *[{"type": "function_call_output", "call_id": c.call_id, "output": f"result {i}"} for i, c in enumerate(calls)],
    ]
    final = client.responses.create(model=provider, input=history, tools=TOOLS)
    assert final.output_text == "tool said: result 0 | result 1"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_choice_none_answers_in_text(client, provider):
    response = client.responses.create(model=provider, input="what time", tools=TOOLS, tool_choice="none")
    assert response.output_text == echo(provider, "what time")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_forced_tool_choice(client, provider):
    response = client.responses.create(
        model=provider, input="what time", tools=TOOLS, tool_choice={"type": "function", "name": "clock"}
    )
    assert [(c.type, c.name, json.loads(c.arguments)) for c in response.output] == [
        ("function_call", "clock", tool_arguments(provider, "what time"))
    ]


# --- errors ----------------------------------------------------------------------------------------


def test_bad_token_is_401(gateway, prefix):
    bad = openai.OpenAI(base_url=gateway.url + prefix, api_key="aigw_nope_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.responses.create(model="demo", input="x")
    assert caught.value.status_code == 401
    assert_openai_error(post(gateway, {"model": "demo", "input": "x"}, path=prefix + "/responses", token="aigw_nope_nope"), 401)
    assert_openai_error(post(gateway, {"model": "demo", "input": "x"}, path=prefix + "/responses", token=None), 401)


def test_unknown_endpoint_is_404(client, gateway):
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="no-such-endpoint", input="x")
    assert "no-such-endpoint" in caught.value.message
    error = assert_openai_error(post(gateway, {"model": "no-such-endpoint", "input": "x"}), 404)
    assert "no-such-endpoint" in error["message"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_missing_input_is_400_naming_input(client, gateway, fake, provider):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=provider, instructions="no input")
    assert caught.value.param == "input" and "'input'" in caught.value.message
    assert_openai_error(post(gateway, {"model": provider}), 400, "input")
    assert fake.requests == []  # refused by the gateway, pass-through or not


@pytest.mark.parametrize(
    "body, param",
    [
        ({"input": 42}, "input"),
        ({"input": "x", "stream": "yes"}, "stream"),
        ({"input": "x", "max_output_tokens": "ten"}, "max_output_tokens"),
        ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        ({"input": "x", "tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
    ],
)
@pytest.mark.parametrize("provider", ["openai", "compat"])
def test_invalid_fields_are_400_naming_the_parameter(gateway, fake, provider, body, param):
    assert_openai_error(post(gateway, {"model": provider, **body}), 400, param)
    assert fake.requests == []


def test_malformed_json_is_400(gateway):
    assert_openai_error(post(gateway, b'{"model": "openai", "input": ['), 400)


def test_body_over_the_limit_is_413(gateway):
    assert_openai_error(post(gateway, {"model": "openai", "input": "x" * (MAX_REQUEST_BYTES + 10)}), 413)


def test_bad_request_tags_header_is_400(gateway):
    response = post(gateway, {"model": "demo", "input": "x"}, headers={"X-Aigw-Request-Tags": "[1]"})
    assert_openai_error(response, 400, "x-aigw-request-tags")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_unknown_path_under_the_surface_is_404(gateway, prefix):
    assert_openai_error(post(gateway, {"model": "demo", "input": "x"}, path=prefix + "/nothing-here"), 404)


@pytest.mark.parametrize("provider", TRANSLATED)
def test_orphan_function_call_output_is_400_naming_its_call_id(client, gateway, fake, provider):
    body = {"model": provider, "input": [message("user", "hi"), {"type": "function_call_output", "call_id": "call_orphan_42", "output": "x"}]}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**body)
    assert "call_orphan_42" in caught.value.message
    error = assert_openai_error(post(gateway, body), 400, "input[1].call_id")
    assert "call_orphan_42" in error["message"]
    assert fake.requests == []


@pytest.mark.parametrize("provider", TRANSLATED)
def test_unknown_previous_response_id_on_a_translated_destination_is_404(client, gateway, fake, provider):
    # The gateway keeps the state of translated destinations (tests/test_responses_state.py).
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=provider, input="go on", previous_response_id="resp_earlier")
    assert caught.value.body["param"] == "previous_response_id"
    body = {"model": provider, "input": "go on", "previous_response_id": "resp_earlier", "stream": True}
    assert_openai_error(post(gateway, body), 404, "previous_response_id")  # before any stream starts
    assert fake.requests == []


@pytest.mark.parametrize("provider", TRANSLATED)
@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"input": "x", "background": True}, 400, "background"),
        ({"input": "x", "conversation": "conv_123"}, 400, "conversation"),
        ({"input": [{"type": "item_reference", "id": "msg_123"}]}, 404, "input"),
        ({"input": [message("user", "a"), {"type": "item_reference"}]}, 400, "input[1].id"),
    ],
    ids=["background", "conversation", "item_reference", "item_reference_without_id"],
)
def test_stored_state_the_gateway_does_not_have_is_refused(gateway, fake, provider, body, status, param):
    assert_openai_error(post(gateway, {"model": provider, **body}), status, param)
    assert fake.requests == []


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_429_stays_429_with_retry_after(client, gateway, upstream):
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model=f"{upstream}--error-429", input="x")
    assert caught.value.status_code == 429 and caught.value.response.headers["retry-after"] == "7"
    response = post(gateway, {"model": f"{upstream}--error-429", "input": "x", "stream": True})
    assert_openai_error(response, 429)  # an error before the stream started is a plain response
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_500_is_502(client, gateway, upstream):
    with pytest.raises(openai.InternalServerError) as caught:
        client.responses.create(model=f"{upstream}--error-500", input="x")
    assert caught.value.status_code == 502
    error = assert_openai_error(post(gateway, {"model": f"{upstream}--error-500", "input": "x"}), 502)
    assert "error-500" in error["message"]  # names the destination


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_400_stays_400(client, upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=f"{upstream}--error-400", input="x")
    assert "error-400" in caught.value.message


def test_unreachable_upstream_is_502(gateway):
    error = assert_openai_error(post(gateway, {"model": "unreachable", "input": "x", "stream": True}), 502)
    assert "openai_compatible/m" in error["message"]  # names the destination


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_rejecting_the_gateway_key_is_502_without_the_key(gateway, upstream):
    assert_openai_error(post(gateway, {"model": f"{upstream}--error-401", "input": "x"}), 502)


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("scenario", ["stream-error", "drop"])
def test_stream_failing_midway_makes_the_sdk_raise(client, upstream, scenario):
    with pytest.raises(RuntimeError, match="response.completed"):
        with client.responses.stream(model=f"{upstream}--{scenario}", input="one two three") as stream:
            stream.get_final_response()
    kinds = [event.type for event in client.responses.create(model=f"{upstream}--{scenario}", input="one two three", stream=True)]
    assert kinds[0] == "response.created" and "error" in kinds and "response.completed" not in kinds


@pytest.mark.parametrize(
    "upstream, scenario",
    [
        *[(u, "stream-error") for u in UPSTREAMS],
        *[(u, "drop") for u in UPSTREAMS],
    ],
)
def test_stream_failing_midway_ends_with_error_then_response_failed(gateway, upstream, scenario):
    events = raw_stream(gateway, {"model": f"{upstream}--{scenario}", "input": "one two three"})
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-2:] == ["error", "response.failed"], names
    error, failed = events[-2][1], events[-1][1]["response"]
    assert error["message"] and error["code"]
    assert failed["status"] == "failed" and failed["id"] == events[0][1]["response"]["id"]
    assert failed["error"]["message"] and failed["error"]["code"]
    assert_no_secret(json.dumps(events))


# --- Codex CLI -------------------------------------------------------------------------------------

CODEX_INSTRUCTIONS = "You are Codex, based on GPT-5. You are running as a coding agent in the Codex CLI."
APPLY_PATCH_GRAMMAR = """start: begin_patch hunk+ end_patch
begin_patch: "*** Begin Patch" LF
end_patch: "*** End Patch" LF?
hunk: add_hunk | update_hunk
add_hunk: "*** Add File: " filename LF add_line+
update_hunk: "*** Update File: " filename LF change?
filename: /(.+)/
add_line: "+" /(.*)/ LF -> line
change: (change_context | change_line)+
change_context: ("@@" | "@@ " /(.+)/) LF
change_line: ("+" | "-" | " ") /(.*)/ LF
%import common.LF
"""
CODEX_TOOLS = [
    {
        "type": "function",
        "name": "shell",
        "description": "Runs a shell command and returns its output.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "array", "items": {"type": "string"}, "description": "The command to execute"},
                "workdir": {"type": "string", "description": "The working directory to execute the command in"},
                "timeout_ms": {"type": "number", "description": "The timeout for the command in milliseconds"},
            },
            "required": ["command"],
            "additionalProperties": False,
        },
    },
    {
        "type": "custom",
        "name": "apply_patch",
        "description": "Use the `apply_patch` tool to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",
        "format": {"type": "grammar", "syntax": "lark", "definition": APPLY_PATCH_GRAMMAR},
    },
    {"type": "web_search"},
]
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"
CODEX_PROMPT = "list the files, then add hello.txt " + " ".join([
    '[[tool shell {"command": ["bash", "-lc", "ls"], "workdir": "/repo"}]]',
    "[[tool apply_patch " + json.dumps({"input": PATCH}) + "]]",
])  # fmt: skip


def codex_headers(session: str) -> dict[str, str]:
    return {
        "accept": "text/event-stream",
        "originator": "codex_cli_rs",
        "user-agent": "codex_cli_rs/0.58.0 (Ubuntu 24.4.0; x86_64) xterm-256color",
        "openai-beta": "responses=experimental",
        "session_id": session,
        "conversation_id": session,
    }


def codex_body(model: str, input: list[dict], session: str) -> dict:
    return {
        "model": model,
        "instructions": CODEX_INSTRUCTIONS,
        "input": input,
        "tools": CODEX_TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": session,
        "text": {"verbosity": "medium"},
    }


def codex_item(item: dict) -> dict:
    """An output item as Codex CLI keeps it and re-sends it: no ids (but a custom tool call's status),
    reasoning without raw content (codex-rs/protocol/src/models.rs, `ResponseItem`)."""
    if item["type"] == "reasoning":
        return {"type": "reasoning", "summary": item["summary"], "encrypted_content": item.get("encrypted_content")}
    if item["type"] == "function_call":
        return {"type": "function_call", "name": item["name"], "arguments": item["arguments"], "call_id": item["call_id"]}
    if item["type"] == "custom_tool_call":
        return {k: item[k] for k in ("type", "status", "call_id", "name", "input")}
    assert item["type"] == "message", item
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": p["text"]} for p in item["content"]]}


def completed_output(events: list[tuple[str, dict]]) -> list[dict]:
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"] and names[-1] == "response.completed", names
    output = events[-1][1]["response"]["output"]
    assert output == [data["item"] for name, data in events if name == "response.output_item.done"]
    return output


def gateway_reasoning_token(signature: str, call_signatures: dict[str, str]) -> str:
    """A reasoning item's encrypted_content as the gateway issues it for a translated destination
    (src/aigw/wire/openai_responses.py): "aigw:v1:" + base64url(JSON {"s": ..., "c": {call id: ...}})."""
    packed = json.dumps({"s": signature, "c": call_signatures}).encode()
    return "aigw:v1:" + base64.urlsafe_b64encode(packed).rstrip(b"=").decode()


@pytest.mark.parametrize("provider", FAKE_PROVIDERS)
def test_codex_cli_shaped_conversation(gateway, fake, provider):
    """Three turns as Codex CLI sends them: streamed, store false, encrypted reasoning asked for,
    a prompt cache key, a custom apply_patch tool with a grammar, a hosted tool, and the whole
    history re-sent each turn — reasoning items with their encrypted_content and tool outputs with
    their own ids included."""
    session = str(uuid.uuid4())
    context = [
        message("developer", "<permissions instructions>Filesystem sandboxing: workspace-write.</permissions instructions>"),
        message("user", "<environment_context>\n  <cwd>/repo</cwd>\n  <shell>bash</shell>\n</environment_context>"),
        message("user", CODEX_PROMPT),
    ]
    body = codex_body(provider, context, session)
    events = raw_stream(gateway, body, path="/codex/v1/responses", headers=codex_headers(session))
    recorded = check_upstream(fake, provider, {k: v for k, v in body.items() if k != "model"}, stream=True)
    if provider not in PASS_THROUGH:  # the hosted tool dropped, the grammar told in the description
        assert upstream_tool_names(provider, recorded["json"]) == ["shell", "apply_patch"]
        assert "*** Begin Patch" in json.dumps(recorded["json"]["tools"])
    output = completed_output(events)
    calls = [item for item in output if item["type"] != "reasoning"]
    assert [(c["type"], c["name"]) for c in calls] == [("function_call", "shell"), ("custom_tool_call", "apply_patch")]
    shell, patch = calls
    assert json.loads(shell["arguments"]) == {"command": ["bash", "-lc", "ls"], "workdir": "/repo"}
    assert patch["input"] == PATCH and shell["call_id"] != patch["call_id"]
    assert "".join(d["delta"] for n, d in events if n == "response.function_call_arguments.delta") == shell["arguments"]
    assert "".join(d["delta"] for n, d in events if n == "response.custom_tool_call_input.delta") == PATCH
    assert [d["input"] for n, d in events if n == "response.custom_tool_call_input.done"] == [PATCH]
    if provider in PASS_THROUGH:  # the fake's Responses API reasons first and encrypts it, as asked
        assert [item["type"] for item in output] == ["reasoning", "function_call", "custom_tool_call"]
        assert output[0]["encrypted_content"] and output[0]["summary"][0]["text"] == "thinking about: " + CODEX_PROMPT
    else:  # the fakes behind translation do not reason: the reasoning item such a turn gets when they do
        assert [item["type"] for item in output] == ["function_call", "custom_tool_call"]
        token = gateway_reasoning_token("EqQBCkYIBxgCKkA", {shell["call_id"]: "gemini-call-signature"})
        reasoning = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "I should list the files."}],
                     "encrypted_content": token}  # fmt: skip
        output = [reasoning, *output]

    # Turn two: everything again, the tool outputs appended (Codex gives them ids of their own).
    fake.clear()
    history = [
        *context,
        *[codex_item(item) for item in output],
        {"type": "function_call_output", "id": "fco_" + uuid.uuid4().hex, "call_id": shell["call_id"], "output": "README.md"},
        {"type": "custom_tool_call_output", "id": "ctco_" + uuid.uuid4().hex, "call_id": patch["call_id"], "output": "Done!"},
    ]
    body = codex_body(provider, history, session)
    events = raw_stream(gateway, body, path="/codex/v1/responses", headers=codex_headers(session))
    recorded = check_upstream(fake, provider, {k: v for k, v in body.items() if k != "model"}, stream=True)
    if provider == "anthropic":  # the signed thinking goes back ahead of the calls it led to
        assistant = recorded["json"]["messages"][-2]
        assert assistant["content"][0] == {"type": "thinking", "thinking": "I should list the files.", "signature": "EqQBCkYIBxgCKkA"}
        assert [block["type"] for block in assistant["content"][1:]] == ["tool_use", "tool_use"]
    elif provider == "gemini":  # the call's thought signature goes back on the call
        parts = recorded["json"]["contents"][-2]["parts"]
        assert [part.get("thoughtSignature") for part in parts] == ["gemini-call-signature", None]
    output = completed_output(events)
    assert [item["type"] for item in output] == (["reasoning", "message"] if provider in PASS_THROUGH else ["message"])
    expected = f"[system: {CODEX_INSTRUCTIONS[:30]}] tool said: README.md | Done!"
    assert [part["text"] for part in output[-1]["content"]] == [expected]
    usage = events[-1][1]["response"]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    # Turn three: the answer joins the history, a new prompt after it.
    fake.clear()
    history = [*history, *[codex_item(item) for item in output], message("user", "thanks")]
    body = codex_body(provider, history, session)
    events = raw_stream(gateway, body, path="/codex/v1/responses", headers=codex_headers(session))
    check_upstream(fake, provider, {k: v for k, v in body.items() if k != "model"}, stream=True)
    last = completed_output(events)[-1]  # tools declared and a user turn last: the fakes call the first tool
    assert (last["type"], last["name"], json.loads(last["arguments"])) == ("function_call", "shell", {"query": "thanks"})
