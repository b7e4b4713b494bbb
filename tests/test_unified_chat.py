"""The unified chat API end to end: the official `openai` SDK -> a real gateway process -> fake
upstreams of each vendor's wire format. One set of tests per provider behind the gateway."""

from __future__ import annotations

import json

import openai
import pytest

from tests.expected import PNG, echo
from tests.conftest import PROVIDER_DESTINATIONS, SECRETS

PROVIDERS = [*PROVIDER_DESTINATIONS, "demo"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        },
    },
    {
        "type": "function",
        "function": {"name": "clock", "description": "The time.", "parameters": {"type": "object", "properties": {}}},
    },
]


@pytest.fixture
def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/mlflow/v1", api_key=gateway.admin_token, max_retries=0)


@pytest.fixture
def async_client(gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url + "/mlflow/v1", api_key=gateway.admin_token, max_retries=0)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# --- plain chat ------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_chat(client, provider):
    reply = client.chat.completions.create(model=provider, messages=user("hello there"))
    assert reply.choices[0].message.content == echo(provider, "hello there")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.object == "chat.completion"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_chat_async(async_client, provider):
    reply = await async_client.chat.completions.create(model=provider, messages=user("async hello"))
    assert reply.choices[0].message.content == echo(provider, "async hello")


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "demo"])
def test_system_prompt_and_multi_turn(client, provider):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
    ]
    reply = client.chat.completions.create(model=provider, messages=messages)
    assert reply.choices[0].message.content == "[system: You are terse.] echo: second"


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "demo"])
def test_image_part(client, provider):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    reply = client.chat.completions.create(model=provider, messages=[{"role": "user", "content": content}])
    assert reply.choices[0].message.content == "echo: what is this [image]"


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "anthropic"])
def test_json_response_format(client, provider):
    reply = client.chat.completions.create(
        model=provider, messages=user("give json"), response_format={"type": "json_object"}
    )
    assert json.loads(reply.choices[0].message.content) == {"echo": "give json"}


def test_json_response_format_anthropic(client, fake_upstream):
    """Anthropic has no JSON mode in the Messages API: the schema becomes a system instruction."""
    fake_upstream.clear()
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    client.chat.completions.create(
        model="anthropic",
        messages=user("give json"),
        response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}},
    )
    system = fake_upstream.requests[-1]["json"]["system"]
    assert "JSON" in system and '"answer"' in system


# --- streaming -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_with_usage(client, provider):
    chunks = list(
        client.chat.completions.create(
            model=provider, messages=user("stream me please"), stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == echo(provider, "stream me please")
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really streamed
    for chunk in chunks:
        assert chunk.id and chunk.object == "chat.completion.chunk" and chunk.created and chunk.model
        assert all(choice.index == 0 for choice in chunk.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_without_usage(client, provider):
    chunks = list(client.chat.completions.create(model=provider, messages=user("no usage"), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == echo(provider, "no usage")
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_async(async_client, provider):
    stream = await async_client.chat.completions.create(model=provider, messages=user("async stream"), stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == echo(provider, "async stream")


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "demo"])
def test_stream_ends_with_done(gateway, provider):
    import requests

    response = requests.post(
        gateway.url + "/mlflow/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway.admin_token}"},
        json={"model": provider, "messages": user("raw"), "stream": True},
        stream=True,
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    body = response.content.decode()
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


# --- tools -----------------------------------------------------------------------------------------


def tool_arguments_key(provider: str) -> str:
    return "input" if provider == "demo" else "query"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tool_round_trip(client, provider, stream):
    messages = user("weather in Paris")
    if stream:
        chunks = list(client.chat.completions.create(model=provider, messages=messages, tools=TOOLS, stream=True))
        calls: dict[int, dict] = {}
        for chunk in chunks:
            for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                call["id"] = call["id"] or delta.id
                call["name"] = call["name"] or (delta.function.name if delta.function else None)
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["tool_calls"]
        call = calls[0]
    else:
        reply = client.chat.completions.create(model=provider, messages=messages, tools=TOOLS)
        assert reply.choices[0].finish_reason == "tool_calls"
        tool_call = reply.choices[0].message.tool_calls[0]
        call = {"id": tool_call.id, "name": tool_call.function.name, "arguments": tool_call.function.arguments}
    assert call["id"] and call["name"] == "lookup"
    assert json.loads(call["arguments"]) == {tool_arguments_key(provider): "weather in Paris"}

    messages = messages + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call["id"], "type": "function", "function": {"name": "lookup", "arguments": call["arguments"]}}],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21C"},
    ]
    reply = client.chat.completions.create(model=provider, messages=messages, tools=TOOLS)
    expected = "The tool said: sunny, 21C" if provider == "demo" else "tool said: sunny, 21C"
    assert reply.choices[0].message.content == expected


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "demo"])
def test_parallel_tool_calls(client, provider):
    reply = client.chat.completions.create(model=provider, messages=user("do these in parallel"), tools=TOOLS)
    calls = reply.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["lookup", "clock"]
    assert len({c.id for c in calls}) == 2
    results = [{"role": "tool", "tool_call_id": c.id, "content": f"result {i}"} for i, c in enumerate(calls)]
    messages = user("do these in parallel") + [reply.choices[0].message.model_dump(exclude_none=True)] + results
    final = client.chat.completions.create(model=provider, messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "tool said: result 0 | result 1"


# --- what goes upstream ----------------------------------------------------------------------------


def test_openai_passthrough_keeps_unknown_fields(client, fake_upstream):
    fake_upstream.clear()
    client.chat.completions.create(
        model="openai",
        messages=user("x"),
        seed=7,
        extra_body={"logit_bias": {"50256": -100}, "vendor_feature": {"on": True}},
    )
    sent = fake_upstream.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["json"]["model"] == "gpt-4o-mini"
    assert sent["json"]["vendor_feature"] == {"on": True} and sent["json"]["logit_bias"] == {"50256": -100}
    assert sent["json"]["seed"] == 7
    assert sent["headers"]["authorization"] == f"Bearer {SECRETS['TEST_OPENAI_KEY']}"


def test_azure_addressing(client, fake_upstream):
    fake_upstream.clear()
    client.chat.completions.create(model="azure", messages=user("x"))
    sent = fake_upstream.requests[-1]
    assert sent["path"] == "/openai/deployments/gpt-4o/chat/completions"
    assert sent["query"]["api-version"]
    assert sent["headers"]["api-key"] == SECRETS["TEST_AZURE_KEY"]
    assert "authorization" not in sent["headers"]


def test_anthropic_request_translation(client, fake_upstream):
    fake_upstream.clear()
    client.chat.completions.create(
        model="anthropic", messages=[{"role": "system", "content": "sys"}, *user("x")], max_tokens=50, stop=["END"]
    )
    sent = fake_upstream.requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == SECRETS["TEST_ANTHROPIC_KEY"]
    assert sent["headers"]["anthropic-version"]
    body = sent["json"]
    assert body["model"] == "claude-sonnet-4-5" and body["system"] == "sys" and body["max_tokens"] == 50
    assert body["stop_sequences"] == ["END"]


def test_gemini_request_translation(client, fake_upstream):
    fake_upstream.clear()
    client.chat.completions.create(model="gemini", messages=[{"role": "system", "content": "sys"}, *user("x")], max_tokens=50)
    sent = fake_upstream.requests[-1]
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent["headers"]["x-goog-api-key"] == SECRETS["TEST_GEMINI_KEY"]
    assert "key" not in sent["query"]  # never the key in a URL
    body = sent["json"]
    assert body["systemInstruction"]["parts"][0]["text"] == "sys"
    assert body["generationConfig"]["maxOutputTokens"] == 50


@pytest.mark.parametrize("provider", ["openai", "compat", "anthropic", "gemini"])
def test_n_choices_or_clear_error(client, provider):
    if provider == "anthropic":  # Anthropic cannot: a clear 400, not a silent single answer
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=provider, messages=user("two"), n=2)
        return
    reply = client.chat.completions.create(model=provider, messages=user("two"), n=2)
    assert [c.index for c in reply.choices] == [0, 1]
