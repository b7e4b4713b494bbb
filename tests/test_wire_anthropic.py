"""Anthropic Messages wire format and provider.

Golden files in tests/golden/anthropic/: request in -> request out, response in -> response out,
stream in -> events out, events in -> stream out. Regenerate with AIGW_UPDATE_GOLDEN=1, then read
the diff: a golden file is only as right as the eye that checked it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import orjson
import pytest

from aigw.canonical import (
    ChatRequest,
    ChatResponse,
    Choice,
    Finish,
    Message,
    Reasoning,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCallDelta,
    Tool,
    ToolChoice,
    Usage,
    UsageEvent,
)
from aigw.config import DestinationConfig
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.http.sse import SSEEvent, SSEParser
from aigw.http.upstream import UpstreamLimits, UpstreamRequest
from aigw.providers.anthropic import AnthropicProvider
from tests.goldens import Goldens
from aigw.wire import anthropic as wire



_goldens = Goldens("anthropic")
GOLDEN = _goldens.root
golden_json, golden_bytes, load = _goldens.json, _goldens.bytes, _goldens.load


def builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


def events_of(name: str) -> list[StreamEvent]:
    return msgspec.convert(load(name), list[StreamEvent])


def decode_sse(data: bytes, piece: int | None = None) -> list[StreamEvent]:
    """Run bytes through SSEParser and the decoder, whole or in pieces of `piece` bytes; the
    StreamStart's clock time is zeroed so results compare."""
    parser, decoder = SSEParser(), wire.StreamDecoder()
    chunks = [data] if piece is None else [data[i : i + piece] for i in range(0, len(data), piece)]
    events: list[StreamEvent] = []
    for chunk in chunks:
        for sse in parser.feed(chunk):
            events += decoder.feed(sse)
    for sse in parser.flush():
        events += decoder.feed(sse)
    events += decoder.finish()
    return [StreamStart(id=e.id, model=e.model, created=0) if isinstance(e, StreamStart) else e for e in events]


def encode_events(events: list[StreamEvent], model: str | None = None) -> bytes:
    encoder = wire.StreamEncoder(model)
    return b"".join(encoder.encode(e) for e in events) + encoder.finish()


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = iter(range(1, 1000))
    monkeypatch.setattr(wire, "new_tool_id", lambda: f"toolu_gen{next(counter)}")
    monkeypatch.setattr(wire, "new_id", lambda: f"msg_gen{next(counter)}")


# --- requests ------------------------------------------------------------------------------------


MESSAGE_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"m","usage":{"input_tokens":1}}}\n\n'
)
REQUEST_GOLDENS = ["request_tools", "request_images", "request_thinking", "request_json_strict", "request_json_object"]


@pytest.mark.parametrize("name", REQUEST_GOLDENS)
def test_encode_request_golden(name: str) -> None:
    request = msgspec.convert(load(f"{name}.in.json"), ChatRequest)
    body = wire.encode_request(request, "claude-sonnet-4-5", stream=request.stream)
    golden_json(f"{name}.out.json", body)


@pytest.mark.parametrize("name", ["decode_full", "decode_simple"])
def test_decode_request_golden(name: str) -> None:
    request = wire.decode_request(load(f"{name}.in.json"))
    golden_json(f"{name}.out.json", builtins(request))
    # ... and back: what the provider would send for it (cache_control gone, extras kept).
    golden_json(f"{name}.reencoded.json", wire.encode_request(request, "claude-sonnet-4-5", stream=request.stream))


def test_tool_results_merge_into_one_user_turn_first() -> None:
    request = msgspec.convert(load("request_tools.in.json"), ChatRequest)
    body = wire.encode_request(request, "m", stream=False)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result", "tool_result", "text"]
    assert body["system"] == "You are a weather assistant.\n\nKeep answers short."
    assert "stream" not in body


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice(mode="auto"), None, {"type": "auto"}),
        (ToolChoice(mode="required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (ToolChoice(mode="tool", name="f"), True, {"type": "tool", "name": "f"}),
        (ToolChoice(mode="none"), False, {"type": "none"}),
    ],
)
def test_tool_choice_mapping(choice: ToolChoice | None, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    request = ChatRequest(
        model="m",
        messages=[Message(role="user", content=[TextPart(text="hi")])],
        tools=[Tool(name="f")],
        tool_choice=choice,
        parallel_tool_calls=parallel,
    )
    assert wire.encode_request(request, "m", stream=False).get("tool_choice") == expected
    if expected is not None:  # and back
        body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "tool_choice": expected}
        decoded = wire.decode_request(body)
        assert decoded.tool_choice == (choice or ToolChoice(mode="auto"))
        assert decoded.parallel_tool_calls == (False if expected.get("disable_parallel_tool_use") else None)


def test_encode_request_rejects_what_anthropic_cannot_do() -> None:
    user = Message(role="user", content=[TextPart(text="hi")])
    with pytest.raises(GatewayError) as caught:
        wire.encode_request(ChatRequest(model="m", messages=[user], n=2), "m", stream=False)
    assert (caught.value.status, caught.value.param) == (400, "n")
    only_system = [Message(role="system", content=[TextPart(text="rules")])]
    with pytest.raises(GatewayError) as caught:
        wire.encode_request(ChatRequest(model="m", messages=only_system), "m", stream=False)
    assert caught.value.param == "messages"


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **fields}


def _blocks(role: str, *blocks: dict[str, Any]) -> dict[str, Any]:
    return _body(messages=[{"role": role, "content": list(blocks)}])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (_body(max_tokens=None), "max_tokens"),
        (_body(max_tokens="10"), "max_tokens"),
        (_body(max_tokens=True), "max_tokens"),
        (_body(messages=[]), "messages"),
        (_body(messages=[{"role": "developer", "content": "x"}]), "messages[0].role"),
        (_body(messages=[{"role": "user"}]), "messages[0].content"),
        (_body(system=5), "system"),
        (_body(system=[{"type": "image"}]), "system[0].type"),
        (_body(temperature="hot"), "temperature"),
        (_body(top_k=1.5), "top_k"),
        (_body(stop_sequences=[1]), "stop_sequences"),
        (_body(tool_choice={"type": "sometimes"}), "tool_choice.type"),
        (_body(tool_choice={"type": "tool"}), "tool_choice.name"),
        (_body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
        (_body(tools=[{"name": "f"}]), "tools[0].input_schema"),
        (_blocks("user", {"type": "search_result"}), "messages[0].content[0].type"),
        (_blocks("user", {"type": "text"}), "messages[0].content[0].text"),
        (_blocks("user", {"type": "image", "source": {"type": "file", "file_id": "f"}}), "messages[0].content[0].source.type"),
        (_blocks("assistant", {"type": "tool_use", "name": "f", "input": {}}), "messages[0].content[0].id"),
        (_blocks("user", {"type": "tool_result", "content": "x"}), "messages[0].content[0].tool_use_id"),
    ],
)
def test_decode_request_400_names_the_field(body: Any, param: str | None) -> None:
    with pytest.raises(GatewayError) as caught:
        wire.decode_request(body)
    assert caught.value.kind is ErrorKind.INVALID_REQUEST
    assert caught.value.status == 400
    assert caught.value.param == param


# --- responses -----------------------------------------------------------------------------------


def test_decode_response_golden() -> None:
    response = wire.decode_response(load("response_tool_use.json"))
    response.created = 0
    golden_json("response_tool_use.canonical.json", builtins(response))


def test_encode_response_golden() -> None:
    response = msgspec.convert(load("response_encode.in.json"), ChatResponse)
    golden_json("response_encode.out.json", wire.encode_response(response, model="my-endpoint"))


def test_response_round_trip_keeps_blocks_and_usage() -> None:
    original = load("response_tool_use.json")
    again = wire.encode_response(wire.decode_response(original))
    assert again["content"] == [b for b in original["content"] if b["type"] != "server_tool_use"]
    assert again["usage"] == {
        "input_tokens": 25,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 2000,
        "output_tokens": 120,
        "output_tokens_details": {"thinking_tokens": 40},
    }
    assert (again["id"], again["stop_reason"], again["model"]) == (original["id"], "tool_use", original["model"])


@pytest.mark.parametrize(
    ("stop_reason", "finish", "back"),
    [
        ("end_turn", "stop", "end_turn"),
        ("stop_sequence", "stop", "end_turn"),
        ("pause_turn", "stop", "end_turn"),
        ("max_tokens", "length", "max_tokens"),
        ("model_context_window_exceeded", "length", "max_tokens"),
        ("tool_use", "tool_calls", "tool_use"),
        ("refusal", "content_filter", "refusal"),
        ("some_future_reason", "stop", "end_turn"),
    ],
)
def test_stop_reasons_both_ways(stop_reason: str, finish: str, back: str) -> None:
    data = {"id": "msg_1", "model": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason}
    response = wire.decode_response(data)
    assert response.choices[0].finish_reason == finish
    assert wire.encode_response(response)["stop_reason"] == back
    delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 1}}
    sse = MESSAGE_START + b"event: message_delta\ndata: " + orjson.dumps(delta) + b"\n\n"
    assert [e for e in decode_sse(sse) if isinstance(e, Finish)] == [Finish(reason=finish)]  # type: ignore[arg-type]
    encoder = wire.StreamEncoder()
    out = encoder.encode(Finish(reason=finish)) + encoder.finish()  # type: ignore[arg-type]
    assert f'"stop_reason":"{back}"'.encode() in out


def test_usage_cache_tokens_count_in_canonical_input() -> None:
    anthropic_usage = {"input_tokens": 5, "cache_read_input_tokens": 70, "cache_creation_input_tokens": 25, "output_tokens": 9}
    usage = wire.decode_usage(anthropic_usage)
    assert usage == Usage(input_tokens=100, output_tokens=9, cached_input_tokens=70, cache_creation_input_tokens=25)
    assert wire.encode_usage(usage) == {
        "input_tokens": 5,
        "cache_creation_input_tokens": 25,
        "cache_read_input_tokens": 70,
        "output_tokens": 9,
    }


# --- streams: decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stream_tool_use", "stream_thinking"])
def test_stream_decoder_golden(name: str) -> None:
    events = decode_sse((GOLDEN / f"{name}.sse").read_bytes())
    golden_json(f"{name}.events.json", builtins(events))


@pytest.mark.parametrize("name", ["stream_tool_use", "stream_thinking"])
@pytest.mark.parametrize("piece", [1, 7, 64])
def test_stream_decoder_same_events_for_any_chunking(name: str, piece: int) -> None:
    data = (GOLDEN / f"{name}.sse").read_bytes()
    assert decode_sse(data, piece) == decode_sse(data)
    crlf = data.replace(b"\n", b"\r\n")
    assert decode_sse(crlf, piece) == decode_sse(data)


def test_stream_decoder_error_events() -> None:
    decoder = wire.StreamDecoder()
    overloaded = SSEEvent("error", b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    with pytest.raises(GatewayError) as caught:
        decoder.feed(overloaded)
    assert caught.value.kind is ErrorKind.OVERLOADED
    assert "Overloaded" in caught.value.message
    other = SSEEvent("error", b'{"type":"error","error":{"type":"api_error","message":"Internal"}}')
    with pytest.raises(GatewayError) as caught:
        wire.StreamDecoder().feed(other)
    assert caught.value.kind is ErrorKind.UPSTREAM_ERROR


def test_stream_decoder_finish_only_when_owed() -> None:
    whole = decode_sse((GOLDEN / "stream_tool_use.sse").read_bytes())
    assert sum(isinstance(e, Finish) for e in whole) == 1
    assert sum(isinstance(e, UsageEvent) for e in whole) == 1
    # A stream cut after the tool calls (no message_delta / message_stop): the Finish and the usage
    # seen so far are still owed.
    data = (GOLDEN / "stream_tool_use.sse").read_bytes()
    cut = data[: data.index(b"event: message_delta")]
    events = decode_sse(cut)
    assert events[-2:] == [
        Finish(reason="tool_calls"),
        UsageEvent(usage=Usage(input_tokens=2272, output_tokens=2, cached_input_tokens=1800, cache_creation_input_tokens=0)),
    ]
    assert wire.StreamDecoder().finish() == []


# --- streams: encoding ---------------------------------------------------------------------------


def test_stream_encoder_golden_interleaved(fixed_ids: None) -> None:
    golden_bytes("encode_interleaved.sse", encode_events(events_of("encode_interleaved.events.json"), model="my-endpoint"))


def test_stream_encoder_golden_text() -> None:
    golden_bytes("encode_text.sse", encode_events(events_of("encode_text.events.json")))


def _parsed_frames(data: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    return [(e.event, orjson.loads(e.data)) for e in SSEParser().feed(data)]


def test_stream_encoder_structure(fixed_ids: None) -> None:
    """Strict order: message_start, ping, (block start, deltas, stop)*, message_delta, message_stop;
    every frame's event name equals its data type; block indexes count up from 0 without gaps."""
    frames = _parsed_frames(encode_events(events_of("encode_interleaved.events.json")))
    assert all(name == data["type"] for name, data in frames)
    kinds = [data["type"] for _, data in frames]
    assert kinds[:2] == ["message_start", "ping"] and kinds[-2:] == ["message_delta", "message_stop"]
    open_index, next_index = None, 0
    for _, data in frames[2:-2]:
        if data["type"] == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = data["index"], next_index + 1
        elif data["type"] == "content_block_delta":
            assert data["index"] == open_index
        else:
            assert data["type"] == "content_block_stop" and data["index"] == open_index
            open_index = None
    assert open_index is None


def test_stream_encoder_without_events_still_frames_a_message(fixed_ids: None) -> None:
    kinds = [data["type"] for _, data in _parsed_frames(wire.StreamEncoder("m").finish())]
    assert kinds == ["message_start", "ping", "message_delta", "message_stop"]


def test_encoder_then_decoder_round_trip() -> None:
    events = events_of("encode_interleaved.events.json")
    decoded = decode_sse(encode_events(events))

    def text(kind: type) -> str:
        return "".join(e.text for e in decoded if isinstance(e, kind) and e.text)

    assert text(TextDelta) == "Checking both.One more."
    assert text(ReasoningDelta) == "Thinking about the question.A second thought."
    assert [e.signature for e in decoded if isinstance(e, ReasoningDelta) and e.signature] == ["sig-xyz"]
    calls: dict[int, str] = {}
    for e in decoded:
        if isinstance(e, ToolCallDelta):
            calls[e.tool_index] = calls.get(e.tool_index, "") + e.arguments
    assert calls == {0: '{"city":"Paris"}', 1: '{"city":"Tokyo"}', 2: "{}"}
    assert decoded[-2:] == [
        Finish(reason="tool_calls"),
        UsageEvent(
            usage=Usage(
                input_tokens=1200, output_tokens=55, cached_input_tokens=1000, cache_creation_input_tokens=0, reasoning_tokens=20
            )
        ),
    ]


def test_encoder_output_accumulated_by_the_anthropic_sdk() -> None:
    anthropic = pytest.importorskip("anthropic")
    httpx = pytest.importorskip("httpx2")
    body = encode_events(events_of("encode_interleaved.events.json"), model="my-endpoint")

    def handler(request: Any) -> Any:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    http_client = httpx.Client(transport=httpx.MockTransport(handler))
    client = anthropic.Anthropic(api_key="test", base_url="http://gateway.test", http_client=http_client, max_retries=0)
    with client.messages.stream(model="my-endpoint", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as stream:
        message = stream.get_final_message()
    blocks = [block.to_dict() for block in message.content]
    assert blocks[0] == {"type": "thinking", "thinking": "Thinking about the question.", "signature": "sig-xyz"}
    assert blocks[1] == {"type": "thinking", "thinking": "A second thought.", "signature": ""}
    assert blocks[2] == {"type": "text", "text": "Checking both."}
    assert blocks[3] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
    assert blocks[4] == {"type": "text", "text": "One more."}
    assert blocks[5] == {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Tokyo"}}
    assert blocks[6]["type"] == "tool_use" and blocks[6]["name"] == "no_id_tool" and blocks[6]["input"] == {}
    assert blocks[6]["id"].startswith("toolu_")
    assert blocks[7] == {"type": "redacted_thinking", "data": "opaque-bytes"}
    assert (message.model, message.stop_reason, message.id) == ("my-endpoint", "tool_use", "msg_chatcmpl-abc123")
    usage = message.usage
    counts = (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens, usage.output_tokens)
    assert counts == (200, 1000, 0, 55)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "error_type", "wire_status"),
    [
        (ErrorKind.INVALID_REQUEST, 400, "invalid_request_error", 400),
        (ErrorKind.AUTHENTICATION, 401, "authentication_error", 401),
        (ErrorKind.PERMISSION, 403, "permission_error", 403),
        (ErrorKind.NOT_FOUND, 404, "not_found_error", 404),
        (ErrorKind.REQUEST_TOO_LARGE, 413, "request_too_large", 413),
        (ErrorKind.RATE_LIMIT, 429, "rate_limit_error", 429),
        (ErrorKind.UPSTREAM_ERROR, 502, "api_error", 502),
        (ErrorKind.UPSTREAM_UNAVAILABLE, 502, "api_error", 502),
        (ErrorKind.UPSTREAM_TIMEOUT, 504, "timeout_error", 504),
        (ErrorKind.OVERLOADED, 502, "overloaded_error", 529),
        (ErrorKind.INTERNAL, 500, "api_error", 500),
    ],
)
def test_encode_error(kind: ErrorKind, status: int, error_type: str, wire_status: int) -> None:
    error = GatewayError(kind, "went wrong", status=status)
    assert wire.encode_error(error) == {"type": "error", "error": {"type": error_type, "message": "went wrong"}}
    assert wire.error_status(error) == wire_status


def test_encode_error_event() -> None:
    frame = wire.encode_error_event(invalid("bad"))
    assert frame == b'event: error\ndata: {"type":"error","error":{"type":"invalid_request_error","message":"bad"}}\n\n'


# --- provider ------------------------------------------------------------------------------------

KEY = "sk-ant-test-0123456789"


class FakeResponse:
    def __init__(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, chunks: list[bytes] | None = None
    ) -> None:
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
    def __init__(self, response: FakeResponse) -> None:
        self.response = response
        self.requests: list[UpstreamRequest] = []

    async def send(self, request: UpstreamRequest, *, limits: UpstreamLimits, destination: str) -> FakeResponse:
        self.requests.append(request)
        return self.response

    async def close(self) -> None:
        pass


def provider_for(response: FakeResponse, **config: Any) -> tuple[AnthropicProvider, FakeClient]:
    client = FakeClient(response)
    destination = DestinationConfig(provider="anthropic", model="claude-sonnet-4-5", api_key=KEY, **config)
    return AnthropicProvider(destination, client), client


def simple_request(**fields: Any) -> ChatRequest:
    return ChatRequest(model="endpoint", messages=[Message(role="user", content=[TextPart(text="Hi")])], **fields)


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        (None, "https://api.anthropic.com/v1/messages"),
        ("https://proxy.example.com/", "https://proxy.example.com/v1/messages"),
        ("https://proxy.example.com/anthropic/v1", "https://proxy.example.com/anthropic/v1/messages"),
        ("https://proxy.example.com/v1/", "https://proxy.example.com/v1/messages"),
    ],
)
async def test_provider_chat_request(base_url: str | None, url: str) -> None:
    response = FakeResponse(200, (GOLDEN / "response_tool_use.json").read_bytes())
    provider, client = provider_for(response, base_url=base_url, headers={"x-team": "blue"})
    result = await provider.chat(simple_request(max_tokens=50))
    (sent,) = client.requests
    assert (sent.method, sent.url) == ("POST", url)
    assert sent.headers == {
        "x-api-key": KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-team": "blue",
    }
    assert orjson.loads(sent.body or b"") == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }
    assert result.choices[0].finish_reason == "tool_calls"
    assert result.usage == Usage(
        input_tokens=2125, output_tokens=120, cached_input_tokens=2000, cache_creation_input_tokens=100, reasoning_tokens=40
    )


async def test_provider_stream_chat() -> None:
    data = (GOLDEN / "stream_tool_use.sse").read_bytes()
    response = FakeResponse(200, chunks=[data[i : i + 50] for i in range(0, len(data), 50)])
    provider, client = provider_for(response)
    events = [e async for e in provider.stream_chat(simple_request())]
    assert orjson.loads(client.requests[0].body or b"")["stream"] is True
    normalised = [StreamStart(id=e.id, model=e.model, created=0) if isinstance(e, StreamStart) else e for e in events]
    assert normalised == decode_sse(data)
    assert response.closed


async def test_provider_stream_error_event_is_overloaded() -> None:
    chunks = [
        MESSAGE_START,
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
    ]
    provider, _ = provider_for(FakeResponse(200, chunks=chunks))
    with pytest.raises(GatewayError) as caught:
        [e async for e in provider.stream_chat(simple_request())]
    assert caught.value.kind is ErrorKind.OVERLOADED


def _error_body(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})


async def test_provider_rate_limit_keeps_retry_after() -> None:
    body = _error_body("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit")
    provider, _ = provider_for(FakeResponse(429, body, {"retry-after": "7"}))
    with pytest.raises(GatewayError) as caught:
        await provider.chat(simple_request())
    error = caught.value
    assert (error.kind, error.status, error.retryable) == (ErrorKind.RATE_LIMIT, 429, True)
    assert error.headers == {"retry-after": "7"}
    assert "rate_limit_error: Number of request tokens" in error.message


async def test_provider_overloaded() -> None:
    provider, _ = provider_for(FakeResponse(529, _error_body("overloaded_error", "Overloaded")))
    with pytest.raises(GatewayError) as caught:
        await provider.chat(simple_request())
    assert caught.value.kind is ErrorKind.OVERLOADED and caught.value.retryable
    assert wire.error_status(caught.value) == 529
    assert "overloaded_error: Overloaded" in caught.value.message


async def test_provider_rejected_key_is_a_gateway_problem_and_never_leaks() -> None:
    body = _error_body("authentication_error", f"invalid x-api-key {KEY}")
    provider, _ = provider_for(FakeResponse(401, body))
    with pytest.raises(GatewayError) as caught:
        await provider.chat(simple_request())
    assert (caught.value.kind, caught.value.status) == (ErrorKind.UPSTREAM_ERROR, 502)
    assert KEY not in caught.value.message and KEY not in repr(caught.value)


async def test_provider_bad_request_stays_400_with_key_redacted() -> None:
    provider, _ = provider_for(FakeResponse(400, _error_body("invalid_request_error", f"max_tokens: too large ({KEY})")))
    with pytest.raises(GatewayError) as caught:
        await provider.chat(simple_request())
    assert (caught.value.kind, caught.value.status) == (ErrorKind.INVALID_REQUEST, 400)
    assert "invalid_request_error: max_tokens: too large (***)" in caught.value.message


async def test_provider_forward_sets_model_and_keeps_the_rest() -> None:
    provider, client = provider_for(FakeResponse(200, b"{}"))
    messages = [{"role": "user", "content": "x"}]
    body = {"model": "endpoint", "max_tokens": 5, "messages": messages, "container": "c1", "stream": True}
    client_headers = {"anthropic-beta": "files-api-2025-04-14", "x-api-key": "client-key", "Authorization": "Bearer gw"}
    await provider.forward("anthropic", body, stream=False, headers=client_headers)
    (sent,) = client.requests
    expected = {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": messages, "container": "c1"}
    assert orjson.loads(sent.body or b"") == expected
    assert body["model"] == "endpoint"  # the caller's dict is not changed
    assert sent.headers["x-api-key"] == KEY and "authorization" not in sent.headers
    assert sent.headers["anthropic-beta"] == "files-api-2025-04-14"
    streamed = provider.forward_request("anthropic", {"model": "x", "max_tokens": 1, "messages": []}, stream=True)
    assert orjson.loads(streamed.body or b"")["stream"] is True


def test_provider_check_config() -> None:
    no_key = DestinationConfig(provider="anthropic", model="m")
    assert AnthropicProvider.check_config(no_key, frozenset({"chat"}))[0] == "api_key"  # type: ignore[index]
    keyed = DestinationConfig(provider="anthropic", model="m", api_key="k")
    assert AnthropicProvider.check_config(keyed, frozenset({"chat"})) is None
    assert AnthropicProvider.check_config(keyed, frozenset({"embeddings"}))[0] == "provider"  # type: ignore[index]


# --- thinking <-> reasoning effort ---------------------------------------------------------------


def _thinking_request(**fields: Any) -> ChatRequest:
    return ChatRequest(model="e", messages=[Message(role="user", content=[TextPart(text="hi")])], **fields)


@pytest.mark.parametrize(
    "thinking, effort",
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 5000}, "medium"),
        ({"type": "enabled", "budget_tokens": 20000}, "high"),
        ({"type": "enabled", "budget_tokens": 64000}, "high"),
        ({"type": "disabled"}, None),
    ],
)
def test_thinking_decodes_to_a_reasoning_effort(thinking: dict[str, Any], effort: str | None) -> None:
    body = {"model": "e", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], "thinking": thinking}
    assert wire.decode_request(body).reasoning_effort == effort


def test_reasoning_effort_encodes_to_thinking_with_room_in_max_tokens() -> None:
    body = wire.encode_request(_thinking_request(reasoning_effort="medium"), "claude-sonnet-4-5", stream=False)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] == wire.DEFAULT_MAX_TOKENS + 8192
    clamped = wire.encode_request(_thinking_request(reasoning_effort="high", max_tokens=5000), "claude-opus-4-1", stream=False)
    assert clamped["thinking"] == {"type": "enabled", "budget_tokens": 4999} and clamped["max_tokens"] == 5000


@pytest.mark.parametrize(
    "model, fields",
    [
        ("claude-3-5-haiku-latest", {}),  # a model that does not think
        ("claude-sonnet-4-5", {"temperature": 0.2}),  # thinking requires default sampling
        ("claude-sonnet-4-5", {"tool_choice": ToolChoice(mode="required")}),  # and no forced tool
        ("claude-sonnet-4-5", {"max_tokens": 1000}),  # no room for the minimum budget
    ],
)
def test_reasoning_effort_is_dropped_where_anthropic_would_refuse_thinking(model: str, fields: dict[str, Any]) -> None:
    body = wire.encode_request(_thinking_request(reasoning_effort="low", **fields), model, stream=False)
    assert "thinking" not in body


def test_system_messages_inside_messages_are_kept_in_place() -> None:
    """Claude Code sends mid-conversation system messages for models it does not know by name."""
    body = _body(messages=[
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "Tools changed."}]},
        {"role": "assistant", "content": "ok"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "go"},
    ])  # fmt: skip
    request = wire.decode_request(body)
    assert [(m.role, m.text()) for m in request.messages] == [
        ("user", "hi"), ("system", "Tools changed."), ("assistant", "ok"), ("system", "Be brief."), ("user", "go"),
    ]  # fmt: skip
    encoded = wire.encode_request(request, "claude-sonnet-4-5", stream=False)
    assert encoded["system"] == "Tools changed.\n\nBe brief."
    assert [turn["role"] for turn in encoded["messages"]] == ["user", "assistant", "user"]


# --- signatures: only Anthropic's go to Anthropic ------------------------------------------------

# One reasoning of each origin, and the blocks an Anthropic client is shown for them.
SIGNED = [
    Reasoning(text="Mine.", signature="EqQBCkYIBxgC", signer="anthropic"),
    Reasoning(redacted="EmwKAhgBEgy", signer="anthropic"),
    Reasoning(text="Gemini's.", signature="Q2lRQlZL", signer="gemini"),
    Reasoning(redacted="gAAAAABo-blob", signer="openai_responses"),
    Reasoning(text="Unsigned."),
]
SHOWN = [
    {"type": "thinking", "thinking": "Mine.", "signature": "EqQBCkYIBxgC"},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy"},
    {"type": "thinking", "thinking": "Gemini's.", "signature": "aigw1.gemini.Q2lRQlZL"},
    {"type": "redacted_thinking", "data": "aigw1.openai_responses.gAAAAABo-blob"},
    {"type": "thinking", "thinking": "Unsigned.", "signature": ""},
]


def _with_reasoning(reasoning: list[Reasoning]) -> ChatRequest:
    messages = [
        Message(role="user", content=[TextPart(text="hi")]),
        Message(role="assistant", content=[TextPart(text="Done.")], reasoning=reasoning),
        Message(role="user", content=[TextPart(text="more")]),
    ]
    return ChatRequest(model="m", messages=messages)


def test_upstream_answers_are_signed_by_anthropic() -> None:
    reasoning = wire.decode_response(load("response_tool_use.json")).choices[0].message.reasoning
    assert [r.signer for r in reasoning] == ["anthropic", "anthropic"]
    events = decode_sse((GOLDEN / "stream_thinking.sse").read_bytes())
    signed = [e for e in events if isinstance(e, ReasoningDelta) and (e.signature or e.redacted)]
    assert len(signed) == 2 and all(e.signer == "anthropic" for e in signed)


def test_client_sees_other_vendors_signatures_sealed() -> None:
    reasoning = [*SIGNED, Reasoning(text="Nobody knows whose.", signature="x"), Reasoning(redacted="y")]
    message = Message(role="assistant", content=[TextPart(text="Done.")], reasoning=reasoning)
    blocks = wire.encode_response(ChatResponse(id="msg_1", model="m", created=0, choices=[Choice(message=message)]))["content"]
    # A signature of unknown origin is worth nothing upstream: the reasoning is shown unsigned.
    unknown = {"type": "thinking", "thinking": "Nobody knows whose.", "signature": ""}
    assert blocks == [*SHOWN, unknown, {"type": "text", "text": "Done."}]


def test_client_stream_sees_other_vendors_signatures_sealed(fixed_ids: None) -> None:
    events: list[StreamEvent] = [
        ReasoningDelta(text="Gemini's."),
        ReasoningDelta(signature="Q2lRQlZL", signer="gemini"),
        ReasoningDelta(redacted="gAAAAABo-blob", signer="openai_responses"),
        ReasoningDelta(redacted="unknown-origin"),
        ReasoningDelta(text="Mine."),
        ReasoningDelta(signature="EqQBCkYIBxgC", signer="anthropic"),
        Finish(reason="stop"),
    ]
    frames = [data for _, data in _parsed_frames(encode_events(events))]
    started = [f["content_block"]["type"] for f in frames if f["type"] == "content_block_start"]
    assert started == ["thinking", "redacted_thinking", "thinking"]
    assert [f["content_block"]["data"] for f in frames if f["type"] == "content_block_start" and "data" in f["content_block"]] == [
        "aigw1.openai_responses.gAAAAABo-blob"
    ]
    signatures = [f["delta"]["signature"] for f in frames if f["type"] == "content_block_delta" and "signature" in f["delta"]]
    assert signatures == ["aigw1.gemini.Q2lRQlZL", "EqQBCkYIBxgC"]


def test_client_request_opens_sealed_signatures() -> None:
    body = _body(messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [*SHOWN, {"type": "text", "text": "Done."}]},
        {"role": "user", "content": "more"},
    ])  # fmt: skip
    assert wire.decode_request(body).messages[1].reasoning == SIGNED


def test_only_anthropic_signatures_go_upstream() -> None:
    body = wire.encode_request(_with_reasoning(SIGNED), "claude-sonnet-4-5", stream=False)
    assert body["messages"][1]["content"] == [*SHOWN[:2], {"type": "text", "text": "Done."}]
    # Neither a signature nor a redaction of unknown origin goes either.
    unknown = [Reasoning(text="t", signature="x"), Reasoning(redacted="y")]
    body = wire.encode_request(_with_reasoning(unknown), "claude-sonnet-4-5", stream=False)
    assert body["messages"][1]["content"] == [{"type": "text", "text": "Done."}]
