"""Google's Gemini API at /gemini end to end: the official `google-genai` SDK (and raw HTTP for the
wire details) -> a real gateway process -> fake upstreams. The `gemini` endpoint passes the body
through to a Gemini upstream; every other endpoint is translated through the canonical model.
Expected texts follow the fakes' rules (tests/fakes/scenario.py) and the demo provider's."""

from __future__ import annotations

import base64
import json
import math
import time

import pytest
import requests
from google import genai
from google.genai import errors, types

from tests.expected import PNG_BYTES, echo
from tests.conftest import MAX_REQUEST_BYTES, SECRETS
from tests.fakes.scenario import embedding_vector

PASS_THROUGH = "gemini"
TRANSLATED = ["openai", "anthropic", "compat", "demo"]
PROVIDERS = [PASS_THROUGH, *TRANSLATED]
FAKE_PROVIDERS = [p for p in PROVIDERS if p != "demo"]  # answer by the fakes' rules
UPSTREAMS = ["gemini", "openai", "anthropic", "compat"]  # for the "<name>--<scenario>" endpoints
VERSIONS = ["v1beta", "v1"]

LOOKUP = types.FunctionDeclaration(
    name="lookup",
    description="Look something up.",
    parameters_json_schema={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)
CLOCK = types.FunctionDeclaration(name="clock", description="The time.", parameters_json_schema={"type": "object", "properties": {}})
TOOLS_CONFIG = types.GenerateContentConfig(
    tools=[types.Tool(function_declarations=[LOOKUP, CLOCK])],
    automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
)
PNG = PNG_BYTES


def function_said(provider: str, response: dict) -> str:
    """What the model answers after one function response: Gemini's fake reads the response's
    `result`/`output`; a translated response reaches the other vendors as its JSON text."""
    if provider == PASS_THROUGH:
        return "tool said: " + next(iter(response.values()))
    text = json.dumps(response, separators=(",", ":"))
    return f"The tool said: {text}" if provider == "demo" else f"tool said: {text}"


def make_client(gateway, version: str = "v1beta", api_key: str | None = None, **options) -> genai.Client:
    http_options = types.HttpOptions(base_url=gateway.url + "/gemini", api_version=version, timeout=20_000, **options)
    return genai.Client(api_key=api_key or gateway.admin_token, http_options=http_options)


@pytest.fixture(scope="module")
def clients(gateway) -> dict[str, genai.Client]:
    """One client per API version for the module: building a Client is slow (~0.3 s)."""
    return {version: make_client(gateway, version) for version in VERSIONS}


@pytest.fixture
def client(clients) -> genai.Client:
    return clients["v1beta"]


def recording_client(gateway) -> tuple[genai.Client, list]:
    """A client and the list of the HTTP requests it sends (method, URL, body)."""
    sent: list = []

    def record(request) -> None:
        request.read()
        sent.append((request.method, str(request.url), json.loads(request.content) if request.content else None))

    return make_client(gateway, client_args={"event_hooks": {"request": [record]}}), sent


def text_of(contents: str) -> list[types.Content]:
    return [types.Content(role="user", parts=[types.Part(text=contents)])]


def post(gateway, name_method: str, body, version="v1beta", token: str | None = "admin", query="", **kwargs):
    headers = kwargs.pop("headers", {})
    if token == "admin":
        headers["x-goog-api-key"] = gateway.admin_token
    elif token:
        headers["x-goog-api-key"] = token
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers.setdefault("content-type", "application/json")
    url = f"{gateway.url}/gemini/{version}/models/{name_method}{query}"
    return requests.post(url, headers=headers, data=data, timeout=20, **kwargs)


def body_of(text: str, **extra) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


def assert_google_error(response: requests.Response, code: int, status: str) -> str:
    """The response is Google's error shape with this code and status; returns the message."""
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(response.json()) == {"error"}
    assert {"code", "message", "status"} <= set(error), error
    assert error["code"] == code and error["status"] == status, error
    assert isinstance(error["message"], str) and error["message"]
    assert_no_secret(response.text)
    return error["message"]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS.values():
        assert secret not in text


def sse_data(raw: str) -> list[dict]:
    """The JSON objects of an `alt=sse` body (Google frames events with CRLF)."""
    out = []
    for event in raw.replace("\r\n", "\n").split("\n\n"):
        if event.strip():
            assert event.startswith("data: "), event
            out.append(json.loads(event[len("data: "):]))
    return out


def chunk_text(chunk: dict) -> str:
    return "".join(p.get("text", "") for c in chunk.get("candidates", []) for p in c.get("content", {}).get("parts", []))


# --- generateContent -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_generate_content(clients, provider, version):
    client = clients[version]
    reply = client.models.generate_content(model=provider, contents="hello there")
    assert reply.text == echo(provider, "hello there")
    assert reply.candidates[0].finish_reason == types.FinishReason.STOP
    assert reply.candidates[0].content.role == "model"
    usage = reply.usage_metadata
    assert usage.prompt_token_count == 3  # "hello there": 11 characters, by the fake's rule and the estimate
    assert usage.candidates_token_count == (4 if provider == "demo" else 3)
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_generate_content_stream(clients, provider, version):
    client = clients[version]
    chunks = list(client.models.generate_content_stream(model=provider, contents="stream me please"))
    pieces = [chunk.text for chunk in chunks if chunk.text]
    assert "".join(pieces) == echo(provider, "stream me please")
    assert len(pieces) > 1  # really streamed
    finishes = [c.candidates[0].finish_reason for c in chunks if c.candidates and c.candidates[0].finish_reason]
    assert finishes == [types.FinishReason.STOP]
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP  # on the last chunk, as Gemini does
    assert chunks[-1].usage_metadata.prompt_token_count == 4
    assert chunks[-1].usage_metadata.candidates_token_count == (5 if provider == "demo" else 4)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_async_generate_and_stream(gateway, provider):
    client = make_client(gateway)  # its own: the async transport belongs to this test's event loop
    reply = await client.aio.models.generate_content(model=provider, contents="async hello")
    assert reply.text == echo(provider, "async hello")
    stream = await client.aio.models.generate_content_stream(model=provider, contents="async stream")
    assert "".join([chunk.text or "" async for chunk in stream]) == echo(provider, "async stream")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_max_output_tokens_truncates(client, provider):
    config = types.GenerateContentConfig(max_output_tokens=2)
    reply = client.models.generate_content(model=provider, contents="one two three four", config=config)
    assert reply.text == echo(provider, "one")
    assert reply.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    chunks = list(client.models.generate_content_stream(model=provider, contents="one two three four", config=config))
    assert "".join(c.text or "" for c in chunks) == echo(provider, "one")
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


@pytest.mark.parametrize("provider", ["gemini", "openai", "compat", "demo"])
def test_json_mode(client, provider):
    config = types.GenerateContentConfig(response_mime_type="application/json")
    reply = client.models.generate_content(model=provider, contents="give json", config=config)
    assert json.loads(reply.text) == {"echo": "give json"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_multi_turn_with_system_instruction(client, provider):
    contents = [
        types.Content(role="user", parts=[types.Part(text="first")]),
        types.Content(role="model", parts=[types.Part(text="echo: first")]),
        types.Content(role="user", parts=[types.Part(text="second")]),
    ]
    config = types.GenerateContentConfig(system_instruction="You are terse.")
    reply = client.models.generate_content(model=provider, contents=contents, config=config)
    assert reply.text == ("Echo: second" if provider == "demo" else "[system: You are terse.] echo: second")


@pytest.mark.parametrize(
    "provider",
    [
        "gemini",
        "openai",
        "anthropic",
        "compat",
    ],
)
def test_several_text_parts_stay_apart(client, provider):
    config = types.GenerateContentConfig(
        system_instruction=types.Content(parts=[types.Part(text="You are terse."), types.Part(text="Be brief.")])
    )
    contents = [types.Content(role="user", parts=[types.Part(text="first part"), types.Part(text="second part")])]
    reply = client.models.generate_content(model=provider, contents=contents, config=config)
    assert reply.text.split() == "[system: You are terse. Be brief.] echo: first part second part".split()


@pytest.mark.parametrize("provider", FAKE_PROVIDERS)
def test_inline_image_part(client, provider):
    contents = [types.Content(role="user", parts=[types.Part(text="what is this"), types.Part.from_bytes(data=PNG, mime_type="image/png")])]
    reply = client.models.generate_content(model=provider, contents=contents)
    assert reply.text == "echo: what is this [image]"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_thinking_config_with_include_thoughts_is_accepted(client, fake_upstream, provider):
    fake_upstream.clear()
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024))
    reply = client.models.generate_content(model=provider, contents="think", config=config)
    assert reply.text == echo(provider, "think")
    if provider == PASS_THROUGH:
        sent = fake_upstream.last(":generateContent")["json"]["generationConfig"]["thinkingConfig"]
        assert sent == {"includeThoughts": True, "thinkingBudget": 1024} or sent == {"include_thoughts": True, "thinking_budget": 1024}


# --- function calling ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_function_calling_round_trip(clients, provider, version, stream):
    client = clients[version]
    if stream:
        chunks = list(client.models.generate_content_stream(model=provider, contents="weather in Paris", config=TOOLS_CONFIG))
        calls = [call for chunk in chunks for call in chunk.function_calls or []]
        model_turn = types.Content(role="model", parts=[types.Part(function_call=call) for call in calls])
        assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    else:
        reply = client.models.generate_content(model=provider, contents="weather in Paris", config=TOOLS_CONFIG)
        calls = reply.function_calls
        model_turn = reply.candidates[0].content
        assert reply.candidates[0].finish_reason == types.FinishReason.STOP
    assert [call.name for call in calls] == ["lookup"]
    assert calls[0].args == ({"input": "weather in Paris"} if provider == "demo" else {"query": "weather in Paris"})

    contents = [
        *text_of("weather in Paris"),
        model_turn,
        types.Content(role="user", parts=[types.Part.from_function_response(name="lookup", response={"result": "sunny, 21C"})]),
    ]
    reply = client.models.generate_content(model=provider, contents=contents, config=TOOLS_CONFIG)
    assert reply.text == function_said(provider, {"result": "sunny, 21C"})
    assert not reply.function_calls


@pytest.mark.parametrize("provider", PROVIDERS)
def test_gemini_cli_style_call_with_id_and_thought_signature(client, fake_upstream, provider):
    """Gemini CLI replays calls with their `id` and `thoughtSignature` and answers them by id."""
    contents = [
        *text_of("weather in Paris"),
        types.Content(role="model", parts=[types.Part(
            function_call=types.FunctionCall(id="call-123", name="lookup", args={"query": "weather in Paris"}),
            thought_signature=b"sig-bytes",
        )]),
        types.Content(role="user", parts=[types.Part(
            function_response=types.FunctionResponse(id="call-123", name="lookup", response={"output": "rainy"})
        )]),
    ]  # fmt: skip
    fake_upstream.clear()
    config = types.GenerateContentConfig(
        tools=TOOLS_CONFIG.tools,
        automatic_function_calling=TOOLS_CONFIG.automatic_function_calling,
        thinking_config=types.ThinkingConfig(include_thoughts=True),
    )
    reply = client.models.generate_content(model=provider, contents=contents, config=config)
    assert reply.text == function_said(provider, {"output": "rainy"})
    if provider == "demo":
        return
    sent = fake_upstream.requests[-1]["json"]
    if provider == PASS_THROUGH:  # the signature goes back byte for byte
        call_part = sent["contents"][1]["parts"][0]
        assert call_part["thoughtSignature"] == base64.b64encode(b"sig-bytes").decode()
        assert call_part["functionCall"]["id"] == "call-123"
    elif provider == "anthropic":
        assert sent["messages"][1]["content"][0]["id"] == "call-123"
        assert sent["messages"][2]["content"][0]["tool_use_id"] == "call-123"
    else:
        assert sent["messages"][1]["tool_calls"][0]["id"] == "call-123"
        assert sent["messages"][2]["tool_call_id"] == "call-123"
    if provider != PASS_THROUGH:  # a Gemini signature means nothing to another vendor
        assert base64.b64encode(b"sig-bytes").decode() not in json.dumps(sent)


def test_gemini_thought_signature_never_reaches_anthropic(client, fake_upstream):
    """Anthropic refuses a thinking block whose signature it did not mint ("Invalid `signature` in
    `thinking` block"): Gemini's signed thoughts must not reach it as signed thinking blocks."""
    contents = [
        *text_of("first"),
        types.Content(role="model", parts=[
            types.Part(text="pondering", thought=True, thought_signature=b"gemini-sig"),
            types.Part(text="echo: first"),
        ]),
        *text_of("second"),
    ]  # fmt: skip
    fake_upstream.clear()
    reply = client.models.generate_content(model="anthropic", contents=contents)
    assert reply.text == "echo: second"
    sent = fake_upstream.last("/v1/messages")["json"]
    signatures = [b.get("signature") for m in sent["messages"] if isinstance(m["content"], list) for b in m["content"]
                  if b.get("type") == "thinking"]  # fmt: skip
    assert base64.b64encode(b"gemini-sig").decode() not in signatures


@pytest.mark.parametrize("provider", TRANSLATED)
def test_anthropic_thinking_a_gemini_client_holds_goes_back_to_anthropic_only(client, fake_upstream, provider):
    """An earlier turn Anthropic answered reached this client with its signature sealed in the
    thoughtSignature (the gateway's `aigw1.anthropic.` seal, base64): it goes back to Anthropic as
    the thinking block's signature, and to no other vendor."""
    contents = [
        *text_of("first"),
        types.Content(role="model", parts=[
            types.Part(text="pondering", thought=True, thought_signature=b"aigw1.anthropic.EqQBCkYIBxgCKkA"),
            types.Part(text="echo: first"),
        ]),
        *text_of("second"),
    ]  # fmt: skip
    fake_upstream.clear()
    reply = client.models.generate_content(model=provider, contents=contents)
    assert reply.text == echo(provider, "second")
    if provider == "demo":
        return
    sent = fake_upstream.requests[-1]["json"]
    if provider == "anthropic":
        assert sent["messages"][1]["content"][0] == {"type": "thinking", "thinking": "pondering", "signature": "EqQBCkYIBxgCKkA"}
    else:
        assert "EqQBCkYIBxgCKkA" not in json.dumps(sent)


@pytest.mark.parametrize("provider", FAKE_PROVIDERS)
def test_parallel_function_calls(client, provider):
    reply = client.models.generate_content(model=provider, contents="do these in parallel", config=TOOLS_CONFIG)
    calls = reply.function_calls
    assert [call.name for call in calls] == ["lookup", "clock"]
    assert len({call.id for call in calls}) == 2
    responses = [
        types.Part(function_response=types.FunctionResponse(id=call.id, name=call.name, response={"result": f"r{i}"}))
        for i, call in enumerate(calls)
    ]
    contents = [*text_of("do these in parallel"), reply.candidates[0].content, types.Content(role="user", parts=responses)]
    final = client.models.generate_content(model=provider, contents=contents, config=TOOLS_CONFIG)
    if provider == PASS_THROUGH:
        assert final.text == "tool said: r0 | r1"
    else:
        assert final.text == 'tool said: {"result":"r0"} | {"result":"r1"}'


@pytest.mark.parametrize("provider", FAKE_PROVIDERS)
def test_streamed_parallel_function_calls(client, provider):
    chunks = list(client.models.generate_content_stream(model=provider, contents="do these in parallel", config=TOOLS_CONFIG))
    calls = [call for chunk in chunks for call in chunk.function_calls or []]
    assert [(call.name, call.args) for call in calls] == [
        ("lookup", {"query": "do these in parallel"}),
        ("clock", {"query": "do these in parallel"}),
    ]
    assert all(call.id for call in calls)


# --- countTokens, embeddings, models ---------------------------------------------------------------

# "count these tokens please" is 25 characters: the fakes count ceil(25 / 4) = 7, the gateway's own
# estimate (chars + 1) // 4 = 6. Anthropic has a count_tokens call; OpenAI-format upstreams do not.
COUNTS = {"gemini": 7, "anthropic": 7, "openai": 6, "compat": 6, "demo": 6}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_count_tokens(clients, fake_upstream, provider, version):
    fake_upstream.clear()
    client = clients[version]
    counted = client.models.count_tokens(model=provider, contents="count these tokens please")
    assert counted.total_tokens == COUNTS[provider]
    if provider == PASS_THROUGH:
        assert fake_upstream.last(":countTokens")["path"] == "/v1beta/models/gemini-2.5-flash:countTokens"
    elif provider == "anthropic":
        assert fake_upstream.last("/count_tokens")["json"]["model"] == "claude-sonnet-4-5"


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_count_tokens_generate_content_request_form(gateway, provider):
    inner = {"model": f"models/{provider}", **body_of("count these tokens please")}
    response = post(gateway, f"{provider}:countTokens", {"generateContentRequest": inner})
    assert response.status_code == 200, response.text
    assert response.json()["totalTokens"] == COUNTS[provider]


def test_count_tokens_pass_through_names_the_upstream_model(gateway, fake_upstream):
    fake_upstream.clear()
    inner = {"model": "models/gemini", **body_of("count these tokens please")}
    assert post(gateway, "gemini:countTokens", {"generateContentRequest": inner}).status_code == 200
    assert fake_upstream.last(":countTokens")["json"]["generateContentRequest"]["model"] == "models/gemini-2.5-flash"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("provider", ["gemini", "openai", "compat"])
def test_embed_content_one_text(clients, provider, version):
    client = clients[version]
    reply = client.models.embed_content(model=provider, contents="hello world")
    assert [e.values for e in reply.embeddings] == [pytest.approx(embedding_vector("hello world"))]


def test_embed_content_demo(client):
    reply = client.models.embed_content(model="demo", contents=["one", "two"])
    vectors = [e.values for e in reply.embeddings]
    assert [len(v) for v in vectors] == [16, 16] and vectors[0] != vectors[1]
    assert all(math.isclose(sum(x * x for x in v), 1.0, abs_tol=1e-4) for v in vectors)
    again = client.models.embed_content(model="demo", contents="one")
    assert again.embeddings[0].values == vectors[0]


def test_embed_content_list_for_a_gemini_named_model_is_one_multimodal_content(gateway, fake_upstream):
    """This SDK sends a list of contents for a model named "gemini..." as ONE content with several
    parts (one batchEmbedContents request holding one content): one embedding comes back, of the
    parts together."""
    client, requests_sent = recording_client(gateway)
    fake_upstream.clear()
    reply = client.models.embed_content(model="gemini", contents=["one", "two"])
    [(method, url, body)] = requests_sent
    assert url.endswith("/gemini/v1beta/models/gemini:batchEmbedContents")
    [request] = body["requests"]
    assert [p["text"] for p in request["content"]["parts"]] == ["one", "two"]
    sent = fake_upstream.requests
    assert len(sent) == 1 and len(sent[0]["json"]["requests"]) == 1
    text = sent[0]["json"]["requests"][0]["content"]["parts"][0]["text"]
    assert text.split() == ["one", "two"]
    assert [e.values for e in reply.embeddings] == [pytest.approx(embedding_vector(text))]


@pytest.mark.parametrize("provider", ["openai", "compat"])
def test_embed_content_list_for_other_names_is_one_request_per_content(gateway, fake_upstream, provider):
    client, requests_sent = recording_client(gateway)
    fake_upstream.clear()
    reply = client.models.embed_content(model=provider, contents=["one", "two"])
    [(method, url, body)] = requests_sent
    assert url.endswith(f"/gemini/v1beta/models/{provider}:batchEmbedContents")
    assert [r["content"]["parts"][0]["text"] for r in body["requests"]] == ["one", "two"]
    assert fake_upstream.last("/v1/embeddings")["json"]["input"] == ["one", "two"]
    assert [e.values for e in reply.embeddings] == [pytest.approx(embedding_vector("one")), pytest.approx(embedding_vector("two"))]
    config = types.EmbedContentConfig(output_dimensionality=4)
    reply = client.models.embed_content(model=provider, contents=["one", "two"], config=config)
    assert [e.values for e in reply.embeddings] == [pytest.approx(embedding_vector("one", 4)), pytest.approx(embedding_vector("two", 4))]


def test_batch_embed_contents_raw(gateway):
    body = {"requests": [{"model": "models/gemini", "content": {"parts": [{"text": t}]}} for t in ("a", "b", "c")]}
    response = post(gateway, "gemini:batchEmbedContents", body)
    assert response.status_code == 200, response.text
    assert [e["values"] for e in response.json()["embeddings"]] == [pytest.approx(embedding_vector(t)) for t in "abc"]


def test_embeddings_on_a_chat_only_endpoint_is_400(client):
    with pytest.raises(errors.ClientError) as caught:
        client.models.embed_content(model="anthropic", contents="x")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("version", VERSIONS)
def test_models_list_and_get(clients, version):
    client = clients[version]
    models = {model.name: model for model in client.models.list()}
    assert {"models/gemini", "models/openai", "models/anthropic", "models/compat", "models/demo"} <= set(models)
    assert models["models/anthropic"].supported_actions == ["generateContent", "streamGenerateContent", "countTokens"]
    assert set(models["models/openai"].supported_actions) >= {"generateContent", "embedContent", "batchEmbedContents"}
    model = client.models.get(model="gemini")
    assert (model.name, model.display_name) == ("models/gemini", "gemini")
    assert "streamGenerateContent" in model.supported_actions
    with pytest.raises(errors.ClientError) as caught:
        client.models.get(model="no-such-endpoint")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


# --- stream framing --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_sse_stream_framing(gateway, provider):
    response = post(gateway, f"{provider}:streamGenerateContent", body_of("frame me"), query="?alt=sse")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_data(response.text)
    assert "".join(chunk_text(c) for c in chunks) == echo(provider, "frame me")
    finishes = [cand["finishReason"] for c in chunks for cand in c["candidates"] if "finishReason" in cand]
    assert finishes == ["STOP"] and "finishReason" in chunks[-1]["candidates"][0]
    assert chunks[-1]["usageMetadata"]["promptTokenCount"] == 2


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_json_array_stream_form(gateway, provider, version):
    """Without `alt=sse`, streamGenerateContent answers one JSON array, written element by element."""
    response = post(gateway, f"{provider}:streamGenerateContent", body_of("array me"), version=version, stream=True)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    raw = b"".join(response.iter_content(chunk_size=None)).decode()
    assert raw.startswith("[") and raw.rstrip().endswith("]")
    chunks = json.loads(raw)
    assert isinstance(chunks, list) and len(chunks) > 1
    assert "".join(chunk_text(c) for c in chunks) == echo(provider, "array me")
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["promptTokenCount"] == 2


@pytest.mark.parametrize("provider", ["gemini", "openai", "anthropic"])
def test_json_array_stream_error_midway_is_the_last_element(gateway, provider):
    response = post(gateway, f"{provider}--stream-error:streamGenerateContent", body_of("one two three"))
    assert response.status_code == 200
    chunks = json.loads(response.text)
    assert chunk_text(chunks[0]) == "echo: "
    assert set(chunks[-1]) == {"error"} and chunks[-1]["error"]["status"] in ("UNAVAILABLE", "INTERNAL")
    assert_no_secret(response.text)


# --- authentication --------------------------------------------------------------------------------


def test_bearer_and_x_goog_api_key_together(gateway):
    """Gemini CLI sends both; the Authorization header names the caller."""
    sent: list[dict] = []
    client = make_client(
        gateway,
        headers={"Authorization": f"Bearer {gateway.admin_token}"},
        client_args={"event_hooks": {"request": [lambda request: sent.append(dict(request.headers))]}},
    )
    assert client.models.generate_content(model="demo", contents="both").text == "Echo: both"
    assert sent[0]["authorization"] == f"Bearer {gateway.admin_token}"
    assert sent[0]["x-goog-api-key"] == gateway.admin_token
    response = post(gateway, "demo:generateContent", body_of("dummy key"), token="placeholder",
                    headers={"Authorization": f"Bearer {gateway.admin_token}"})  # fmt: skip
    assert response.status_code == 200, response.text


def test_key_query_parameter(gateway):
    response = post(gateway, "demo:generateContent", body_of("query key"), token=None, query=f"?key={gateway.admin_token}")
    assert response.status_code == 200, response.text
    assert response.json()["candidates"][0]["content"]["parts"][0]["text"] == "Echo: query key"


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/admin/v1/usage"), ("GET", "/openai/v1/models"), ("POST", "/mlflow/v1/chat/completions"),
     ("GET", "/anthropic/v1/models"), ("GET", "/mlflow/v1/responses/resp_x")],
)  # fmt: skip
def test_key_query_parameter_is_read_by_the_gemini_surface_only(gateway, method, path):
    """Only Gemini's REST clients put the key in the URL; elsewhere a token there would end up in
    proxy and access logs, so the gateway does not take it."""
    body = {"model": "demo", "messages": [{"role": "user", "content": "x"}]} if method == "POST" else None
    response = requests.request(method, f"{gateway.url}{path}?key={gateway.admin_token}", json=body, timeout=10)
    assert response.status_code == 401, response.text


@pytest.mark.parametrize("version", VERSIONS)
def test_bad_token_is_401_unauthenticated(gateway, version):
    client = make_client(gateway, version, api_key="aigw_nope_nope")
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="demo", contents="x")
    assert (caught.value.code, caught.value.status) == (401, "UNAUTHENTICATED")
    assert_google_error(post(gateway, "demo:generateContent", body_of("x"), token="aigw_nope_nope"), 401, "UNAUTHENTICATED")
    assert_google_error(post(gateway, "demo:generateContent", body_of("x"), token=None), 401, "UNAUTHENTICATED")


@pytest.mark.parametrize("value", ["[1]", '{"team": 1}', "not json"])
def test_request_tags_header_must_be_an_object_of_strings(gateway, value):
    response = post(gateway, "demo:generateContent", body_of("x"), headers={"X-Aigw-Request-Tags": value})
    assert "x-aigw-request-tags" in assert_google_error(response, 400, "INVALID_ARGUMENT").lower()


# --- errors ----------------------------------------------------------------------------------------


def test_unknown_endpoint_is_404_not_found(client, gateway):
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="no-such-endpoint", contents="x")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    message = assert_google_error(post(gateway, "no-such-endpoint:generateContent", body_of("x")), 404, "NOT_FOUND")
    assert "no-such-endpoint" in message


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_method_is_404(gateway, version):
    message = assert_google_error(post(gateway, "gemini:fooBar", body_of("x"), version=version), 404, "NOT_FOUND")
    assert "fooBar" in message


def test_unknown_path_under_the_surface_is_a_google_404(gateway):
    response = requests.get(gateway.url + "/gemini/v1beta/cachedContents", headers={"x-goog-api-key": gateway.admin_token}, timeout=10)
    assert_google_error(response, 404, "NOT_FOUND")


def test_malformed_json_is_400(gateway):
    assert_google_error(post(gateway, "gemini:generateContent", b'{"contents": ['), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("provider", [PASS_THROUGH, "openai"])
@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "contents"),
        ({"contents": "hello"}, "contents"),
        ({"contents": [{"role": "wizard", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"role": "user"}]}, "contents[0].parts"),
        (body_of("x", generationConfig={"temperature": "hot"}), "generationConfig.temperature"),
        (body_of("x", generationConfig={"maxOutputTokens": "ten"}), "generationConfig.maxOutputTokens"),
    ],
)
def test_invalid_body_is_400_naming_the_field(gateway, fake_upstream, provider, body, field):
    fake_upstream.clear()
    message = assert_google_error(post(gateway, f"{provider}:generateContent", body), 400, "INVALID_ARGUMENT")
    assert f"'{field}'" in message
    assert fake_upstream.requests == []


def test_candidate_count_the_destination_cannot_serve_names_the_gemini_field(client):
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="anthropic", contents="two", config=types.GenerateContentConfig(candidate_count=2))
    assert caught.value.code == 400
    assert "candidateCount" in caught.value.message


def test_candidate_count_the_destination_cannot_serve_names_the_gemini_field_when_streaming(gateway):
    body = body_of("two", generationConfig={"candidateCount": 2})
    response = post(gateway, "anthropic:streamGenerateContent", body, query="?alt=sse")
    message = assert_google_error(response, 400, "INVALID_ARGUMENT")
    assert "'generationConfig.candidateCount' must be 1" in message


@pytest.mark.parametrize("provider", ["gemini", "openai", "compat"])
def test_candidate_count(client, provider):
    reply = client.models.generate_content(model=provider, contents="two", config=types.GenerateContentConfig(candidate_count=2))
    assert [(c.index or 0, c.content.parts[0].text) for c in reply.candidates] == [(0, "echo: two"), (1, "echo: two")]


def test_body_over_the_limit_is_413(gateway):
    response = post(gateway, "gemini:generateContent", body_of("x" * (MAX_REQUEST_BYTES + 10)))
    assert_google_error(response, 413, "INVALID_ARGUMENT")


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_429_is_429_resource_exhausted(client, gateway, upstream):
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=f"{upstream}--error-429", contents="x")
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    response = post(gateway, f"{upstream}--error-429:generateContent", body_of("x"))
    assert "error-429" in assert_google_error(response, 429, "RESOURCE_EXHAUSTED")
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_overloaded_upstream_is_503_unavailable(client, gateway, upstream):
    response = post(gateway, f"{upstream}--error-529:generateContent", body_of("x"))
    assert "error-529" in assert_google_error(response, 503, "UNAVAILABLE")


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_overloaded_upstream_is_a_server_error_unavailable(client, upstream):
    with pytest.raises(errors.ServerError) as caught:
        client.models.generate_content(model=f"{upstream}--error-529", contents="x")
    assert caught.value.status == "UNAVAILABLE"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_500_is_502(client, gateway, upstream):
    with pytest.raises(errors.ServerError) as caught:
        client.models.generate_content(model=f"{upstream}--error-500", contents="x")
    assert caught.value.code == 502
    assert "error-500" in assert_google_error(post(gateway, f"{upstream}--error-500:generateContent", body_of("x")), 502, "INTERNAL")


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_rejecting_the_gateway_key_is_502_without_the_key(gateway, upstream):
    assert_google_error(post(gateway, f"{upstream}--error-401:generateContent", body_of("x")), 502, "INTERNAL")


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_400_stays_400(gateway, upstream):
    response = post(gateway, f"{upstream}--error-400:generateContent", body_of("x"))
    assert "error-400" in assert_google_error(response, 400, "INVALID_ARGUMENT")


def test_upstream_timeout_is_504_deadline_exceeded(gateway):
    started = time.monotonic()
    response = post(gateway, "gemini--hang:generateContent", body_of("x"))
    assert_google_error(response, 504, "DEADLINE_EXCEEDED")
    assert time.monotonic() - started < 10


def test_unreachable_upstream_is_502_unavailable(gateway):
    assert_google_error(post(gateway, "unreachable:generateContent", body_of("x")), 502, "UNAVAILABLE")


STREAM_ERRORS = {  # the in-band error's status, per upstream
    "gemini": "UNAVAILABLE",  # relayed as the upstream sent it (503)
    "anthropic": "UNAVAILABLE",  # Anthropic's overloaded_error event
    "openai": "INTERNAL",
    "compat": "INTERNAL",
}


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_stream_error_midway_raises_in_the_sdk(client, gateway, upstream):
    pieces = []
    with pytest.raises(errors.ServerError) as caught:
        for chunk in client.models.generate_content_stream(model=f"{upstream}--stream-error", contents="one two three"):
            pieces.append(chunk.text)
    assert pieces and pieces[0] == "echo: "  # the stream had started
    assert caught.value.status == STREAM_ERRORS[upstream]

    response = post(gateway, f"{upstream}--stream-error:streamGenerateContent", body_of("one two three"), query="?alt=sse")
    chunks = sse_data(response.text)
    assert set(chunks[-1]) == {"error"} and chunks[-1]["error"]["status"] == STREAM_ERRORS[upstream]
    assert all("error" not in chunk for chunk in chunks[:-1])
    assert_no_secret(response.text)
