"""Anthropic's Messages API at /anthropic end to end: the official `anthropic` SDK (and raw HTTP for
the wire details) -> a real gateway process -> fake upstreams. The `anthropic` endpoint passes the
body through to an Anthropic upstream; every other endpoint is translated through the canonical model.
Expected texts follow the fakes' rules (tests/fakes/scenario.py) and the demo provider's."""

from __future__ import annotations

import json
import time

import anthropic
import pytest
import requests

from tests.expected import PNG, echo, tool_said
from tests.conftest import MAX_REQUEST_BYTES, SECRETS

PASS_THROUGH = "anthropic"
TRANSLATED = ["openai", "gemini", "compat", "demo"]
PROVIDERS = [PASS_THROUGH, *TRANSLATED]
FAKE_PROVIDERS = [p for p in PROVIDERS if p != "demo"]  # answer by the fakes' rules
UPSTREAMS = ["anthropic", "openai", "gemini", "compat"]  # for the "<name>--<scenario>" endpoints

TOOLS = [
    {
        "name": "lookup",
        "description": "Look something up.",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
    {"name": "clock", "description": "The time.", "input_schema": {"type": "object", "properties": {}}},
]

def tool_input(provider: str, text: str) -> dict:
    return {"input": text} if provider == "demo" else {"query": text}


def user(text) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def client(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=gateway.admin_token, max_retries=0, timeout=20)


@pytest.fixture
def async_client(gateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url + "/anthropic", api_key=gateway.admin_token, max_retries=0, timeout=20)


def post(gateway, body, path="/anthropic/v1/messages", token: str | None = "admin", **kwargs) -> requests.Response:
    headers = {"anthropic-version": "2023-06-01", **kwargs.pop("headers", {})}
    if token == "admin":
        headers["x-api-key"] = gateway.admin_token
    elif token:
        headers["x-api-key"] = token
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers.setdefault("content-type", "application/json")
    return requests.post(gateway.url + path, headers=headers, data=data, timeout=20, **kwargs)


def assert_anthropic_error(response: requests.Response, status: int, error_type: str) -> str:
    """The response is Anthropic's error shape with this status and type; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == error_type, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert_no_secret(response.text)
    return body["error"]["message"]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS.values():
        assert secret not in text


def sse_events(raw: str) -> list[tuple[str, dict]]:
    """(event name, data) of every event of an Anthropic SSE body; the name must match data.type."""
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        data = json.loads(fields["data"])
        assert fields["event"] == data["type"], block
        events.append((fields["event"], data))
    return events


def collapse(names: list[str]) -> list[str]:
    """Runs of content_block_delta as one, so streams that cut text differently compare equal."""
    out: list[str] = []
    for name in names:
        if not (name == "content_block_delta" and out and out[-1] == name):
            out.append(name)
    return out


def raw_stream(gateway, provider: str, **body) -> tuple[requests.Response, list[tuple[str, dict]]]:
    response = post(gateway, {"model": provider, "max_tokens": 200, "stream": True, **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return response, sse_events(response.text)


def check_grammar(events: list[tuple[str, dict]]) -> list[str]:
    """The order Anthropic's SDKs rely on; returns the event names without pings."""
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"], names
    pings = [i for i, name in enumerate(names) if name == "ping"]
    assert len(pings) <= 1
    if pings:
        assert pings[0] < names.index("content_block_delta")
    start = events[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == [] and start["stop_reason"] is None
    assert start["id"].startswith("msg_")
    open_index = None
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_index is None, "a block started before the previous one stopped"
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None
    return [name for name in names if name != "ping"]


# --- plain messages --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create(client, provider):
    message = client.messages.create(model=provider, max_tokens=100, messages=user("hello there"))
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == echo(provider, "hello there")
    assert message.stop_reason == "end_turn"
    if provider == "demo":  # the gateway's estimate: (chars + 1) // 4 of "hello there" and of the answer
        assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 4)
    else:  # the fakes: ceil(chars / 4) in, one token per word out
        assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 3)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_create_async(async_client, provider):
    message = await async_client.messages.create(model=provider, max_tokens=100, messages=user("async hello"))
    assert message.content[0].text == echo(provider, "async hello")
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_max_tokens_truncates_with_stop_reason_max_tokens(client, provider):
    message = client.messages.create(model=provider, max_tokens=2, messages=user("one two three four"))
    assert message.content[0].text == echo(provider, "one")
    assert message.stop_reason == "max_tokens"


# --- streaming -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream(client, provider):
    with client.messages.stream(model=provider, max_tokens=100, messages=user("stream me please")) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == echo(provider, "stream me please")
    assert len(pieces) > 1  # really streamed, word by word
    assert final.content[0].text == echo(provider, "stream me please")
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 4  # "stream me please": 16 characters
    assert final.usage.output_tokens == (5 if provider == "demo" else 4)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_async(async_client, provider):
    async with async_client.messages.stream(model=provider, max_tokens=100, messages=user("async stream")) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == echo(provider, "async stream")
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_with_stream_true_yields_the_sdk_events(client, provider):
    events = list(client.messages.create(model=provider, max_tokens=100, messages=user("a b"), stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text == echo(provider, "a b")
    assert events[-2].delta.stop_reason == "end_turn"


@pytest.mark.parametrize("provider", TRANSLATED)
def test_raw_sse_event_order_matches_pass_through(gateway, provider):
    _, reference = raw_stream(gateway, PASS_THROUGH, messages=user("a b"))
    _, events = raw_stream(gateway, provider, messages=user("a b"))
    expected = ["message_start", "content_block_start", *["content_block_delta"] * 3, "content_block_stop",
                "message_delta", "message_stop"]  # fmt: skip
    assert check_grammar(reference) == expected
    assert check_grammar(events) == expected
    texts = [data["delta"]["text"] for name, data in events if name == "content_block_delta"]
    assert "".join(texts) == echo(provider, "a b")
    assert events[1 if events[1][0] != "ping" else 2][1]["content_block"] == {"type": "text", "text": ""}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == (2 if provider == "demo" else 3)


@pytest.mark.parametrize("provider", FAKE_PROVIDERS)
def test_raw_sse_tool_use_order(gateway, provider):
    _, events = raw_stream(gateway, provider, messages=user("do these in parallel"), tools=TOOLS)
    names = check_grammar(events)
    block = ["content_block_start", "content_block_delta", "content_block_stop"]
    assert collapse(names) == ["message_start", *block, *block, "message_delta", "message_stop"]
    starts = [data for name, data in events if name == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"], s["content_block"]["name"]) for s in starts] == [
        (0, "tool_use", "lookup"),
        (1, "tool_use", "clock"),
    ]
    assert all(s["content_block"]["input"] == {} and s["content_block"]["id"] for s in starts)
    for index in (0, 1):
        partial = "".join(
            data["delta"]["partial_json"] for name, data in events if name == "content_block_delta" and data["index"] == index
        )
        assert json.loads(partial) == {"query": "do these in parallel"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


# --- conversation features -------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_multi_turn_with_system_string(client, provider):
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
    ]
    message = client.messages.create(model=provider, max_tokens=100, system="You are terse.", messages=messages)
    expected = "Echo: second" if provider == "demo" else "[system: You are terse.] echo: second"
    assert message.content[0].text == expected


@pytest.mark.parametrize(
    "provider",
    [
        "anthropic",
        "openai",
        "gemini",
        "compat",
    ],
)
def test_system_as_blocks_with_cache_control(client, fake_upstream, provider):
    system = [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
    ]
    fake_upstream.clear()
    message = client.messages.create(model=provider, max_tokens=100, system=system, messages=user("hi"))
    if provider == PASS_THROUGH:  # the body as sent, cache_control included
        assert fake_upstream.last("/v1/messages")["json"]["system"] == system
    # Two blocks are two pieces of text: whatever separates them upstream, not nothing.
    assert " ".join(message.content[0].text.split()) == "[system: You are terse. Be brief.] echo: hi"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tool_round_trip(client, provider, stream):
    messages = user("weather in Paris")
    if stream:
        with client.messages.stream(model=provider, max_tokens=100, tools=TOOLS, messages=messages) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model=provider, max_tokens=100, tools=TOOLS, messages=messages)
    assert first.stop_reason == "tool_use"
    assert [block.type for block in first.content] == ["tool_use"]
    call = first.content[0]
    assert call.name == "lookup" and call.id
    assert call.input == tool_input(provider, "weather in Paris")

    messages = messages + [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]},
    ]
    final = client.messages.create(model=provider, max_tokens=100, tools=TOOLS, messages=messages)
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == tool_said(provider, "sunny, 21C")


@pytest.mark.parametrize("provider", FAKE_PROVIDERS)
def test_parallel_tool_calls(client, provider):
    first = client.messages.create(model=provider, max_tokens=100, tools=TOOLS, messages=user("do these in parallel"))
    assert first.stop_reason == "tool_use"
    assert [(b.type, b.name) for b in first.content] == [("tool_use", "lookup"), ("tool_use", "clock")]
    assert len({b.id for b in first.content}) == 2
    results = [{"type": "tool_result", "tool_use_id": b.id, "content": f"result {i}"} for i, b in enumerate(first.content)]
    messages = user("do these in parallel") + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": results},
    ]
    final = client.messages.create(model=provider, max_tokens=100, tools=TOOLS, messages=messages)
    assert final.content[0].text == "tool said: result 0 | result 1"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_forced_tool_choice(client, provider):
    message = client.messages.create(
        model=provider, max_tokens=100, tools=TOOLS, tool_choice={"type": "tool", "name": "clock"}, messages=user("what time")
    )
    assert message.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in message.content] == [("clock", tool_input(provider, "what time"))]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_choice_none_answers_in_text(client, provider):
    message = client.messages.create(
        model=provider, max_tokens=100, tools=TOOLS, tool_choice={"type": "none"}, messages=user("what time")
    )
    assert message.stop_reason == "end_turn"
    assert message.content[0].text == echo(provider, "what time")


@pytest.mark.parametrize(
    "provider",
    [
        "anthropic",
        "openai",
        "gemini",
        "compat",
    ],
)
def test_tool_result_with_several_text_blocks(client, provider):
    """MCP tools and Claude Code return tool results as several text blocks."""
    messages = [
        *user("weather"),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"query": "weather"}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}, {"type": "text", "text": "warm"}]}
            ],
        },
    ]
    message = client.messages.create(model=provider, max_tokens=100, tools=TOOLS, messages=messages)
    assert message.content[0].text.split() == ["tool", "said:", "sunny", "warm"]


@pytest.mark.parametrize(
    "provider",
    [
        "anthropic",
        "openai",
        "gemini",
        "compat",
    ],
)
def test_user_message_with_several_text_blocks(client, provider):
    """Claude Code puts <system-reminder> blocks and the prompt in separate text blocks of one turn."""
    content = [{"type": "text", "text": "<system-reminder>be nice</system-reminder>"}, {"type": "text", "text": "hello"}]
    message = client.messages.create(model=provider, max_tokens=100, messages=user(content))
    assert message.content[0].text.split() == ["echo:", "<system-reminder>be", "nice</system-reminder>", "hello"]


@pytest.mark.parametrize("provider", FAKE_PROVIDERS)
def test_image_block(client, provider):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]
    message = client.messages.create(model=provider, max_tokens=100, messages=user(content))
    assert message.content[0].text == "echo: what is this [image]"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_thinking_param(client, fake_upstream, provider):
    fake_upstream.clear()
    message = client.messages.create(
        model=provider, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024}, messages=user("think")
    )
    assert message.content[0].text == echo(provider, "think")
    if provider == "demo":
        return
    sent = fake_upstream.requests[-1]["json"]
    if provider == PASS_THROUGH:
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
        return
    assert "thinking" not in sent  # no other vendor takes Anthropic's object: mapped to its own knob
    if provider == "gemini":
        assert sent["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 1024
    else:
        assert sent["reasoning_effort"] == "low"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_thinking_blocks_in_history(client, fake_upstream, provider):
    """Claude Code sends its earlier thinking blocks back, signature included."""
    fake_upstream.clear()
    messages = [
        *user("weather"),
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should look it up.", "signature": "EqQBCkYIBxgCKkA"},
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"query": "weather"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]
    message = client.messages.create(
        model=provider, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024}, tools=TOOLS, messages=messages
    )
    assert message.content[-1].text == tool_said(provider, "sunny")
    if provider == PASS_THROUGH:
        assert fake_upstream.requests[-1]["json"]["messages"] == messages
    elif provider != "demo":  # an Anthropic signature means nothing to another vendor
        assert "EqQBCkYIBxgCKkA" not in json.dumps(fake_upstream.requests[-1]["json"])


@pytest.mark.parametrize("provider", TRANSLATED)
def test_gemini_thoughts_an_anthropic_client_holds_go_back_to_gemini_only(client, fake_upstream, provider):
    """An earlier turn Gemini answered reached this client as a thinking block whose signature is
    the gateway's seal (`aigw1.gemini.<thoughtSignature>`): it goes back to Gemini as the thought's
    signature, and to no other vendor."""
    fake_upstream.clear()
    messages = [
        *user("first"),
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "pondering", "signature": "aigw1.gemini.Q2lRQlZLaGtMdVdQ"},
            {"type": "text", "text": "echo: first"},
        ]},
        *user("second"),
    ]  # fmt: skip
    message = client.messages.create(model=provider, max_tokens=100, messages=messages)
    assert message.content[-1].text == echo(provider, "second")
    if provider == "demo":
        return
    sent = fake_upstream.requests[-1]["json"]
    if provider == "gemini":
        assert sent["contents"][1]["parts"][0] == {"text": "pondering", "thought": True, "thoughtSignature": "Q2lRQlZLaGtMdVdQ"}
    else:
        assert "Q2lRQlZLaGtMdVdQ" not in json.dumps(sent)


# --- count_tokens and models -----------------------------------------------------------------------

# "count these tokens please" is 25 characters: the fakes count ceil(25 / 4) = 7, the gateway's own
# estimate (chars + 1) // 4 = 6. Gemini has a countTokens call; OpenAI-format upstreams do not.
COUNTS = {"anthropic": 7, "gemini": 7, "openai": 6, "compat": 6, "demo": 6}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_count_tokens(client, fake_upstream, provider):
    fake_upstream.clear()
    counted = client.messages.count_tokens(model=provider, messages=user("count these tokens please"))
    assert counted.input_tokens == COUNTS[provider]
    if provider == PASS_THROUGH:
        sent = fake_upstream.last("/v1/messages/count_tokens")
        assert sent["json"]["model"] == "claude-sonnet-4-5"
        assert sent["json"]["messages"] == user("count these tokens please")
    elif provider == "gemini":
        assert fake_upstream.last(":countTokens")["path"] == "/v1beta/models/gemini-2.5-flash:countTokens"


def test_count_tokens_validates_like_messages(gateway):
    response = post(gateway, {"model": "anthropic", "messages": [{"role": "wizard", "content": "x"}]},
                    path="/anthropic/v1/messages/count_tokens")  # fmt: skip
    assert "messages[0].role" in assert_anthropic_error(response, 400, "invalid_request_error")


def test_models_list_and_retrieve(client):
    ids = [model.id for model in client.models.list()]
    assert {"anthropic", "openai", "gemini", "compat", "demo"} <= set(ids)
    assert len(ids) == len(set(ids))
    assert "anthropic--error-429" in ids and "unreachable" in ids
    model = client.models.retrieve("gemini")
    assert (model.id, model.type, model.display_name) == ("gemini", "model", "gemini")
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("no-such-endpoint")


# --- headers and authentication --------------------------------------------------------------------


def test_beta_query_and_beta_headers_reach_an_anthropic_upstream(gateway, fake_upstream):
    fake_upstream.clear()
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=gateway.admin_token, max_retries=0)
    message = client.beta.messages.create(  # the SDK's beta namespace posts to /v1/messages?beta=true
        model="anthropic", max_tokens=50, betas=["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"],
        messages=user("beta hello"),
    )  # fmt: skip
    assert message.content[0].text == "echo: beta hello"
    sent = fake_upstream.last("/v1/messages")
    assert sent["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14,context-1m-2025-08-07"
    assert sent["headers"]["x-api-key"] == SECRETS["TEST_ANTHROPIC_KEY"]  # the gateway's key, never the client's
    assert "authorization" not in sent["headers"]
    assert gateway.admin_token not in json.dumps(sent)
    assert sent["query"] == {}


@pytest.mark.parametrize("path", ["/anthropic/v1/messages", "/anthropic/v1/messages/count_tokens"])
def test_raw_beta_query_and_client_credentials_never_forwarded(gateway, fake_upstream, path):
    fake_upstream.clear()
    body = {"model": "anthropic", "messages": user("raw beta")}
    if path.endswith("/messages"):
        body["max_tokens"] = 50
    response = post(gateway, body, path=path + "?beta=true", token=None, headers={
        "authorization": f"Bearer {gateway.admin_token}",
        "x-api-key": "sk-ant-client-placeholder",
        "anthropic-beta": "fine-grained-tool-streaming-2025-05-14",
        "anthropic-version": "2023-06-01",
    })  # fmt: skip
    assert response.status_code == 200, response.text
    sent = fake_upstream.requests[-1]
    assert sent["path"] == path.removeprefix("/anthropic")
    assert sent["headers"]["anthropic-beta"] == "fine-grained-tool-streaming-2025-05-14"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["headers"]["x-api-key"] == SECRETS["TEST_ANTHROPIC_KEY"]
    assert "authorization" not in sent["headers"]
    assert "sk-ant-client-placeholder" not in json.dumps(sent)


def test_anthropic_headers_do_not_reach_other_vendors(client, fake_upstream):
    fake_upstream.clear()
    client.messages.create(model="openai", max_tokens=50, messages=user("x"), extra_headers={"anthropic-beta": "some-beta"})
    sent = fake_upstream.last("/v1/chat/completions")
    assert not [name for name in sent["headers"] if name.startswith("anthropic-")]
    assert sent["headers"]["authorization"] == f"Bearer {SECRETS['TEST_OPENAI_KEY']}"


def test_sdk_with_auth_token_sends_only_bearer(gateway, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", auth_token=gateway.admin_token, max_retries=0)
    raw = client.messages.with_raw_response.create(model="demo", max_tokens=50, messages=user("bearer"))
    assert raw.http_request.headers["authorization"] == f"Bearer {gateway.admin_token}"
    assert "x-api-key" not in raw.http_request.headers
    assert raw.parse().content[0].text == "Echo: bearer"


def test_sdk_with_api_key(gateway, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=gateway.admin_token, max_retries=0)
    raw = client.messages.with_raw_response.create(model="demo", max_tokens=50, messages=user("api key"))
    # This SDK version sends api_key as a bearer token as well (older ones sent x-api-key).
    assert gateway.admin_token in (raw.http_request.headers.get("x-api-key"), raw.http_request.headers.get("authorization", "")[7:])
    assert raw.parse().content[0].text == "Echo: api key"


def test_sdk_sending_only_x_api_key(gateway, monkeypatch):
    """Claude Code with ANTHROPIC_API_KEY: an x-api-key header and no Authorization."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    client = anthropic.Anthropic(
        base_url=gateway.url + "/anthropic", default_headers={"x-api-key": gateway.admin_token}, max_retries=0
    )
    raw = client.messages.with_raw_response.create(model="demo", max_tokens=50, messages=user("x api key"))
    assert raw.http_request.headers["x-api-key"] == gateway.admin_token
    assert "authorization" not in raw.http_request.headers
    assert raw.parse().content[0].text == "Echo: x api key"


def test_bad_token_is_401_authentication_error(gateway):
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key="aigw_nope_nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="demo", max_tokens=10, messages=user("x"))
    assert caught.value.body["error"]["type"] == "authentication_error"
    body = {"model": "demo", "max_tokens": 10, "messages": user("x")}
    assert_anthropic_error(post(gateway, body, token="aigw_nope_nope"), 401, "authentication_error")
    assert_anthropic_error(post(gateway, body, token=None), 401, "authentication_error")


@pytest.mark.parametrize("value", ["[1]", '{"team": 1}', "not json", '"a string"'])
def test_request_tags_header_must_be_an_object_of_strings(gateway, value):
    body = {"model": "demo", "max_tokens": 10, "messages": user("x")}
    message = assert_anthropic_error(post(gateway, body, headers={"X-Aigw-Request-Tags": value}), 400, "invalid_request_error")
    assert "x-aigw-request-tags" in message.lower()


def test_request_tags_header_accepted(client):
    message = client.messages.create(
        model="demo", max_tokens=10, messages=user("tagged"), extra_headers={"X-Aigw-Request-Tags": '{"team": "search"}'}
    )
    assert message.content[0].text == "Echo: tagged"


# --- errors ----------------------------------------------------------------------------------------


def test_unknown_endpoint_is_404_not_found_error(client, gateway):
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-endpoint", max_tokens=10, messages=user("x"))
    assert caught.value.body["error"]["type"] == "not_found_error"
    message = assert_anthropic_error(post(gateway, {"model": "no-such-endpoint", "max_tokens": 10, "messages": user("x")}), 404, "not_found_error")
    assert "no-such-endpoint" in message


def test_unknown_path_under_the_surface_is_an_anthropic_404(gateway):
    response = requests.post(gateway.url + "/anthropic/v1/messages/batches", headers={"x-api-key": gateway.admin_token},
                             json={"requests": []}, timeout=10)  # fmt: skip
    assert_anthropic_error(response, 404, "not_found_error")


def test_malformed_json_is_400(gateway):
    assert_anthropic_error(post(gateway, b'{"model": "anthropic", "messages": ['), 400, "invalid_request_error")


@pytest.mark.parametrize("provider", [PASS_THROUGH, "openai"])
@pytest.mark.parametrize(
    "body, field",
    [
        ({"messages": user("x")}, "max_tokens"),
        ({"max_tokens": 10}, "messages"),
        ({"max_tokens": "ten", "messages": user("x")}, "max_tokens"),
        ({"max_tokens": 10, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"max_tokens": 10, "messages": user("x"), "temperature": "hot"}, "temperature"),
    ],
)
def test_invalid_body_is_400_naming_the_field(gateway, fake_upstream, provider, body, field):
    fake_upstream.clear()
    message = assert_anthropic_error(post(gateway, {"model": provider, **body}), 400, "invalid_request_error")
    assert f"'{field}'" in message
    assert fake_upstream.requests == []  # refused by the gateway, pass-through or not


@pytest.mark.parametrize("stream", [False, True])
def test_a_400_from_translating_for_the_destination_names_the_anthropic_field(gateway, fake_upstream, stream):
    """Gemini needs a function's name for its result, and this one answers no call: the 400 names
    `messages` (canonical message indexes are not the client's), not a canonical `messages[i]`."""
    fake_upstream.clear()
    orphan = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_ghost", "content": "x"}]}]
    body = {"model": "gemini", "max_tokens": 10, "messages": [*user("hi"), {"role": "assistant", "content": "ok"}, *orphan]}
    message = assert_anthropic_error(post(gateway, {**body, "stream": stream}), 400, "invalid_request_error")
    assert "'messages' answers tool call 'toolu_ghost'" in message
    assert fake_upstream.requests == []


def test_missing_max_tokens_through_the_sdk(client):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="anthropic", messages=user("x"), max_tokens=anthropic.omit)
    assert "max_tokens" in caught.value.message


def test_body_over_the_limit_is_413(gateway):
    body = {"model": "anthropic", "max_tokens": 10, "messages": user("x" * (MAX_REQUEST_BYTES + 10))}
    assert_anthropic_error(post(gateway, body), 413, "request_too_large")


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_429_is_429_rate_limit_error_with_retry_after(client, gateway, upstream):
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=f"{upstream}--error-429", max_tokens=10, messages=user("x"))
    assert caught.value.response.headers["retry-after"] == "7"
    response = post(gateway, {"model": f"{upstream}--error-429", "max_tokens": 10, "messages": user("x")})
    assert "error-429" in assert_anthropic_error(response, 429, "rate_limit_error")  # names the destination
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_529_is_529_overloaded_error(client, gateway, upstream):
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model=f"{upstream}--error-529", max_tokens=10, messages=user("x"))
    response = post(gateway, {"model": f"{upstream}--error-529", "max_tokens": 10, "messages": user("x")})
    assert "error-529" in assert_anthropic_error(response, 529, "overloaded_error")


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_500_is_502_api_error(client, gateway, upstream):
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model=f"{upstream}--error-500", max_tokens=10, messages=user("x"))
    assert caught.value.status_code == 502
    response = post(gateway, {"model": f"{upstream}--error-500", "max_tokens": 10, "messages": user("x")})
    assert "error-500" in assert_anthropic_error(response, 502, "api_error")


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_rejecting_the_gateway_key_is_502_without_the_key(gateway, upstream):
    response = post(gateway, {"model": f"{upstream}--error-401", "max_tokens": 10, "messages": user("x")})
    assert_anthropic_error(response, 502, "api_error")


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_400_stays_400(gateway, upstream):
    response = post(gateway, {"model": f"{upstream}--error-400", "max_tokens": 10, "messages": user("x")})
    assert "error-400" in assert_anthropic_error(response, 400, "invalid_request_error")


def test_upstream_timeout_is_504_timeout_error(gateway):
    started = time.monotonic()
    response = post(gateway, {"model": "anthropic--hang", "max_tokens": 10, "messages": user("x")})
    assert_anthropic_error(response, 504, "timeout_error")
    assert time.monotonic() - started < 10


def test_unreachable_upstream_is_502(gateway):
    response = post(gateway, {"model": "unreachable", "max_tokens": 10, "messages": user("x")})
    assert_anthropic_error(response, 502, "api_error")


STREAM_ERRORS = {  # what the in-band error event says, per upstream
    "anthropic": "overloaded_error",  # relayed as the upstream sent it
    "gemini": "overloaded_error",  # Gemini's in-stream 503 UNAVAILABLE
    "openai": "api_error",
    "compat": "api_error",
}


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_stream_error_midway_is_an_error_event_the_sdk_raises(client, gateway, upstream):
    pieces = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(model=f"{upstream}--stream-error", max_tokens=50, messages=user("one two three")) as s:
            for piece in s.text_stream:
                pieces.append(piece)
    assert pieces and pieces[0] == "echo: "  # the stream had started
    assert caught.value.body["error"]["type"] == STREAM_ERRORS[upstream]

    _, events = raw_stream(gateway, f"{upstream}--stream-error", messages=user("one two three"))
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "error"
    assert "message_stop" not in names
    error = events[-1][1]
    assert set(error) == {"type", "error"} and error["error"]["type"] == STREAM_ERRORS[upstream]
    assert_no_secret(json.dumps(error))


@pytest.mark.parametrize("upstream", ["anthropic", "openai"])
def test_stream_dropped_midway_raises_in_the_sdk(client, upstream):
    with pytest.raises((anthropic.APIStatusError, anthropic.APIConnectionError)):
        with client.messages.stream(model=f"{upstream}--drop", max_tokens=50, messages=user("one two three")) as s:
            for _ in s.text_stream:
                pass
