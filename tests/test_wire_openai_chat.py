"""OpenAI chat-completions wire format <-> canonical.

Golden files under tests/golden/openai_chat/<kind>/: `<case>.in.*` is fed to the translation for <kind>
and the result compared exactly with the case's output file(s):

    request_decode   client body            -> <case>.out.json (canonical)  + <case>.reencoded.json (upstream body)
    request_encode   {model, stream, request: canonical} -> <case>.out.json (upstream body)
    response         upstream JSON          -> <case>.canonical.json        + <case>.out.json (client JSON)
    response_encode  canonical response     -> <case>.out.json (client JSON)
    stream_decode    upstream SSE bytes     -> <case>.out.json (canonical events)
    stream_encode    {include_usage, model?, events} -> <case>.out.sse (the exact client bytes)

`AIGW_UPDATE_GOLDEN=1` rewrites the outputs: a golden file is only as right as the eye that checked it,
so read the diff. Outputs are also checked against the `openai` SDK's own types below.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from aigw.canonical import (
    ChatRequest,
    ChatResponse,
    FilePart,
    Finish,
    Message,
    ReasoningDelta,
    ResponseFormat,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolChoice,
    Usage,
    UsageEvent,
)
from aigw.errors import ErrorKind, GatewayError
from aigw.http.sse import SSEEvent, SSEParser
from aigw.wire import openai_chat as wire

GOLDEN = Path(__file__).parent / "golden" / "openai_chat"
UPDATE = os.environ.get("AIGW_UPDATE_GOLDEN") == "1"


def _check(path: Path, actual: bytes) -> None:
    if UPDATE:
        path.write_bytes(actual)
    assert path.exists(), f"{path.relative_to(GOLDEN)} is missing (AIGW_UPDATE_GOLDEN=1 writes it)"
    assert actual == path.read_bytes(), f"differs from {path.relative_to(GOLDEN)} (AIGW_UPDATE_GOLDEN=1 rewrites it)"


def golden_json(path: Path, actual: Any) -> None:
    _check(path, orjson.dumps(actual, option=orjson.OPT_INDENT_2) + b"\n")


def golden_bytes(path: Path, actual: bytes) -> None:
    _check(path, actual)


def cases(kind: str, suffix: str = ".json") -> list[Path]:
    return sorted((GOLDEN / kind).glob(f"*.in{suffix}"))


def ids(paths: list[Path]) -> list[str]:
    return [p.name.split(".in.")[0] for p in paths]


def sibling(case: Path, suffix: str) -> Path:
    """`x.in.json` -> `x<suffix>` in the same directory."""
    return case.with_name(case.name.split(".in.")[0] + suffix)


def load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


def decode_sse(data: bytes, piece: int | None = None) -> list[StreamEvent]:
    """Bytes through SSEParser and the decoder, whole or in pieces of `piece` bytes."""
    parser, decoder = SSEParser(), wire.StreamDecoder()
    chunks = [data] if piece is None else [data[i : i + piece] for i in range(0, len(data), piece)]
    events: list[StreamEvent] = []
    for chunk in chunks:
        for sse in parser.feed(chunk):
            events += decoder.feed(sse)
    for sse in parser.flush():
        events += decoder.feed(sse)
    return events + decoder.finish()


def encode_events(events: list[StreamEvent], include_usage: bool, model: str | None = None) -> bytes:
    encoder = wire.StreamEncoder(include_usage, model)
    return b"".join(encoder.encode(e) for e in events) + encoder.finish()


def frames(data: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE byte stream, in order."""
    return [e.data for e in SSEParser().feed(data)]


@pytest.fixture(autouse=True)
def pinned_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's only randomness is new_id() (for upstream bodies without an id): pin it."""
    counter = iter(range(1, 1000))
    monkeypatch.setattr(wire, "new_id", lambda: f"chatcmpl-gen{next(counter)}")


# --- the openai SDK's types, as a second opinion on every shape ------------------------------------


def _force(value: Any) -> Any:
    """pydantic validates `Iterable[...]` fields lazily: walk them so every item is checked."""
    if isinstance(value, dict):
        return {k: _force(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ValidatorIterator":
        return [_force(v) for v in value]
    return value


@functools.cache
def _request_adapter(stream: bool) -> Any:
    # Kept alive (cached): the lazy iterators it returns need their adapter's schema definitions.
    from openai.types.chat import completion_create_params as params
    from pydantic import TypeAdapter

    return TypeAdapter(params.CompletionCreateParamsStreaming if stream else params.CompletionCreateParamsNonStreaming)


def check_request_body(body: dict[str, Any]) -> None:
    _force(_request_adapter(bool(body.get("stream"))).validate_python(body))


def check_response_body(body: dict[str, Any]) -> None:
    from openai.types.chat import ChatCompletion

    ChatCompletion.model_validate(body)


def check_chunk(chunk: dict[str, Any]) -> None:
    from openai.types.chat import ChatCompletionChunk

    ChatCompletionChunk.model_validate(chunk)


# --- requests: client body -> canonical -------------------------------------------------------------


REQUEST_DECODE = cases("request_decode")


@pytest.mark.parametrize("case", REQUEST_DECODE, ids=ids(REQUEST_DECODE))
def test_request_decode_golden(case: Path) -> None:
    body = load(case)
    check_request_body(body)  # the inputs are themselves valid OpenAI requests
    request = wire.decode_request(body)
    golden_json(sibling(case, ".out.json"), builtins(request))
    # ... and on to an OpenAI upstream: extras kept (same wire), stream_options forced on for usage.
    upstream = wire.encode_request(request, "gpt-4.1", stream=request.stream)
    check_request_body(upstream)
    golden_json(sibling(case, ".reencoded.json"), upstream)


def test_request_decode_details() -> None:
    """The points of the request_decode goldens, spelled out."""
    full = wire.decode_request(load(GOLDEN / "request_decode/all_roles.in.json"))
    assert [m.role for m in full.messages] == ["system", "system", "user", "assistant", "tool", "tool", "assistant", "user"]
    assert full.messages[2].name == "alice"
    images = full.messages[2].content[1:]
    assert [(p.is_inline, p.detail) for p in images] == [(True, "low"), (False, None)]  # type: ignore[union-attr]
    assert images[0].inline_data()[0] == "image/png"  # type: ignore[union-attr]
    assert [c.id for c in full.messages[3].tool_calls] == ["call_Par1s", "call_T0kyo"]
    assert full.messages[5].text() == "24°C, sunny"
    assert (full.tool_choice, full.parallel_tool_calls, full.extra) == (ToolChoice(mode="auto"), True, {})

    legacy = wire.decode_request(load(GOLDEN / "request_decode/json_object_legacy_params.in.json"))
    assert (legacy.max_tokens, legacy.stop, legacy.n, legacy.seed, legacy.user) == (256, ["\n\n"], 2, 42, "user-1234")
    assert (legacy.stream, legacy.include_usage) == (False, False)

    schema = wire.decode_request(load(GOLDEN / "request_decode/json_schema_streaming.in.json"))
    assert schema.max_tokens == 400  # max_completion_tokens wins over the deprecated max_tokens
    assert schema.stop == ["END", "###"]
    assert (schema.stream, schema.include_usage, schema.reasoning_effort) == (True, True, "low")
    assert schema.response_format is not None and (schema.response_format.name, schema.response_format.strict) == ("person", True)

    extras = wire.decode_request(load(GOLDEN / "request_decode/unknown_fields_extra.in.json"))
    assert extras.extra_wire == "openai_chat"
    assert set(extras.extra) == {
        "logprobs", "top_logprobs", "frequency_penalty", "presence_penalty", "logit_bias", "metadata", "store",
        "service_tier", "modalities", "prediction", "verbosity", "prompt_cache_key", "safety_identifier", "top_k",
        "chat_template_kwargs",
    }  # fmt: skip
    assert (extras.stream, extras.include_usage) == (True, False)


def test_tool_call_arguments_given_as_an_object_become_json_text() -> None:
    """Lenient: some clients send `arguments` as an object (or leave it out); canonical holds JSON text."""
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"name": "J. Doe"}}},
        {"id": "c2", "type": "function", "function": {"name": "g"}},
    ]
    request = wire.decode_request(_body(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": calls}]))
    assert [c.arguments for c in request.messages[1].tool_calls] == ['{"name":"J. Doe"}', "{}"]


@pytest.mark.parametrize(
    ("wire_choice", "canonical"),
    [
        ("auto", ToolChoice(mode="auto")),
        ("none", ToolChoice(mode="none")),
        ("required", ToolChoice(mode="required")),
        ({"type": "function", "function": {"name": "f"}}, ToolChoice(mode="tool", name="f")),
    ],
)
def test_tool_choice_both_ways(wire_choice: Any, canonical: ToolChoice) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}
    request = wire.decode_request({**body, "tool_choice": wire_choice})
    assert request.tool_choice == canonical
    assert wire.encode_request(request, "gpt-4.1", stream=False)["tool_choice"] == wire_choice


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"max_tokens": 10}, 10),
        ({"max_completion_tokens": 20}, 20),
        ({"max_tokens": 10, "max_completion_tokens": 20}, 20),
        ({"max_tokens": 10, "max_completion_tokens": None}, 10),
    ],
)
def test_max_tokens_and_max_completion_tokens(fields: dict[str, Any], expected: int | None) -> None:
    request = wire.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], **fields})
    assert request.max_tokens == expected
    body = wire.encode_request(request, "gpt-4.1", stream=False)
    assert "max_tokens" not in body  # only the current spelling goes upstream
    assert body.get("max_completion_tokens") == expected


@pytest.mark.parametrize(
    ("stop", "expected"), [("\n", ["\n"]), (["a", "b"], ["a", "b"]), ([], []), (None, [])]
)
def test_stop_string_or_list(stop: Any, expected: list[str]) -> None:
    request = wire.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": stop})
    assert request.stop == expected
    assert wire.encode_request(request, "gpt-4.1", stream=False).get("stop") == (expected or None)


# --- requests: canonical -> upstream body -----------------------------------------------------------


REQUEST_ENCODE = cases("request_encode")


@pytest.mark.parametrize("case", REQUEST_ENCODE, ids=ids(REQUEST_ENCODE))
def test_request_encode_golden(case: Path) -> None:
    spec = load(case)
    request = msgspec.convert(spec["request"], ChatRequest)
    body = wire.encode_request(request, spec["model"], stream=spec["stream"])
    check_request_body(body)
    golden_json(sibling(case, ".out.json"), body)


def test_request_encode_drops_extras_of_other_wires() -> None:
    for name, foreign in [("from_anthropic_extras_dropped", {"top_k", "thinking", "metadata", "service_tier"}),
                          ("from_gemini_json_schema", {"safetySettings", "cachedContent"})]:  # fmt: skip
        spec = load(GOLDEN / f"request_encode/{name}.in.json")
        body = wire.encode_request(msgspec.convert(spec["request"], ChatRequest), spec["model"], stream=spec["stream"])
        assert not foreign & set(body), name
    # The same extras on a request that came from this wire are forwarded.
    spec = load(GOLDEN / "request_encode/from_anthropic_extras_dropped.in.json")
    request = msgspec.convert({**spec["request"], "extra_wire": "openai_chat"}, ChatRequest)
    body = wire.encode_request(request, "gpt-4.1", stream=True)
    assert {k: body[k] for k in spec["request"]["extra"]} == spec["request"]["extra"]


def test_request_encode_stream_flags() -> None:
    request = ChatRequest(
        model="m", messages=[Message(role="user", content=[TextPart(text="x")])], extra={"stream": True, "stream_options": {"x": 1}},
        extra_wire="openai_chat",
    )  # fmt: skip
    assert wire.encode_request(request, "gpt-4.1", stream=True) | {"messages": []} == {
        "model": "gpt-4.1", "messages": [], "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    body = wire.encode_request(request, "gpt-4.1", stream=False)
    assert "stream" not in body and "stream_options" not in body


def test_request_round_trip_openai_to_openai() -> None:
    """A body already in the encoder's normal form (max_completion_tokens, stop as a list, tool
    call arguments as text, assistant content as a string or null) comes back unchanged."""
    body = {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "auto"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{\"a\":2}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "one"},
            {"role": "tool", "tool_call_id": "call_2", "content": "two"},
            {"role": "assistant", "content": "Done."},
            {"role": "user", "content": "Again", "name": "bob"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": False}}],
        "tool_choice": "required",
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": True}},
        "parallel_tool_calls": True,
        "temperature": 0.0,
        "max_completion_tokens": 50,
        "stop": ["x"],
        "n": 1,
        "seed": 3,
        "user": "u",
        "reasoning_effort": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": True,
    }  # fmt: skip
    request = wire.decode_request(body)
    assert wire.encode_request(request, "gpt-4.1", stream=True) == body


def test_reasoning_and_tool_calls_round_trip_through_a_response() -> None:
    """Upstream answer with reasoning + parallel calls -> canonical -> next request's history: the
    calls go back byte for byte; reasoning text (DeepSeek's `reasoning_content`) is not resent."""
    answer = load(GOLDEN / "response/parallel_tool_calls.in.json")
    answer["choices"][0]["message"]["reasoning_content"] = "Two cities."
    message = wire.decode_response(answer).choices[0].message
    assert [r.text for r in message.reasoning] == ["Two cities."]
    history = [Message(role="user", content=[TextPart(text="Weather?")]), message] + [
        Message(role="tool", tool_call_id=c.id, content=[TextPart(text="ok")]) for c in message.tool_calls
    ]
    body = wire.encode_request(ChatRequest(model="m", messages=history), "gpt-4o", stream=False)
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c["id"], "type": "function", "function": c["function"]} for c in answer["choices"][0]["message"]["tool_calls"]
        ],
    }
    assert [m.get("tool_call_id") for m in body["messages"][2:]] == ["call_Par1s", "call_T0kyo"]


def test_tool_message_encoding() -> None:
    """Tool results: text only (separate blocks as paragraphs), no name or is_error on OpenAI's wire."""
    message = Message(role="tool", tool_call_id="c1", name="f", is_error=True, content=[TextPart(text="a"), TextPart(text="b")])
    request = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="x")]), message], tools=[Tool(name="f")])
    assert wire.encode_request(request, "gpt-4.1", stream=False)["messages"][1] == {"role": "tool", "tool_call_id": "c1", "content": "a\n\nb"}


# --- requests: 400s naming the parameter ------------------------------------------------------------


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def _msg(message: dict[str, Any]) -> dict[str, Any]:
    return _body(messages=[message])


def _parts(*parts: Any) -> dict[str, Any]:
    return _msg({"role": "user", "content": list(parts)})


TOP_LEVEL_400 = [
    ([], None),
    ("hi", None),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    (_body(model=5), "model"),
    ({"model": "m"}, "messages"),
    (_body(messages=[]), "messages"),
    (_body(messages="hi"), "messages"),
    (_body(messages=[5]), "messages[0]"),
    (_body(messages=[{"content": "x"}]), "messages[0].role"),
    (_body(messages=[{"role": "user", "content": "x"}, {"role": "function", "content": "x"}]), "messages[1].role"),
    (_body(tools={}), "tools"),
    (_body(tool_choice=5), "tool_choice"),
    (_body(parallel_tool_calls="no"), "parallel_tool_calls"),
    (_body(response_format="json"), "response_format"),
    (_body(temperature="hot"), "temperature"),
    (_body(temperature=True), "temperature"),
    (_body(top_p=[1]), "top_p"),
    (_body(max_tokens=1.5), "max_tokens"),
    (_body(max_tokens=True), "max_tokens"),
    (_body(max_completion_tokens="10"), "max_completion_tokens"),
    (_body(stop=5), "stop"),
    (_body(n="2"), "n"),
    (_body(seed=1.0), "seed"),
    (_body(user=5), "user"),
    (_body(stream="yes"), "stream"),
    (_body(stream=1), "stream"),
    (_body(stream_options=True), "stream_options"),
    (_body(reasoning_effort=1), "reasoning_effort"),
]

DECODE_ONLY_400 = [
    (_msg({"role": "user"}), "messages[0].content"),
    (_msg({"role": "user", "content": None}), "messages[0].content"),
    (_msg({"role": "user", "content": 5}), "messages[0].content"),
    (_msg({"role": "system", "content": {"text": "x"}}), "messages[0].content"),
    (_parts("text"), "messages[0].content[0]"),
    (_parts({"type": "text"}), "messages[0].content[0].text"),
    (_parts({"type": "image_url", "image_url": {"detail": "low"}}), "messages[0].content[0].image_url.url"),
    (_parts({"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}), "messages[0].content[0].type"),
    (_parts({"type": "file"}), "messages[0].content[0].file"),
    (_body(messages=[{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]), "messages[1].tool_call_id"),
    (_msg({"role": "assistant", "tool_calls": {"id": "c"}}), "messages[0].tool_calls"),
    (_msg({"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"arguments": "{}"}}]}),
     "messages[0].tool_calls[0].function.name"),
    (_body(tools=[{"type": "custom", "custom": {"name": "grammar"}}]), "tools[0].type"),
    (_body(tools=["f"]), "tools[0].type"),
    (_body(tools=[{"type": "function"}]), "tools[0].function.name"),
    (_body(tool_choice="sometimes"), "tool_choice"),
    (_body(tool_choice={"type": "function"}), "tool_choice.function.name"),
    (_body(tool_choice={"type": "function", "function": {"name": 5}}), "tool_choice.function.name"),
    (_body(response_format={"type": "xml"}), "response_format.type"),
    (_body(response_format={}), "response_format.type"),
    (_body(response_format={"type": "json_schema", "json_schema": ["x"]}), "response_format.json_schema"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "param"), TOP_LEVEL_400 + DECODE_ONLY_400)
def test_decode_request_400_names_the_parameter(body: Any, param: str | None) -> None:
    with pytest.raises(GatewayError) as caught:
        wire.decode_request(body)
    error = caught.value
    assert (error.kind, error.status, error.param) == (ErrorKind.INVALID_REQUEST, 400, param)
    if param is not None:
        assert f"'{param}'" in error.message or param.rsplit(".", 1)[0] in error.message
    assert wire.encode_error(error)["error"]["param"] == param  # and the client sees it


@pytest.mark.parametrize(("body", "param"), TOP_LEVEL_400)
def test_validate_request_400_names_the_parameter(body: Any, param: str | None) -> None:
    """The pass-through path's checks: the same 400s for top-level fields and roles."""
    with pytest.raises(GatewayError) as caught:
        wire.validate_request(body)
    assert (caught.value.status, caught.value.param) == (400, param)


@pytest.mark.parametrize(("body", "_param"), DECODE_ONLY_400)
def test_validate_request_leaves_content_to_the_upstream(body: Any, _param: str) -> None:
    """validate_request is the cheap check for passed-through bodies: it does not look inside messages."""
    wire.validate_request(body)


# --- responses --------------------------------------------------------------------------------------


RESPONSES = cases("response")


@pytest.mark.parametrize("case", RESPONSES, ids=ids(RESPONSES))
def test_response_golden(case: Path) -> None:
    upstream = load(case)
    check_response_body(upstream)
    response = wire.decode_response(upstream)
    golden_json(sibling(case, ".canonical.json"), builtins(response))
    client = wire.encode_response(response)
    check_response_body(client)
    golden_json(sibling(case, ".out.json"), client)


RESPONSE_ENCODE = cases("response_encode")


@pytest.mark.parametrize("case", RESPONSE_ENCODE, ids=ids(RESPONSE_ENCODE))
def test_response_encode_golden(case: Path) -> None:
    client = wire.encode_response(msgspec.convert(load(case), ChatResponse))
    check_response_body(client)
    golden_json(sibling(case, ".out.json"), client)


def test_response_round_trip_keeps_calls_usage_and_finish() -> None:
    upstream = load(GOLDEN / "response/parallel_tool_calls.in.json")
    again = wire.encode_response(wire.decode_response(upstream))
    for key in ("id", "object", "created", "model"):
        assert again[key] == upstream[key]
    (choice,) = again["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == upstream["choices"][0]["message"]["tool_calls"]
    assert again["usage"] == {
        "prompt_tokens": 2082,
        "completion_tokens": 46,
        "total_tokens": 2128,
        "prompt_tokens_details": {"cached_tokens": 1920},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_usage_both_ways() -> None:
    usage = wire.decode_usage(
        {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
         "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 20}}
    )  # fmt: skip
    assert usage == Usage(input_tokens=100, output_tokens=30, cached_input_tokens=60, reasoning_tokens=20)
    assert wire.encode_usage(Usage(input_tokens=5, output_tokens=7)) == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert wire.decode_usage(None) is None
    assert wire.decode_usage({}) == Usage()


@pytest.mark.parametrize("reason", ["stop", "length", "tool_calls", "content_filter"])
def test_finish_reasons_both_ways(reason: str) -> None:
    upstream = {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": reason}]}
    response = wire.decode_response(upstream)
    assert response.choices[0].finish_reason == reason
    assert wire.encode_response(response)["choices"][0]["finish_reason"] == reason
    chunk = b'{"id":"c","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"' + reason.encode() + b'"}]}'
    events = wire.StreamDecoder().feed(SSEEvent(None, chunk))
    assert events[-1] == Finish(reason=reason)  # type: ignore[arg-type]
    out = encode_events([StreamStart(id="c", model="m", created=1), Finish(reason=reason)], include_usage=False)  # type: ignore[arg-type]
    assert orjson.loads(frames(out)[-2])["choices"][0]["finish_reason"] == reason


def test_response_without_id_or_created_gets_them_from_the_gateway() -> None:
    response = wire.decode_response({"model": "m", "choices": []})
    assert response.id == "chatcmpl-gen1"
    assert isinstance(response.created, int) and response.created > 1_700_000_000


# --- streams: decoding ------------------------------------------------------------------------------


STREAM_DECODE = cases("stream_decode", ".sse")


@pytest.mark.parametrize("case", STREAM_DECODE, ids=ids(STREAM_DECODE))
def test_stream_decode_golden(case: Path) -> None:
    golden_json(sibling(case, ".out.json"), builtins(decode_sse(case.read_bytes())))


@pytest.mark.parametrize("case", STREAM_DECODE, ids=ids(STREAM_DECODE))
@pytest.mark.parametrize("piece", [1, 7, 64])
def test_stream_decode_same_events_for_any_chunking(case: Path, piece: int) -> None:
    data = case.read_bytes()
    assert decode_sse(data, piece) == decode_sse(data)
    assert decode_sse(data.replace(b"\n", b"\r\n"), piece) == decode_sse(data)


def test_stream_decode_parallel_calls_accumulate() -> None:
    events = decode_sse((GOLDEN / "stream_decode/parallel_tool_calls.in.sse").read_bytes())
    calls: dict[int, dict[str, Any]] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            call = calls.setdefault(e.tool_index, {"id": e.id, "name": e.name, "arguments": ""})
            call["arguments"] += e.arguments
    assert calls == {
        0: {"id": "call_Par1s", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "call_T0kyo", "name": "get_weather", "arguments": '{"city": "Tokyo"}'},
    }
    assert events[0] == StreamStart(id="chatcmpl-BxStr3amT00ls", model="gpt-4o-2024-08-06", created=1735689600)
    assert events[-2:] == [
        Finish(reason="tool_calls"),
        UsageEvent(usage=Usage(input_tokens=82, output_tokens=46, cached_input_tokens=0, reasoning_tokens=0)),
    ]


def test_stream_decode_ignores_done_and_empty_data() -> None:
    decoder = wire.StreamDecoder()
    assert decoder.feed(SSEEvent(None, b"[DONE]")) == []
    assert decoder.feed(SSEEvent(None, b"")) == []
    assert decoder.finish() == []


def test_stream_decode_start_without_id_or_created() -> None:
    """Some OpenAI-compatible servers omit id/created: the gateway makes them up (id pinned here)."""
    (start, text) = wire.StreamDecoder().feed(SSEEvent(None, b'{"choices":[{"index":0,"delta":{"content":"Hi"}}]}'))
    assert isinstance(start, StreamStart) and (start.id, start.model) == ("chatcmpl-gen1", "")
    assert isinstance(start.created, int) and start.created > 1_700_000_000
    assert text == TextDelta(text="Hi")


def test_stream_decode_usage_chunk_with_null_choices() -> None:
    """vLLM-style final usage chunk: `choices: null` (or absent) instead of []."""
    decoder = wire.StreamDecoder()
    decoder.feed(SSEEvent(None, b'{"id":"c","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"}}]}'))
    events = decoder.feed(SSEEvent(None, b'{"id":"c","choices":null,"usage":{"prompt_tokens":3,"completion_tokens":1}}'))
    assert events == [UsageEvent(usage=Usage(input_tokens=3, output_tokens=1))]


def test_stream_decode_error_chunk_raises() -> None:
    decoder = wire.StreamDecoder()
    error = b'{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}'
    with pytest.raises(GatewayError) as caught:
        decoder.feed(SSEEvent(None, error))
    assert caught.value.kind is ErrorKind.UPSTREAM_ERROR
    assert "The server had an error" in caught.value.message


# --- streams: encoding ------------------------------------------------------------------------------


STREAM_ENCODE = cases("stream_encode")


def _encode_case(case: Path) -> tuple[dict[str, Any], bytes]:
    spec = load(case)
    events = msgspec.convert(spec["events"], list[StreamEvent])
    return spec, encode_events(events, spec["include_usage"], spec.get("model"))


@pytest.mark.parametrize("case", STREAM_ENCODE, ids=ids(STREAM_ENCODE))
def test_stream_encode_golden(case: Path) -> None:
    golden_bytes(sibling(case, ".out.sse"), _encode_case(case)[1])


@pytest.mark.parametrize("case", STREAM_ENCODE, ids=ids(STREAM_ENCODE))
def test_stream_encode_structure(case: Path) -> None:
    """Every chunk: id, object, created and model from the StreamStart (model overridable), each
    choice with its index; the first chunk of a choice carries the role; usage only when asked for,
    as the last chunk with `choices: []`; then `data: [DONE]`."""
    spec, raw = _encode_case(case)
    start = spec["events"][0]
    assert raw.endswith(b"\n\ndata: [DONE]\n\n") and raw.count(b"[DONE]") == 1
    assert all(block.startswith(b"data: ") and b"\n" not in block for block in raw.split(b"\n\n")[:-1])
    payloads = frames(raw)
    assert payloads[-1] == b"[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        check_chunk(chunk)
        assert list(chunk)[:5] == ["id", "object", "created", "model", "choices"]
        assert (chunk["id"], chunk["object"], chunk["created"], chunk["model"]) == (
            start["id"], "chat.completion.chunk", start["created"], spec.get("model") or start["model"],
        )  # fmt: skip
        for choice in chunk["choices"]:
            assert set(choice) == {"index", "delta", "logprobs", "finish_reason"}
    usage_chunks = [c for c in chunks if "usage" in c]
    if spec["include_usage"]:
        assert usage_chunks == [chunks[-1]] and chunks[-1]["choices"] == []
    else:
        assert usage_chunks == []
    seen: set[int] = set()
    for chunk in chunks:
        for choice in chunk["choices"]:
            first = choice["index"] not in seen
            seen.add(choice["index"])
            assert (choice["delta"].get("role") == "assistant") == first
    finishes = [(ch["index"], ch["finish_reason"]) for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert sorted(finishes) == sorted((e.get("index", 0), e["reason"]) for e in spec["events"] if e["type"] == "finish")


def test_stream_encode_usage_numbers() -> None:
    _, raw = _encode_case(GOLDEN / "stream_encode/text_with_usage.in.json")
    assert orjson.loads(frames(raw)[-2])["usage"] == {
        "prompt_tokens": 1200,
        "completion_tokens": 75,
        "total_tokens": 1275,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 64},
    }


@pytest.mark.parametrize("case", STREAM_DECODE, ids=ids(STREAM_DECODE))
def test_stream_decode_then_encode_then_decode(case: Path) -> None:
    """Upstream bytes -> events -> client bytes -> the same events (the encoder adds role-only
    deltas, which decode to nothing)."""
    events = decode_sse(case.read_bytes())
    with_usage = any(isinstance(e, UsageEvent) for e in events)
    assert decode_sse(encode_events(events, include_usage=with_usage)) == events


def _sdk_client(body: bytes) -> Any:
    openai = pytest.importorskip("openai")
    httpx = pytest.importorskip("httpx2")

    def handler(request: Any) -> Any:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    http_client = httpx.Client(transport=httpx.MockTransport(handler))
    return openai.OpenAI(api_key="test", base_url="http://gateway.test/v1", http_client=http_client, max_retries=0)


def test_encoded_stream_accumulated_by_the_openai_sdk() -> None:
    _, raw = _encode_case(GOLDEN / "stream_encode/parallel_tool_calls.in.json")
    client = _sdk_client(raw)
    with client.chat.completions.stream(model="my-endpoint", messages=[{"role": "user", "content": "hi"}]) as stream:
        for _ in stream:
            pass
        completion = stream.get_final_completion()
    assert (completion.id, completion.model, completion.created) == ("msg_01XFDUDYJgAACzvnptvVoYEL", "my-endpoint", 1735689700)
    (choice,) = completion.choices
    assert (choice.index, choice.finish_reason) == (0, "tool_calls")
    assert choice.message.content == "Checking both."
    calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    assert calls == [("toolu_01A", "get_weather", '{"city":"Paris"}'), ("toolu_01B", "get_weather", '{"city":"Tokyo"}')]
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (2125, 120, 2245)


def test_encoded_two_choice_stream_through_the_openai_sdk() -> None:
    _, raw = _encode_case(GOLDEN / "stream_encode/two_choices_finish_first.in.json")
    chunks = list(_sdk_client(raw).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True))
    text: dict[int, str] = {}
    finish: dict[int, str | None] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            text[choice.index] = text.get(choice.index, "") + (choice.delta.content or "")
            finish[choice.index] = choice.finish_reason or finish.get(choice.index)
    assert text == {0: "Red and blue.", 1: ""}
    assert finish == {0: "stop", 1: "content_filter"}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 18


def test_stream_encoder_skips_signature_only_reasoning() -> None:
    encoder = wire.StreamEncoder(include_usage=False)
    encoder.encode(StreamStart(id="c", model="m", created=1))
    assert encoder.encode(ReasoningDelta(signature="sig")) == b""
    assert encoder.encode(ReasoningDelta(redacted="opaque")) == b""
    out = encoder.encode(ReasoningDelta(text="hmm"))
    assert orjson.loads(frames(out)[0])["choices"][0]["delta"] == {"role": "assistant", "reasoning_content": "hmm"}


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "error_type", "code", "wire_status"),
    [
        (ErrorKind.INVALID_REQUEST, 400, "invalid_request_error", None, 400),
        (ErrorKind.AUTHENTICATION, 401, "invalid_request_error", "invalid_api_key", 401),
        (ErrorKind.PERMISSION, 403, "permission_error", "permission_denied", 403),
        (ErrorKind.NOT_FOUND, 404, "invalid_request_error", "model_not_found", 404),
        (ErrorKind.RATE_LIMIT, 429, "rate_limit_error", "rate_limit_exceeded", 429),
        (ErrorKind.UPSTREAM_ERROR, 502, "server_error", "upstream_error", 502),
        (ErrorKind.UPSTREAM_TIMEOUT, 504, "server_error", "upstream_timeout", 504),
        (ErrorKind.OVERLOADED, 529, "server_error", "upstream_overloaded", 502),
        (ErrorKind.INTERNAL, 500, "server_error", None, 500),
    ],
)
def test_encode_error(kind: ErrorKind, status: int, error_type: str, code: str | None, wire_status: int) -> None:
    error = GatewayError(kind, "went wrong", param="messages[0]" if kind is ErrorKind.INVALID_REQUEST else None)
    assert error.status == status
    assert wire.error_status(error) == wire_status
    assert wire.encode_error(error) == {"error": {"message": "went wrong", "type": error_type, "param": error.param, "code": code}}


# --- fixed bugs: each pins one that was here ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": None, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": None}, "messages"),
        ({"model": "m", "messages": [{"role": None, "content": "x"}]}, "messages[0].role"),
    ],
)
def test_required_field_given_as_null_is_a_400(body: dict[str, Any], param: str) -> None:
    """null is as good as absent for a required field (it was: `model: null` passed, then 404'd)."""
    for check in (wire.validate_request, wire.decode_request):
        with pytest.raises(GatewayError) as caught:
            check(body)
        assert (caught.value.status, caught.value.param) == (400, param)


def test_non_object_json_schema() -> None:
    """A 400 naming it when it is the schema (it was an AttributeError, a 500); ignored where the
    type has no use for it."""
    with pytest.raises(GatewayError) as caught:
        wire.decode_request(_body(response_format={"type": "json_schema", "json_schema": "x"}))
    assert (caught.value.status, caught.value.param) == (400, "response_format.json_schema")
    for kind in ("json_object", "text"):
        request = wire.decode_request(_body(response_format={"type": kind, "json_schema": "x"}))
        assert request.response_format == ResponseFormat(type=kind)  # type: ignore[arg-type]


def test_assistant_refusal_is_accepted_as_its_text() -> None:
    """Assistant `refusal` content parts, and the message-level `refusal` of a replayed refused
    answer, are valid OpenAI input: canonical keeps them as the assistant's text."""
    part = {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]}
    field = {"role": "assistant", "content": None, "refusal": "No."}
    body = _body(messages=[{"role": "user", "content": "x"}, part, {"role": "user", "content": "y"}, field])
    check_request_body(body)
    request = wire.decode_request(body)
    assert [m.text() for m in request.messages] == ["x", "I can't help with that.", "y", "No."]
    upstream = wire.encode_request(request, "gpt-4.1", stream=False)
    assert [m["content"] for m in upstream["messages"][1::2]] == ["I can't help with that.", "No."]
    with pytest.raises(GatewayError) as caught:
        wire.decode_request(_body(messages=[{"role": "assistant", "content": [{"type": "refusal"}]}]))
    assert caught.value.param == "messages[0].content[0].refusal"


CANONICAL_FINISH = ("stop", "length", "tool_calls", "content_filter", "error")
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("reason", "with_calls", "expected"),
    [
        ("function_call", False, "tool_calls"),  # OpenAI's own legacy functions API
        ("eos", False, "stop"),  # Together
        ("eos_token", False, "stop"),  # TGI
        ("abort", False, "stop"),  # z.ai
        ("something_new", False, "stop"),
        ("eos", True, "tool_calls"),
        ("stop", True, "stop"),  # the known reasons are kept as they are
        ("length", True, "length"),
    ],
)
def test_finish_reason_is_canonical(reason: str, with_calls: bool, expected: str) -> None:
    """Upstream finish reasons are mapped, never passed through: canonical's is a closed set that
    other encoders (gemini's FINISH_REASONS_OUT) index with."""
    message: dict[str, Any] = {"content": "x", **({"tool_calls": [CALL]} if with_calls else {})}
    upstream = {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "message": message, "finish_reason": reason}]}
    assert wire.decode_response(upstream).choices[0].finish_reason == expected
    delta = {"tool_calls": [{"index": 0, **CALL}]} if with_calls else {}
    chunk = {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
    (finish,) = [e for e in wire.StreamDecoder().feed(SSEEvent(None, orjson.dumps(chunk))) if isinstance(e, Finish)]
    assert finish.reason == expected and expected in CANONICAL_FINISH


def _decode_chunks(choices: list[dict[str, Any]], *, finish: bool = True) -> list[StreamEvent]:
    """One chunk per choice dict, through a fresh decoder (and its finish() unless told not to)."""
    decoder = wire.StreamDecoder()
    chunks = [{"id": "c", "created": 1, "model": "m", "choices": [choice]} for choice in choices]
    events = [e for chunk in chunks for e in decoder.feed(SSEEvent(None, orjson.dumps(chunk)))]
    return events + (decoder.finish() if finish else [])


def test_parallel_tool_call_deltas_without_index_stay_apart() -> None:
    """Gemini's OpenAI endpoint, SGLang, mistral.rs send tool-call deltas without `index`: a new id
    opens the next call, a delta without an id (or with the same id again) continues the last."""
    no_index = [
        {"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": '{"tz":'}},
        ]}},
        {"index": 0, "delta": {"tool_calls": [{"function": {"arguments": '"JST"'}}]}},
        {"index": 0, "delta": {"tool_calls": [{"id": "call_b", "function": {"arguments": "}"}}]}},
        {"index": 1, "delta": {"tool_calls": [{"id": "call_c", "function": {"name": "f", "arguments": "{}"}}]}},
        {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
        {"index": 1, "delta": {}, "finish_reason": "stop"},
    ]  # fmt: skip
    events = _decode_chunks(no_index)
    calls = [(e.index, e.tool_index, e.id, e.arguments) for e in events if isinstance(e, ToolCallDelta)]
    assert calls == [
        (0, 0, "call_a", '{"city":"Paris"}'), (0, 1, "call_b", '{"tz":'), (0, 1, None, '"JST"'), (0, 1, "call_b", "}"),
        (1, 0, "call_c", "{}"),
    ]  # fmt: skip
    assert [e for e in events if isinstance(e, Finish)] == [Finish(reason="tool_calls"), Finish(reason="stop", index=1)]


def test_inline_file_gets_a_filename() -> None:
    """OpenAI answers a file part with file_data but no filename with a 400 ("Missing required
    parameter: 'messages[0].content[1].file.file_id'"); Gemini inlineData and Anthropic documents
    without a title decode to exactly that. The name comes from the media type."""
    for part, filename in [
        (FilePart(media_type="application/pdf", data="JVBERi0xLjQK"), "document.pdf"),
        (FilePart(data="JVBERi0xLjQK"), "document.pdf"),  # the media type it is sent with
        (FilePart(media_type="text/csv", data="YSxiCg=="), "document.csv"),
        (FilePart(media_type="application/x-unheard-of", data="AA=="), "document"),
        (FilePart(media_type="application/pdf", data="JVBERi0xLjQK", filename="q3.pdf"), "q3.pdf"),
    ]:
        request = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="Summarise"), part])])
        body = wire.encode_request(request, "gpt-4.1", stream=False)
        check_request_body(body)
        assert body["messages"][0]["content"][1]["file"]["filename"] == filename
    by_id = ChatRequest(model="m", messages=[Message(role="user", content=[FilePart(file_id="file-abc")])])
    file = wire.encode_request(by_id, "gpt-4.1", stream=False)["messages"][0]["content"][0]
    assert file == {"type": "file", "file": {"file_id": "file-abc"}}  # a stored file needs no name


def test_file_by_url_is_a_400_naming_the_part() -> None:
    """Chat completions takes files inline or by id only: a URL-only file is refused here, not sent
    as an empty `file` object."""
    part = FilePart(url="https://example.com/report.pdf", media_type="application/pdf")
    messages = [Message(role="system", content=[TextPart(text="Be brief.")]),
                Message(role="user", content=[TextPart(text="Summarise"), part])]  # fmt: skip
    with pytest.raises(GatewayError) as caught:
        wire.encode_request(ChatRequest(model="m", messages=messages), "gpt-4.1", stream=False)
    error = caught.value
    assert (error.kind, error.status, error.param) == (ErrorKind.INVALID_REQUEST, 400, "messages[1].content[1]")
    assert "'messages[1].content[1]'" in error.message


def test_refusal_is_carried_as_text_and_finishes_as_content_filter() -> None:
    """OpenAI puts a refused answer in `refusal` (content null) and says `stop`: canonical has no
    refusal, so it becomes the answer's text, finished as `content_filter`."""
    refused = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    upstream = {"id": "c", "created": 1, "model": "m", "choices": [
        {"index": 0, "message": refused, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "Sure.", "refusal": None}, "finish_reason": "stop"},
        {"index": 2, "message": refused, "finish_reason": "length"},
    ]}  # fmt: skip
    response = wire.decode_response(upstream)
    assert [(c.message.text(), c.finish_reason) for c in response.choices] == [
        ("I can't help with that.", "content_filter"), ("Sure.", "stop"), ("I can't help with that.", "length"),
    ]  # fmt: skip
    client = wire.encode_response(response)
    check_response_body(client)
    assert client["choices"][0]["message"]["content"] == "I can't help with that."

    events = _decode_chunks([
        {"index": 0, "delta": {"role": "assistant", "content": None, "refusal": ""}},
        {"index": 0, "delta": {"refusal": "I can't"}},
        {"index": 0, "delta": {"refusal": " help with that."}},
        {"index": 0, "delta": {}, "finish_reason": "stop"},
    ])  # fmt: skip
    assert events[1:] == [TextDelta(text="I can't"), TextDelta(text=" help with that."), Finish(reason="content_filter")]


def test_stream_encoder_without_start_still_sends_valid_chunks() -> None:
    """A stream that failed before its StreamStart: finish() (and any delta) is still whole JSON
    with a made-up id, the current time and no model, never a broken chunk."""
    for include_usage, events in [(True, []), (False, [TextDelta(text="Hi"), Finish(reason="stop")])]:
        raw = encode_events(events, include_usage=include_usage)  # type: ignore[arg-type]
        payloads = frames(raw)
        assert payloads[-1] == b"[DONE]" and len(payloads) == 1 + (1 if include_usage else 2)
        for payload in payloads[:-1]:
            chunk = orjson.loads(payload)
            check_chunk(chunk)
            assert chunk["id"].startswith("chatcmpl-gen") and chunk["model"] == ""
            assert isinstance(chunk["created"], int) and chunk["created"] > 1_700_000_000
        if include_usage:
            assert orjson.loads(payloads[0])["choices"] == [] and orjson.loads(payloads[0])["usage"]["total_tokens"] == 0
    assert frames(encode_events([], include_usage=True, model="my-endpoint"))[0].count(b'"model":"my-endpoint"') == 1


def test_stream_decoder_finishes_choices_cut_off_before_their_finish_reason() -> None:
    """Like the Anthropic and Gemini decoders: a stream that ends without a choice's finish_reason
    still ends that choice (`tool_calls` if it made calls), once; finished choices are left alone."""
    events = _decode_chunks([
        {"index": 0, "delta": {"content": "Hello"}},
        {"index": 1, "delta": {"tool_calls": [{"index": 0, **CALL}]}},
        {"index": 2, "delta": {"content": "Done"}, "finish_reason": "length"},
        {"index": 2, "delta": {}, "finish_reason": "length"},  # repeated: still one Finish
    ])  # fmt: skip
    assert [e for e in events if isinstance(e, Finish)] == [
        Finish(reason="length", index=2), Finish(reason="stop", index=0), Finish(reason="tool_calls", index=1),
    ]  # fmt: skip
    decoder = wire.StreamDecoder()
    decoder.feed(SSEEvent(None, b'{"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}'))
    assert decoder.finish() == [Finish(reason="stop")]
    assert decoder.finish() == []  # and only once
