"""The fake upstreams speak the vendors' wire formats: proven with the official SDKs."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import openai
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.fakes.fixtures import fake_upstream  # noqa: F401  (until tests/conftest.py imports it)
from tests.fakes.scenario import embedding_vector

ROOT = Path(__file__).resolve().parents[1]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}
CLAUDE_TOOLS = [
    {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
    {"name": "get_time", "description": "Time", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
]


@pytest.fixture
def fake(fake_upstream):  # noqa: F811
    fake_upstream.clear()
    return fake_upstream


@pytest.fixture
def oai(fake):
    return openai.OpenAI(base_url=f"{fake.url}/v1", api_key="sk-test", max_retries=0, timeout=5)


@pytest.fixture
def claude(fake):
    return anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0, timeout=5)


@pytest.fixture
def gem(fake):
    return genai.Client(api_key="gk-test", http_options=types.HttpOptions(base_url=fake.url, api_version="v1beta"))


def sse_events(text: str, sep: str = "\n\n") -> list[str]:
    return [e for e in text.split(sep) if e]


# ===================================================================== OpenAI


def test_openai_chat(oai, fake):
    r = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello world"}],
        extra_body={"custom_field": 42},
    )
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "[system: You are terse.] echo: hello world"
    assert r.choices[0].finish_reason == "stop"
    chars = len("You are terse.") + len("hello world")
    assert r.usage.prompt_tokens == (chars + 3) // 4
    assert r.usage.completion_tokens == 7
    assert r.usage.total_tokens == r.usage.prompt_tokens + 7
    req = fake.last("/v1/chat/completions")
    assert req["method"] == "POST"
    assert req["headers"]["authorization"] == "Bearer sk-test"
    assert req["json"]["custom_field"] == 42


def test_openai_chat_multimodal_n_and_json_mode(oai):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    r = oai.chat.completions.create(
        model="gpt-4o", n=2, messages=[{"role": "user", "content": [{"type": "text", "text": "what is"}, image]}]
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[1].message.content == "echo: what is [image]"
    r = oai.chat.completions.create(
        model="gpt-4o", response_format={"type": "json_object"}, messages=[{"role": "user", "content": "hi"}]
    )
    assert json.loads(r.choices[0].message.content) == {"echo": "hi"}
    r = oai.chat.completions.create(model="gpt-4o", max_tokens=2, messages=[{"role": "user", "content": "a b c d"}])
    assert r.choices[0].message.content == "echo: a" and r.choices[0].finish_reason == "length"


def test_openai_stream_with_usage(oai):
    stream = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o-mini" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_stream_raw_framing(fake):
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    r = requests.post(f"{fake.url}/v1/chat/completions", json=body, timeout=5)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert all(e.startswith("data: ") for e in events)
    assert r.text.endswith("data: [DONE]\n\n")
    assert "usage" not in json.loads(events[0][6:])  # no include_usage -> no usage key


def test_openai_tool_calls(oai):
    r = oai.chat.completions.create(
        model="gpt-4o", tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "weather in Paris"}]
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"query": "weather in Paris"}

    messages = [
        {"role": "user", "content": "weather in Paris"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    r = oai.chat.completions.create(model="gpt-4o", tools=[WEATHER_TOOL], messages=messages)
    assert r.choices[0].message.content == "tool said: sunny, 21C"
    assert r.choices[0].finish_reason == "stop"


def test_openai_tool_calls_streamed(oai):
    with oai.chat.completions.stream(
        model="gpt-4o", tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "parallel please"}]
    ) as stream:
        arg_deltas = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(arg_deltas) >= 4  # >= 2 pieces per call
    calls = final.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert all(json.loads(c.function.arguments) == {"query": "parallel please"} for c in calls)
    assert calls[0].id != calls[1].id
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_embeddings(oai, fake):
    r = oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])  # SDK asks for base64
    assert fake.last("/v1/embeddings")["json"].get("encoding_format") == "base64"
    assert [d.index for d in r.data] == [0, 1]
    assert r.data[0].embedding == pytest.approx(embedding_vector("alpha"))
    assert r.usage.prompt_tokens > 0
    f = oai.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float", dimensions=16)
    assert len(f.data[0].embedding) == 16
    assert f.data[0].embedding == embedding_vector("alpha", 16)
    raw = requests.post(f"{fake.url}/v1/embeddings", json={"model": "e", "input": "alpha", "encoding_format": "base64"}).json()
    vec = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(vec) == embedding_vector("alpha")


def test_openai_errors(oai, fake):
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model="error-429", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["code"] == "rate_limit_exceeded" and set(info.value.body) == {"message", "type", "param", "code"}
    with pytest.raises(openai.AuthenticationError):
        oai.chat.completions.create(model="error-401", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError):
        oai.embeddings.create(model="error-503", input="x")
    with pytest.raises(openai.APIError, match="stream-error"):
        for _ in oai.chat.completions.create(model="stream-error", stream=True, messages=[{"role": "user", "content": "a b c"}]):
            pass


def test_openai_azure(fake):
    client = openai.AzureOpenAI(azure_endpoint=fake.url, api_key="az-key", api_version="2024-10-21", max_retries=0)
    r = client.chat.completions.create(model="my-deploy", messages=[{"role": "user", "content": "hi"}])
    assert r.model == "my-deploy" and r.choices[0].message.content == "echo: hi"
    req = fake.last("/openai/deployments/")
    assert req["path"] == "/openai/deployments/my-deploy/chat/completions"
    assert req["query"] == {"api-version": "2024-10-21"} and req["headers"]["api-key"] == "az-key"
    e = client.embeddings.create(model="emb-deploy", input="x", encoding_format="float")
    assert e.model == "emb-deploy" and len(e.data[0].embedding) == 8


RESPONSES_TOOLS = [
    {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}},
    {"type": "custom", "name": "apply_patch", "description": "Edit files."},
]


def test_openai_responses(oai, fake):
    r = oai.responses.create(model="gpt-5", instructions="You are terse.", input="hello world", max_output_tokens=50)
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    assert r.output_text == "[system: You are terse.] echo: hello world"
    assert r.output[0].type == "message" and r.output[0].id.startswith("msg_")
    chars = len("You are terse.") + len("hello world")
    assert r.usage.input_tokens == (chars + 3) // 4 and r.usage.output_tokens == 7
    assert r.usage.total_tokens == r.usage.input_tokens + 7 and r.max_output_tokens == 50
    assert fake.last("/v1/responses")["json"]["instructions"] == "You are terse."
    r = oai.responses.create(model="gpt-5", input="a b c d", max_output_tokens=2)
    assert (r.status, r.incomplete_details.reason, r.output_text) == ("incomplete", "max_output_tokens", "echo: a")
    r = oai.responses.create(model="gpt-5", input="hi", text={"format": {"type": "json_object"}})
    assert json.loads(r.output_text) == {"echo": "hi"}


def test_azure_responses(fake):
    """Azure's Responses API on a classic resource URL: no deployment in the path, the body names it."""
    client = openai.AzureOpenAI(azure_endpoint=fake.url, api_key="az-key", api_version="2025-04-01-preview", max_retries=0)
    r = client.responses.create(model="my-deploy", instructions="Be brief.", input="hello azure")
    assert (r.model, r.output_text) == ("my-deploy", "[system: Be brief.] echo: hello azure")
    req = fake.last("/responses")
    assert req["path"] == "/openai/responses" and req["query"] == {"api-version": "2025-04-01-preview"}
    assert req["headers"]["api-key"] == "az-key" and req["json"]["model"] == "my-deploy"
    kinds = [e.type for e in client.responses.create(model="my-deploy", input="a b", stream=True)]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert fake.last("/responses")["path"] == "/openai/responses"
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="error-429", input="x")


def test_openai_responses_stream_tools_and_reasoning(oai):
    with oai.responses.stream(
        model="gpt-5", input="do parallel", tools=RESPONSES_TOOLS,
        reasoning={"effort": "low", "summary": "auto"}, include=["reasoning.encrypted_content"],
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.reasoning_summary_text.delta" in kinds and "response.custom_tool_call_input.delta" in kinds
    reasoning, call, custom = final.output
    assert reasoning.summary[0].text == "thinking about: do parallel" and reasoning.encrypted_content
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"query": "do parallel"})
    assert (custom.type, custom.name, custom.input) == ("custom_tool_call", "apply_patch", "do parallel")
    assert final.usage.output_tokens_details.reasoning_tokens == 4  # "thinking about: do parallel"
    history = [
        {"role": "user", "content": "do parallel"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "custom_tool_call", "call_id": custom.call_id, "name": custom.name, "input": custom.input},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        {"type": "custom_tool_call_output", "call_id": custom.call_id, "output": [{"type": "input_text", "text": "patched"}]},
    ]
    assert oai.responses.create(model="gpt-5", input=history, tools=RESPONSES_TOOLS).output_text == "tool said: sunny | patched"


def test_openai_responses_raw_stream_and_errors(oai, fake):
    body = {"model": "m", "stream": True, "input": "one two"}
    r = requests.post(f"{fake.url}/v1/responses", json=body, timeout=5)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    for sequence, e in enumerate(events):
        event, data = e.split("\n")
        payload = json.loads(data[6:])
        assert payload["type"] == event[7:] and payload["sequence_number"] == sequence
    deltas = [json.loads(e.split("\n")[1][6:])["delta"] for e in events if e.startswith("event: response.output_text.delta")]
    assert deltas == ["echo: ", "one ", "two"] and "[DONE]" not in r.text
    missing = requests.post(f"{fake.url}/v1/responses", json={"model": "m"}, timeout=5)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "input"
    with pytest.raises(openai.RateLimitError) as info:
        oai.responses.create(model="error-429", input="x")
    assert info.value.response.headers["retry-after"] == "7" and info.value.body["code"] == "rate_limit_exceeded"
    kinds = [e.type for e in oai.responses.create(model="stream-error", input="a b c", stream=True)]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added", "error", "response.failed"]
    with pytest.raises(openai.APIConnectionError):
        oai.responses.create(model="drop", input="x")
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.3).responses.create(model="hang", input="x")


def test_openai_models(oai):
    ids = [m.id for m in oai.models.list()]
    assert "gpt-4o-mini" in ids


def test_faults_drop_slow_hang(oai, fake):
    msgs = [{"role": "user", "content": "a b c d e"}]
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="drop", messages=msgs)
    got = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(model="drop", messages=msgs, stream=True):
            got.append(chunk)
    assert len(got) == 2
    t0 = time.monotonic()
    r = oai.chat.completions.create(model="slow-200", messages=msgs)
    assert time.monotonic() - t0 >= 0.2 and r.choices[0].message.content == "echo: a b c d e"
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.3).chat.completions.create(model="hang", messages=msgs)
    # the hanging request does not block others
    assert oai.chat.completions.create(model="m", messages=msgs).choices[0].message.content == "echo: a b c d e"
    assert [r["json"]["model"] for r in fake.requests] == ["drop", "drop", "slow-200", "hang", "m"]


# ================================================================== Anthropic


def test_anthropic_create(claude, fake):
    m = claude.messages.create(
        model="claude-x", max_tokens=100, system="Be brief and kind to everyone, always.",
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.content[0].type == "text"
    assert m.content[0].text == "[system: Be brief and kind to everyone,] echo: hello there"
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.usage.output_tokens == len(m.content[0].text.split()) and m.usage.input_tokens > 0
    req = fake.last("/v1/messages")
    # the SDK authenticates with x-api-key or (newer releases) a bearer token
    assert "sk-ant-test" in (req["headers"].get("x-api-key", ""), req["headers"].get("authorization", "").removeprefix("Bearer "))
    assert req["headers"]["anthropic-version"]


def test_anthropic_stream_text(claude):
    with claude.messages.stream(model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "one two"}]) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert pieces == ["echo: ", "one ", "two"]
    assert final.content[0].text == "echo: one two" and final.usage.output_tokens == 3


def test_anthropic_stream_raw_event_order(fake):
    body = {"model": "c", "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    r = requests.post(f"{fake.url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}, timeout=5)
    names = [e.split("\n")[0] for e in sse_events(r.text)]
    assert names == ["event: message_start", "event: content_block_start", "event: ping"] + ["event: content_block_delta"] * 2 + [
        "event: content_block_stop", "event: message_delta", "event: message_stop"]
    for e in sse_events(r.text):
        event, data = e.split("\n")
        assert json.loads(data[6:])["type"] == event[7:]


def test_anthropic_stream_tool_use(claude):
    with claude.messages.stream(
        model="claude-x", max_tokens=100, tools=CLAUDE_TOOLS, messages=[{"role": "user", "content": "do parallel"}]
    ) as s:
        json_deltas = [e for e in s if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.type, b.name) for b in final.content] == [("tool_use", "get_weather"), ("tool_use", "get_time")]
    assert all(b.input == {"query": "do parallel"} and b.id.startswith("toolu_") for b in final.content)
    assert len(json_deltas) >= 6

    m = claude.messages.create(
        model="claude-x", max_tokens=100, tools=CLAUDE_TOOLS,
        messages=[
            {"role": "user", "content": "do parallel"},
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": final.content[0].id, "content": "rain"},
                {"type": "tool_result", "tool_use_id": final.content[1].id, "content": [{"type": "text", "text": "noon"}]},
            ]},
        ],
    )
    assert m.content[0].text == "tool said: rain | noon" and m.stop_reason == "end_turn"


def test_anthropic_count_tokens_and_validation(claude, fake):
    r = claude.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "12345678"}])
    assert r.input_tokens == 2
    raw = requests.post(f"{fake.url}/v1/messages", json={"model": "c", "messages": []}, timeout=5)
    assert raw.status_code == 400
    assert raw.json()["type"] == "error" and raw.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}


def test_anthropic_errors(claude):
    msgs = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.InternalServerError) as info:
        claude.messages.create(model="error-529", max_tokens=10, messages=msgs)
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model="error-429", max_tokens=10, messages=msgs)
    assert info.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.APIStatusError) as info:
        with claude.messages.stream(model="stream-error", max_tokens=10, messages=msgs) as s:
            for _ in s:
                pass
    assert info.value.body["error"]["type"] == "overloaded_error"


# ===================================================================== Gemini


def test_gemini_generate(gem, fake):
    r = gem.models.generate_content(
        model="gemini-x", contents="hello gemini",
        config=types.GenerateContentConfig(system_instruction="You are a poet."),
    )
    assert r.text == "[system: You are a poet.] echo: hello gemini"
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    u = r.usage_metadata
    assert u.candidates_token_count == 8 and u.total_token_count == u.prompt_token_count + 8
    req = fake.last(":generateContent")
    assert req["path"] == "/v1beta/models/gemini-x:generateContent"
    assert req["headers"]["x-goog-api-key"] == "gk-test"
    assert req["json"]["systemInstruction"]["parts"][0]["text"] == "You are a poet."


def test_gemini_stream(gem, fake):
    chunks = list(gem.models.generate_content_stream(model="gemini-x", contents="a b c"))
    assert "".join(c.text for c in chunks) == "echo: a b c"
    assert len(chunks) == 4
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 4
    assert fake.last("streamGenerateContent")["query"] == {"alt": "sse"}


def test_gemini_raw_stream_framing(fake):
    body = {"contents": [{"role": "user", "parts": [{"text": "x y"}]}]}
    url = f"{fake.url}/v1beta/models/gemini-x:streamGenerateContent"
    sse = requests.post(url + "?alt=sse", json=body, timeout=5)
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.text.endswith("\r\n\r\n") and all(e.startswith("data: {") for e in sse_events(sse.text, "\r\n\r\n"))
    arr = requests.post(url, json=body, timeout=5)
    assert arr.text.startswith("[{") and "\n,\r\n{" in arr.text and arr.text.endswith("]")
    items = json.loads(arr.text)
    assert "".join(i["candidates"][0]["content"]["parts"][0]["text"] for i in items) == "echo: x y"


def test_gemini_function_calling(gem):
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="lookup", description="Look up", parameters=types.Schema(type="OBJECT", properties={"query": types.Schema(type="STRING")}))])
    config = types.GenerateContentConfig(tools=[tool])
    r = gem.models.generate_content(model="gemini-x", contents="find cats", config=config)
    (call,) = r.function_calls
    assert call.name == "lookup" and call.args == {"query": "find cats"} and call.id
    history = [
        types.Content(role="user", parts=[types.Part(text="find cats")]),
        r.candidates[0].content,
        types.Content(role="user", parts=[types.Part.from_function_response(name="lookup", response={"result": "3 cats"})]),
    ]
    r2 = gem.models.generate_content(model="gemini-x", contents=history, config=config)
    assert r2.text == "tool said: 3 cats"
    chunks = list(gem.models.generate_content_stream(model="gemini-x", contents="parallel cats", config=config))
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert [c.name for c in calls] == ["lookup", "lookup"]


def test_gemini_embed_and_count(gem):
    r = gem.models.embed_content(model="gemini-embedding-001", contents=["alpha", "beta"])
    assert [e.values for e in r.embeddings] == [embedding_vector("alpha"), embedding_vector("beta")]
    r = gem.models.embed_content(model="gemini-embedding-001", contents="alpha",
                                 config=types.EmbedContentConfig(output_dimensionality=16))
    assert len(r.embeddings[0].values) == 16
    assert gem.models.count_tokens(model="gemini-x", contents="12345678").total_tokens == 2


def test_gemini_errors(gem):
    with pytest.raises(genai_errors.ClientError) as info:
        gem.models.generate_content(model="error-429", contents="x")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(genai_errors.ServerError) as info:
        gem.models.generate_content(model="error-503", contents="x")
    assert info.value.status == "UNAVAILABLE"
    with pytest.raises(genai_errors.ServerError):
        for _ in gem.models.generate_content_stream(model="stream-error", contents="a b c"):
            pass


# ============================================================ all vendors


DIRECTED = (
    'weather? [[tool get_time {"zone": "UTC", "opts": {"fmt": [24]}}]] '
    '[[tool nope {"x": 1}]] [[tool get_weather {broken}]] [[tool get_weather {"city": "Paris"}]]'
)


def test_tool_directive_all_vendors(oai, claude, gem):
    """``[[tool NAME {args}]]`` in any text part of the last user turn calls declared tools with those args."""
    expected = [("get_time", {"zone": "UTC", "opts": {"fmt": [24]}}), ("get_weather", {"city": "Paris"})]
    reminder = "<system-reminder>\nToday is a test.\n</system-reminder>"

    r = oai.chat.completions.create(
        model="gpt-4o", tools=[WEATHER_TOOL, {**WEATHER_TOOL, "function": {**WEATHER_TOOL["function"], "name": "get_time"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": reminder}, {"type": "text", "text": DIRECTED}]}],
    )
    calls = r.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == expected
    forced = oai.chat.completions.create(
        model="gpt-4o", tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": DIRECTED}],
    )
    assert [json.loads(c.function.arguments) for c in forced.choices[0].message.tool_calls] == [{"city": "Paris"}]

    with claude.messages.stream(
        model="claude-x", max_tokens=100, tools=CLAUDE_TOOLS,
        messages=[{"role": "user", "content": [{"type": "text", "text": reminder},
                                               {"type": "text", "text": DIRECTED, "cache_control": {"type": "ephemeral"}}]}],
    ) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in final.content] == expected
    # An undeclared tool only: the usual rule (first declared tool, {"query": ...}).
    m = claude.messages.create(model="claude-x", max_tokens=100, tools=CLAUDE_TOOLS,
                               messages=[{"role": "user", "content": '[[tool Bash {"command": "ls"}]]'}])
    assert [(b.name, b.input) for b in m.content] == [("get_weather", {"query": '[[tool Bash {"command": "ls"}]]'})]

    decls = [types.FunctionDeclaration(name=n, description=n) for n in ("get_weather", "get_time")]
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=decls)])
    contents = [types.Content(role="user", parts=[types.Part(text=reminder), types.Part(text=DIRECTED)])]
    r = gem.models.generate_content(model="gemini-x", contents=contents, config=config)
    assert [(c.name, c.args) for c in r.function_calls] == expected
    # A user turn after the directive's (a mid-conversation system message, translated) keeps it.
    later = [*contents, types.Content(role="user", parts=[types.Part(text="# Environment: linux")])]
    r = gem.models.generate_content(model="gemini-x", contents=later, config=config)
    assert [(c.name, c.args) for c in r.function_calls] == expected
    # With tool choice "none" the directive is just text.
    r = gem.models.generate_content(model="gemini-x", contents=contents, config=types.GenerateContentConfig(
        tools=config.tools, tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="NONE"))))
    assert r.function_calls is None and r.text.startswith("echo: <system-reminder>")


# ================================================================ plumbing


def test_recording_endpoints(fake):
    requests.post(f"{fake.url}/v1/messages?beta=true", json={"model": "c", "max_tokens": 5, "messages": []},
                  headers={"X-Custom": "yes"}, timeout=5)
    (rec,) = requests.get(f"{fake.url}/_fake/requests", timeout=5).json()
    assert rec["method"] == "POST" and rec["path"] == "/v1/messages" and rec["query"] == {"beta": "true"}
    assert rec["headers"]["x-custom"] == "yes" and rec["json"]["model"] == "c"
    assert requests.delete(f"{fake.url}/_fake/requests", timeout=5).ok
    assert fake.requests == []


def test_standalone_server():
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.server", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY ")
        port = int(line.split()[1])
        r = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                          json={"model": "m", "messages": [{"role": "user", "content": "ok"}]}, timeout=5)
        assert r.json()["choices"][0]["message"]["content"] == "echo: ok"
    finally:
        proc.terminate()
        proc.wait(5)
