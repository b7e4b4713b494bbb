"""Gemini wire format <-> canonical, and the Gemini provider.

Golden files under tests/golden/gemini/<kind>/: `<case>.in.*` is fed to the translation for <kind> and
the result compared exactly with `<case>.out.*`. `AIGW_UPDATE_GOLDEN=1` rewrites the outputs: read the
diff before committing it.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from google.genai import types as genai

from aigw.canonical import (
    ChatRequest,
    ChatResponse,
    Choice,
    EmbeddingsRequest,
    EmbeddingsResponse,
    Finish,
    Message,
    Reasoning,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)
from aigw.config import DestinationConfig
from aigw.errors import ErrorKind, GatewayError
from aigw.http.sse import SSEEvent, SSEParser
from aigw.http.upstream import UpstreamLimits, UpstreamRequest
from aigw.providers.gemini import GeminiProvider
from aigw.wire import gemini, gemini_embeddings, gemini_stream

GOLDEN = Path(__file__).parent / "golden" / "gemini"
UPDATE = os.environ.get("AIGW_UPDATE_GOLDEN") == "1"


def _json(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"


def _builtins(value: Any) -> Any:
    """A canonical struct as plain data, with wall-clock times pinned so goldens are stable."""
    data = msgspec.to_builtins(value)
    items = data if isinstance(data, list) else [data]
    for item in items:
        if isinstance(item, dict) and "created" in item:
            item["created"] = 0
    return data


def decode_stream(raw: bytes, pieces: Callable[[bytes], list[bytes]] = lambda b: [b]) -> list[StreamEvent]:
    parser, decoder = SSEParser(), gemini_stream.StreamDecoder()
    events: list[StreamEvent] = []
    for piece in pieces(raw):
        for sse in parser.feed(piece):
            events.extend(decoder.feed(sse))
    for sse in parser.flush():
        events.extend(decoder.feed(sse))
    return events + decoder.finish()


def encode_stream(events: list[StreamEvent], **options: Any) -> bytes:
    encoder = gemini_stream.StreamEncoder(**options)
    return b"".join(encoder.encode(e) for e in events) + encoder.finish()


def _request_encode(text: str) -> str:
    case = orjson.loads(text)
    return _json(gemini.encode_request(msgspec.convert(case["request"], ChatRequest), case["model"], stream=False))


def _request_decode(text: str) -> str:
    case = orjson.loads(text)
    return _json(_builtins(gemini.decode_request(case["body"], case["model"])))


def _response_decode(text: str) -> str:
    return _json(_builtins(gemini.decode_response(orjson.loads(text))))


def _response_encode(text: str) -> str:
    return _json(gemini.encode_response(msgspec.convert(orjson.loads(text), ChatResponse)))


def _stream_decode(text: str) -> str:
    return _json(_builtins(decode_stream(text.encode())))


def _stream_encode(text: str) -> str:
    return encode_stream(msgspec.convert(orjson.loads(text), list[StreamEvent])).decode()


TRANSLATIONS: dict[str, tuple[Callable[[str], str], str]] = {
    "request_encode": (_request_encode, ".json"),
    "request_decode": (_request_decode, ".json"),
    "response_decode": (_response_decode, ".json"),
    "response_encode": (_response_encode, ".json"),
    "stream_decode": (_stream_decode, ".json"),
    "stream_encode": (_stream_encode, ".sse"),
}
CASES = sorted(p.relative_to(GOLDEN) for p in GOLDEN.glob("*/*.in.*"))


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_golden(case: Path) -> None:
    translate, out_suffix = TRANSLATIONS[case.parent.name]
    source = GOLDEN / case
    expected_path = source.with_name(source.name.split(".in.")[0] + ".out" + out_suffix)
    actual = translate(source.read_bytes().decode())  # bytes: keep SSE's CRLFs as they are
    if UPDATE or not expected_path.exists():
        expected_path.write_bytes(actual.encode())
    assert actual == expected_path.read_bytes().decode()


# --- shape checks against Google's own SDK types ------------------------------------------------------


@pytest.mark.parametrize("case", sorted(GOLDEN.glob("request_encode/*.out.json")), ids=lambda p: p.name)
def test_encoded_requests_fit_google_types(case: Path) -> None:
    body = orjson.loads(case.read_text())
    for content in body["contents"]:
        genai.Content.model_validate_json(orjson.dumps(content))
    genai.Content.model_validate_json(orjson.dumps(body.get("systemInstruction", {})))
    for tool in body.get("tools", []):
        genai.Tool.model_validate_json(orjson.dumps(tool))
    genai.ToolConfig.model_validate_json(orjson.dumps(body.get("toolConfig", {})))
    genai.GenerationConfig.model_validate_json(orjson.dumps(body.get("generationConfig", {})))


@pytest.mark.parametrize("case", sorted(GOLDEN.glob("response_encode/*.out.json")), ids=lambda p: p.name)
def test_encoded_responses_fit_google_types(case: Path) -> None:
    genai.GenerateContentResponse.model_validate_json(case.read_bytes())


@pytest.mark.parametrize("case", sorted(GOLDEN.glob("stream_encode/*.out.sse")), ids=lambda p: p.name)
def test_encoded_stream_frames_fit_google_types(case: Path) -> None:
    raw = case.read_bytes()
    frames = [f for f in raw.split(b"\r\n\r\n") if f]
    assert raw.endswith(b"\r\n\r\n") and all(f.startswith(b"data: ") for f in frames)
    chunks = [genai.GenerateContentResponse.model_validate_json(f[6:]) for f in frames]
    assert chunks[-1].candidates[0].finish_reason is not None
    assert chunks[-1].usage_metadata is not None


# --- streams ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(GOLDEN.glob("stream_decode/*.in.sse")), ids=lambda p: p.name)
def test_stream_decoder_byte_by_byte_equals_whole(case: Path) -> None:
    raw = case.read_bytes()
    whole = decode_stream(raw)
    one_byte = decode_stream(raw, lambda b: [b[i : i + 1] for i in range(len(b))])
    assert _builtins(one_byte) == _builtins(whole)


def test_stream_round_trip_through_encoder() -> None:
    events = decode_stream((GOLDEN / "stream_decode/parallel_function_calls.in.sse").read_bytes())
    again = decode_stream(encode_stream(events))
    assert _builtins(again) == _builtins(events)


def test_stream_encoder_json_array_form() -> None:
    events = msgspec.convert(orjson.loads((GOLDEN / "stream_encode/tool_calls.in.json").read_text()), list[StreamEvent])
    raw = encode_stream(events, json_array=True)
    chunks = orjson.loads(raw)
    assert isinstance(chunks, list) and len(chunks) == 4
    for chunk in chunks:
        genai.GenerateContentResponse.model_validate(chunk)
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_stream_error_chunk_raises() -> None:
    decoder = gemini_stream.StreamDecoder()
    error = b'{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}'
    with pytest.raises(GatewayError) as raised:
        decoder.feed(SSEEvent(None, error))
    assert raised.value.kind is ErrorKind.OVERLOADED and raised.value.retryable
    assert "overloaded" in raised.value.message


def test_stream_ignores_content_after_finish() -> None:
    decoder = gemini_stream.StreamDecoder()
    events = decoder.feed(SSEEvent(None, b'{"candidates":[{"content":{"parts":[{"text":"Hi"}]},"finishReason":"STOP"}]}'))
    events += decoder.feed(SSEEvent(None, b'{"candidates":[{"content":{"parts":[{"text":""}]},"finishReason":"STOP"}],'
                                          b'"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1}}'))
    events += decoder.finish()
    assert [type(e).__name__ for e in events] == ["StreamStart", "TextDelta", "Finish", "UsageEvent"]


def test_stream_without_finish_reason_still_finishes() -> None:
    decoder = gemini_stream.StreamDecoder(model="gemini-2.5-flash")
    events = decoder.feed(SSEEvent(None, b'{"candidates":[{"content":{"parts":[{"text":"Hi"}]}}]}'))
    events += decoder.finish()
    assert [type(e).__name__ for e in events] == ["StreamStart", "TextDelta", "Finish"]
    assert events[0].model == "gemini-2.5-flash"


# --- round trips -----------------------------------------------------------------------------------


def test_thought_signature_round_trip() -> None:
    """Gemini -> canonical -> Gemini keeps each call's signature on its own functionCall part."""
    response = gemini.decode_response(orjson.loads((GOLDEN / "response_decode/parallel_calls_thoughts.in.json").read_text()))
    message = response.choices[0].message
    assert [c.signature for c in message.tool_calls] == ["U2lnUGFyaXM=", None]
    follow_up = [Message(role="user", content=[TextPart(text="Weather?")]), message] + [
        Message(role="tool", tool_call_id=c.id, content=[TextPart(text="ok")]) for c in message.tool_calls
    ]
    body = gemini.encode_request(ChatRequest(model="m", messages=follow_up), "gemini-3-pro-preview", stream=False)
    model_parts = body["contents"][1]["parts"]
    assert model_parts[1] == {
        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": message.tool_calls[0].id},
        "thoughtSignature": "U2lnUGFyaXM=",
    }
    assert "thoughtSignature" not in model_parts[2]  # only the first of parallel calls is signed
    # and through a stream: the ToolCallDelta carries it too
    events = decode_stream((GOLDEN / "stream_decode/parallel_function_calls.in.sse").read_bytes())
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [c.signature for c in calls] == ["U2lnUGFyaXM=", None, None]


def test_request_round_trip_gemini_to_gemini() -> None:
    """A Gemini body decoded then encoded for Gemini keeps its meaning, extras included."""
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}, "id": "c1"}, "thoughtSignature": "c2ln"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"x": 1}, "id": "c1"}}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}, {"codeExecution": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f", "g"]}},
        "generationConfig": {"temperature": 0.5, "topK": 3, "thinkingConfig": {"thinkingBudget": 100}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    request = gemini.decode_request(body, "endpoint")
    assert gemini.encode_request(request, "gemini-2.5-flash", stream=True) == body


@pytest.mark.parametrize(
    ("gemini_reason", "has_calls", "canonical", "back"),
    [
        ("STOP", False, "stop", "STOP"),
        ("STOP", True, "tool_calls", "STOP"),
        ("MAX_TOKENS", False, "length", "MAX_TOKENS"),
        ("MAX_TOKENS", True, "length", "MAX_TOKENS"),
        ("SAFETY", False, "content_filter", "SAFETY"),
        ("RECITATION", False, "content_filter", "SAFETY"),
        ("BLOCKLIST", False, "content_filter", "SAFETY"),
        ("PROHIBITED_CONTENT", False, "content_filter", "SAFETY"),
        ("SPII", False, "content_filter", "SAFETY"),
        ("OTHER", False, "stop", "STOP"),
        ("MALFORMED_FUNCTION_CALL", False, "stop", "STOP"),
        ("FINISH_REASON_UNSPECIFIED", False, "stop", "STOP"),
    ],
)
def test_finish_reasons_both_ways(gemini_reason: str, has_calls: bool, canonical: str, back: str) -> None:
    assert gemini.decode_finish(gemini_reason, has_calls) == canonical
    assert gemini.FINISH_REASONS_OUT[canonical] == back


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice(mode="auto"), {"mode": "AUTO"}),
        (ToolChoice(mode="required"), {"mode": "ANY"}),
        (ToolChoice(mode="none"), {"mode": "NONE"}),
        (ToolChoice(mode="tool", name="f"), {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
def test_tool_choice_modes_both_ways(choice: ToolChoice, expected: dict[str, Any]) -> None:
    request = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="x")])], tool_choice=choice)
    body = gemini.encode_request(request, "gemini-2.5-flash", stream=False)
    assert body["toolConfig"] == {"functionCallingConfig": expected}
    assert gemini.decode_request(body, "m").tool_choice == choice


def test_usage_with_thoughts_cache_and_tool_prompt() -> None:
    usage = gemini.decode_usage(
        {"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
         "cachedContentTokenCount": 60, "toolUsePromptTokenCount": 5, "totalTokenCount": 155}
    )  # fmt: skip
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.reasoning_tokens) == (105, 50, 60, 30)
    assert gemini.encode_usage(usage) == {
        "promptTokenCount": 105, "candidatesTokenCount": 20, "totalTokenCount": 155,
        "cachedContentTokenCount": 60, "thoughtsTokenCount": 30,
    }  # fmt: skip


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": "hi"}, "contents"),
        ({"contents": [{"role": "assistant", "parts": []}]}, "contents[0].role"),
        ({"contents": [{"role": "user"}]}, "contents[0].parts"),
        ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}}, "generationConfig.temperature"),
        ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": True}}, "generationConfig.maxOutputTokens"),
        ({"contents": [{"parts": [{"executableCode": {"code": "1"}}]}]}, "contents[0].parts[0]"),
        ({"contents": [{"role": "model", "parts": [{"functionCall": {"args": {}}}]}]}, "contents[0].parts[0].functionCall.name"),
        ({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{}]}]}, "tools[0].functionDeclarations[0].name"),
    ],
)
def test_invalid_requests_name_the_field(body: Any, param: str | None) -> None:
    with pytest.raises(GatewayError) as raised:
        gemini.decode_request(body, "m")
    assert raised.value.status == 400 and raised.value.param == param


def test_tool_message_for_unknown_call_is_a_400() -> None:
    request = ChatRequest(
        model="m",
        messages=[
            Message(role="user", content=[TextPart(text="x")]),
            Message(role="tool", tool_call_id="nope", content=[TextPart(text="1")]),
        ],
    )
    with pytest.raises(GatewayError) as raised:
        gemini.encode_request(request, "gemini-2.5-flash", stream=False)
    assert raised.value.param == "messages[1].tool_call_id"


# --- embeddings and errors -------------------------------------------------------------------------


def test_embeddings_request_and_response() -> None:
    request = EmbeddingsRequest(model="e", inputs=["a", "bb"], dimensions=256)
    assert gemini_embeddings.encode_embeddings_request(request, "gemini-embedding-001") == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 256},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "bb"}]}, "outputDimensionality": 256},
        ]
    }
    assert gemini_embeddings.decode_embeddings_response({"embeddings": [{"values": [0.1]}, {"values": [0.2]}]}) == [[0.1], [0.2]]
    assert gemini_embeddings.decode_embeddings_response({"embedding": {"values": [0.3]}}) == [[0.3]]


def test_embeddings_surface_side() -> None:
    single = gemini_embeddings.decode_embed_content_request(
        {"content": {"parts": [{"text": "hello"}, {"text": "world"}]}, "taskType": "RETRIEVAL_QUERY", "output_dimensionality": 8}, "emb"
    )
    assert (single.inputs, single.dimensions, single.extra) == (["hello\nworld"], 8, {"taskType": "RETRIEVAL_QUERY"})
    batch = gemini_embeddings.decode_batch_embed_contents_request(
        {"requests": [{"model": "models/x", "content": {"parts": [{"text": t}]}, "title": "doc"} for t in ("a", "b")]}, "emb"
    )
    assert (batch.inputs, batch.extra, batch.extra_wire) == (["a", "b"], {"title": "doc"}, "gemini")
    body = gemini_embeddings.encode_embeddings_request(batch, "text-embedding-004")
    assert body["requests"][1] == {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "title": "doc"}
    response = EmbeddingsResponse(model="x", vectors=[[1.0], [2.0]])
    assert gemini_embeddings.encode_batch_embed_contents_response(response) == {"embeddings": [{"values": [1.0]}, {"values": [2.0]}]}
    assert gemini_embeddings.encode_embed_content_response(response) == {"embedding": {"values": [1.0]}}
    with pytest.raises(GatewayError) as raised:
        gemini_embeddings.decode_batch_embed_contents_request({"requests": [{"content": {"parts": [{"inlineData": {}}]}}]}, "e")
    assert raised.value.param == "requests[0].content.parts[0]"


@pytest.mark.parametrize(
    ("error", "status", "google_status"),
    [
        (GatewayError(ErrorKind.INVALID_REQUEST, "bad"), 400, "INVALID_ARGUMENT"),
        (GatewayError(ErrorKind.AUTHENTICATION, "who"), 401, "UNAUTHENTICATED"),
        (GatewayError(ErrorKind.PERMISSION, "no"), 403, "PERMISSION_DENIED"),
        (GatewayError(ErrorKind.NOT_FOUND, "gone"), 404, "NOT_FOUND"),
        (GatewayError(ErrorKind.RATE_LIMIT, "slow"), 429, "RESOURCE_EXHAUSTED"),
        (GatewayError(ErrorKind.UPSTREAM_ERROR, "up"), 502, "INTERNAL"),
        (GatewayError(ErrorKind.UPSTREAM_TIMEOUT, "late"), 504, "DEADLINE_EXCEEDED"),
        (GatewayError(ErrorKind.OVERLOADED, "busy"), 503, "UNAVAILABLE"),
        (GatewayError(ErrorKind.INTERNAL, "oops"), 500, "INTERNAL"),
    ],
)
def test_encode_error(error: GatewayError, status: int, google_status: str) -> None:
    assert gemini.error_status(error) == status
    assert gemini.encode_error(error) == {"error": {"code": status, "message": error.message, "status": google_status}}


# --- provider --------------------------------------------------------------------------------------

KEY = "AIzaSy-test-key-123456"


class FakeResponse:
    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, chunks: list[bytes] | None = None):
        self.status = status
        self.headers = headers or {}
        self._body = body
        self._chunks = chunks or []
        self.closed = False

    async def read(self) -> bytes:
        return self._body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self, *responses: FakeResponse) -> None:
        self.responses = list(responses)
        self.requests: list[UpstreamRequest] = []

    async def send(self, request: UpstreamRequest, *, limits: UpstreamLimits, destination: str) -> FakeResponse:
        self.requests.append(request)
        return self.responses.pop(0)

    async def close(self) -> None:
        pass


def _provider(*responses: FakeResponse, **config: Any) -> tuple[GeminiProvider, FakeClient]:
    client = FakeClient(*responses)
    destination = DestinationConfig(**{"provider": "gemini", "model": "gemini-2.5-flash", "api_key": KEY, **config})
    return GeminiProvider(destination, client), client


CHAT = ChatRequest(model="ep", messages=[Message(role="user", content=[TextPart(text="Hi")])], max_tokens=5)
ANSWER = {"candidates": [{"content": {"parts": [{"text": "Hello!"}], "role": "model"}, "finishReason": "STOP"}],
          "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3, "totalTokenCount": 5}}  # fmt: skip


def test_provider_chat_url_headers_body() -> None:
    provider, client = _provider(FakeResponse(200, orjson.dumps(ANSWER)), headers={"x-team": "a"})
    response = asyncio.run(provider.chat(CHAT))
    sent = client.requests[0]
    assert sent.method == "POST"
    assert sent.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert KEY not in sent.url
    assert sent.headers["x-goog-api-key"] == KEY and sent.headers["x-team"] == "a"
    assert orjson.loads(sent.body or b"") == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"maxOutputTokens": 5},
    }
    assert response.model == "gemini-2.5-flash" and response.choices[0].message.text() == "Hello!"
    assert response.usage is not None and response.usage.total_tokens == 5


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://proxy.example/v1beta", "https://proxy.example/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
        ("https://proxy.example/", "https://proxy.example/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
        ("https://proxy.example/v1", "https://proxy.example/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
    ],
)
def test_provider_stream_url_and_events(base_url: str, expected: str) -> None:
    raw = (GOLDEN / "stream_decode/text_with_thoughts.in.sse").read_bytes()
    stream = FakeResponse(200, chunks=[raw[i : i + 7] for i in range(0, len(raw), 7)])
    provider, client = _provider(stream, base_url=base_url)

    async def collect() -> list[StreamEvent]:
        return [event async for event in provider.stream_chat(CHAT)]

    events = asyncio.run(collect())
    assert client.requests[0].url == expected
    assert _builtins(events) == _builtins(decode_stream(raw)) and stream.closed
    assert isinstance(events[-2], Finish)


def test_provider_forward_keeps_body() -> None:
    provider, client = _provider(FakeResponse(200, orjson.dumps(ANSWER)))
    body = {"contents": [{"parts": [{"text": "Hi"}]}], "cachedContent": "cachedContents/x"}
    asyncio.run(provider.forward("gemini", body, stream=False))
    assert orjson.loads(client.requests[0].body or b"") == body
    assert client.requests[0].url.endswith("/models/gemini-2.5-flash:generateContent")


def test_provider_embeddings() -> None:
    answer = {"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}
    provider, client = _provider(FakeResponse(200, orjson.dumps(answer)), model="text-embedding-004")
    request = EmbeddingsRequest(model="emb", inputs=["hello", "hi"])
    response = asyncio.run(provider.embed(request))
    sent = client.requests[0]
    assert sent.url == "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:batchEmbedContents"
    assert len(orjson.loads(sent.body or b"")["requests"]) == 2
    assert response.vectors == [[0.1, 0.2], [0.3, 0.4]]
    assert response.usage is not None and response.usage.input_tokens == (5 + 1) // 4 + (2 + 1) // 4


def _error(status: int, message: str, google_status: str, **extra: Any) -> bytes:
    return orjson.dumps({"error": {"code": status, "message": message, "status": google_status, **extra}})


def test_provider_rate_limit_keeps_retry_after() -> None:
    provider, _ = _provider(FakeResponse(429, _error(429, "Quota exceeded.", "RESOURCE_EXHAUSTED"), {"retry-after": "12"}))
    with pytest.raises(GatewayError) as raised:
        asyncio.run(provider.chat(CHAT))
    error = raised.value
    assert (error.kind, error.status, error.headers, error.retryable) == (ErrorKind.RATE_LIMIT, 429, {"retry-after": "12"}, True)
    assert "Quota exceeded." in error.message


def test_provider_server_error_is_502() -> None:
    provider, _ = _provider(FakeResponse(500, _error(500, "Internal error encountered.", "INTERNAL")))
    with pytest.raises(GatewayError) as raised:
        asyncio.run(provider.chat(CHAT))
    assert (raised.value.status, raised.value.retryable) == (502, True)


@pytest.mark.parametrize("status", [401, 403])
def test_provider_rejected_key_is_502_without_the_key(status: int) -> None:
    body = _error(status, f"Key {KEY} is not allowed.", "PERMISSION_DENIED")
    provider, _ = _provider(FakeResponse(status, body))
    with pytest.raises(GatewayError) as raised:
        asyncio.run(provider.chat(CHAT))
    assert raised.value.status == 502 and KEY not in raised.value.message


def test_provider_invalid_key_400_is_the_gateways_problem() -> None:
    """AI Studio answers a bad key with 400 INVALID_ARGUMENT (reason API_KEY_INVALID): not the caller's fault."""
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
    body = _error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", details=details)
    provider, _ = _provider(FakeResponse(400, body))
    with pytest.raises(GatewayError) as raised:
        asyncio.run(provider.chat(CHAT))
    assert raised.value.status == 502 and raised.value.code == "upstream_authentication_failed"


def test_provider_bad_request_stays_400() -> None:
    body = _error(400, "Unknown name \"foo\" at 'generation_config'.", "INVALID_ARGUMENT")
    provider, _ = _provider(FakeResponse(400, body))
    with pytest.raises(GatewayError) as raised:
        asyncio.run(provider.chat(CHAT))
    assert raised.value.status == 400 and "Unknown name" in raised.value.message


def test_provider_check_config() -> None:
    ok = DestinationConfig(provider="gemini", model="gemini-2.5-flash", api_key="k")
    assert GeminiProvider.check_config(ok, frozenset({"chat", "embeddings"})) is None
    missing = DestinationConfig(provider="gemini", model="gemini-2.5-flash")
    problem = GeminiProvider.check_config(missing, frozenset({"chat"}))
    assert problem is not None and problem[0] == "api_key"


def test_provider_tool_call_ids_are_stable_for_follow_ups() -> None:
    answer = {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}], "role": "model"},
                              "finishReason": "STOP"}], "responseId": "r/1+x"}  # fmt: skip
    provider, _ = _provider(FakeResponse(200, orjson.dumps(answer)))
    response = asyncio.run(provider.chat(CHAT))
    assert response.choices[0].finish_reason == "tool_calls"
    assert response.choices[0].message.tool_calls == [ToolCall(id="call_r1x_0", name="f", arguments="{}")]


# --- signatures: only Gemini's go to Gemini -------------------------------------------------------


def sealed(signer: str, signature: str) -> str:
    """Another vendor's signature as a Gemini client holds it: the gateway's seal, base64-encoded."""
    return base64.b64encode(f"aigw1.{signer}.{signature}".encode()).decode()


# A model turn with one signature of each origin, and the parts a Gemini client is shown for it.
SIGNED_TURN = Message(
    role="assistant",
    content=[TextPart(text="Done.")],
    reasoning=[
        Reasoning(text="Mine.", signature="Q2lRQlZL", signer="gemini"),
        Reasoning(text="Claude's.", signature="EqQBCkYIBxgC+/8=", signer="anthropic"),
        Reasoning(text="Unsigned."),
    ],
    tool_calls=[
        ToolCall(id="c1", name="f", arguments="{}", signature="U2lnUGFyaXM=", signer="gemini"),
        ToolCall(id="c2", name="f", arguments="{}", signature="not-gemini", signer="openai_responses"),
    ],
)
SHOWN_PARTS = [
    {"text": "Mine.", "thought": True, "thoughtSignature": "Q2lRQlZL"},
    {"text": "Claude's.", "thought": True, "thoughtSignature": sealed("anthropic", "EqQBCkYIBxgC+/8=")},
    {"text": "Unsigned.", "thought": True},
    {"text": "Done."},
    {"functionCall": {"name": "f", "args": {}, "id": "c1"}, "thoughtSignature": "U2lnUGFyaXM="},
    {"functionCall": {"name": "f", "args": {}, "id": "c2"}, "thoughtSignature": sealed("openai_responses", "not-gemini")},
]


def test_upstream_answers_are_signed_by_gemini() -> None:
    for case in ("parallel_calls_thoughts", "candidates_finish"):
        response = gemini.decode_response(orjson.loads((GOLDEN / f"response_decode/{case}.in.json").read_text()))
        messages = [choice.message for choice in response.choices]
        signed = [x for m in messages for x in (*m.reasoning, *m.tool_calls) if x.signature is not None]
        assert signed and all(x.signer == "gemini" for x in signed)
    for case in ("parallel_function_calls", "text_with_thoughts"):
        events = decode_stream((GOLDEN / f"stream_decode/{case}.in.sse").read_bytes())
        signed = [e for e in events if isinstance(e, (ReasoningDelta, ToolCallDelta)) and e.signature is not None]
        assert signed and all(e.signer == "gemini" for e in signed)


def test_client_sees_other_vendors_signatures_sealed() -> None:
    body = gemini.encode_response(ChatResponse(id="r", model="m", created=0, choices=[Choice(message=SIGNED_TURN)]))
    assert body["candidates"][0]["content"]["parts"] == SHOWN_PARTS
    # Google's SDK takes the sealed signature as the bytes a thoughtSignature is.
    parts = genai.GenerateContentResponse.model_validate(body).candidates[0].content.parts
    assert parts[1].thought_signature == b"aigw1.anthropic.EqQBCkYIBxgC+/8="


def test_client_stream_sees_other_vendors_signatures_sealed() -> None:
    events: list[StreamEvent] = [
        StreamStart(id="r", model="m", created=0),
        ReasoningDelta(text="Claude's."),
        ReasoningDelta(signature="EqQBCkYIBxgC", signer="anthropic"),
        ReasoningDelta(signature="unknown-origin"),  # worth nothing upstream: not shown
        ToolCallDelta(tool_index=0, id="c1", name="f", arguments="{}", signature="U2ln", signer="gemini"),
        Finish(reason="tool_calls"),
    ]
    frames = [orjson.loads(e.data) for e in SSEParser().feed(encode_stream(events))]
    parts = [part for frame in frames for part in frame["candidates"][0]["content"]["parts"]]
    assert [p.get("thoughtSignature") for p in parts] == [None, sealed("anthropic", "EqQBCkYIBxgC"), "U2ln"]


def test_client_request_opens_sealed_signatures() -> None:
    # A client may send bytes back as base64url without padding (pydantic can write them so).
    url_safe = base64.urlsafe_b64encode(b"aigw1.anthropic.EqQBCkYIBxgC+/8=").decode().rstrip("=")
    parts = [
        *SHOWN_PARTS[:1],
        {**SHOWN_PARTS[1], "thoughtSignature": url_safe},
        *SHOWN_PARTS[2:5],
        {**SHOWN_PARTS[5], "thoughtSignature": gemini.SKIP_SIGNATURE},  # Google's sentinel: no signature
    ]
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": parts}]}
    message = gemini.decode_request(body, "m").messages[1]
    assert message.reasoning == SIGNED_TURN.reasoning
    assert message.tool_calls == [SIGNED_TURN.tool_calls[0], ToolCall(id="c2", name="f", arguments="{}")]
    # Not a seal after all (it opens to no signer): a Gemini signature, kept as it came.
    odd = base64.b64encode(b"aigw1.no-dot").decode()
    assert gemini.thought_signature_from_client(odd) == ("gemini", odd)


@pytest.mark.parametrize(("model", "sentinel"), [("gemini-3-pro-preview", True), ("gemini-2.5-flash", False)])
def test_only_gemini_signatures_go_upstream(model: str, sentinel: bool) -> None:
    """Gemini's signed thoughts go back as thought parts, its calls' signatures on the calls;
    another vendor's reasoning is left out, and a call signed by another gets the sentinel Gemini 3
    wants of a turn whose calls carry no signature of its own."""
    foreign = Message(
        role="assistant",
        reasoning=[SIGNED_TURN.reasoning[1], Reasoning(redacted="EmwK", signer="anthropic")],
        tool_calls=[SIGNED_TURN.tool_calls[1]],
    )
    messages = [
        Message(role="user", content=[TextPart(text="hi")]),
        SIGNED_TURN,
        *[Message(role="tool", tool_call_id=c, content=[TextPart(text="ok")]) for c in ("c1", "c2")],
        foreign,
        Message(role="tool", tool_call_id="c2", content=[TextPart(text="ok")]),
    ]
    contents = gemini.encode_request(ChatRequest(model="m", messages=messages), model, stream=False)["contents"]
    assert contents[1]["parts"] == [
        SHOWN_PARTS[0], SHOWN_PARTS[3], SHOWN_PARTS[4], {"functionCall": {"name": "f", "args": {}, "id": "c2"}},
    ]  # fmt: skip
    skip = {"thoughtSignature": gemini.SKIP_SIGNATURE} if sentinel else {}
    assert contents[3]["parts"] == [{"functionCall": {"name": "f", "args": {}, "id": "c2"}, **skip}]
