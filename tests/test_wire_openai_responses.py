"""OpenAI Responses wire format.

Golden files in tests/golden/openai_responses/: request in -> canonical out, canonical response ->
Response object, canonical events -> SSE. Regenerate with AIGW_UPDATE_GOLDEN=1, then read the diff:
a golden file is only as right as the eye that checked it. The official `openai` SDK's types then
validate every event and Response the encoders produce, so the goldens cannot drift from the API.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import orjson
import pytest

from aigw.canonical import (
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
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
    UsageEvent,
)
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.http.sse import SSEParser
from tests.goldens import Goldens
from aigw.wire import openai_responses as wire
from aigw.wire import openai_responses_stream as wire_stream

openai = pytest.importorskip("openai")
from openai.types.responses import Response, ResponseStreamEvent  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402

STREAM_EVENT = TypeAdapter(ResponseStreamEvent)
NOW = 1760000100


_goldens = Goldens("openai_responses")
golden_json, golden_bytes, load = _goldens.json, _goldens.bytes, _goldens.load


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = iter(range(1, 1000))
    for module in (wire, wire_stream):
        monkeypatch.setattr(module, "new_id", lambda prefix: f"{prefix}gen{next(counter)}")
        monkeypatch.setattr(module, "now", lambda: NOW)


def frames(data: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    return [(e.event, orjson.loads(e.data)) for e in SSEParser().feed(data) if e.data != b"[DONE]"]


def encode_stream(body: dict[str, Any], events: list[StreamEvent], **options: Any) -> bytes:
    encoder = wire_stream.StreamEncoder(body, **options)
    return b"".join(encoder.encode(e) for e in events) + encoder.finish()


def stream_case(name: str) -> tuple[dict[str, Any], list[StreamEvent]]:
    case = load(f"{name}.in.json")
    return case["body"], msgspec.convert(case["events"], list[StreamEvent])


# --- requests ------------------------------------------------------------------------------------

# decode_codex_namespace.in.json: a request Codex CLI 0.171.0 sent (`codex exec -m gpt-5.1-codex`, recorded
# by a local server standing in for OpenAI; long texts cut), its second turn after the model called
# multi_agent_v1's close_agent: the namespace tool, and the call sent back with its `namespace`.
DECODE_GOLDENS = [
    "decode_text", "decode_multi_turn", "decode_media", "decode_custom_tool", "decode_codex", "decode_codex_namespace",
]  # fmt: skip


@pytest.mark.parametrize("name", DECODE_GOLDENS)
def test_decode_request_golden(name: str) -> None:
    request = wire.decode_request(load(f"{name}.in.json"))
    golden_json(f"{name}.out.json", msgspec.to_builtins(request))


def test_decode_merges_an_assistant_turn_and_its_parallel_calls() -> None:
    request = wire.decode_request(load("decode_multi_turn.in.json"))
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool", "tool", "assistant", "user"]
    turn = request.messages[2]
    assert turn.text() == "Checking both."
    assert [(c.id, c.arguments) for c in turn.tool_calls] == [
        ("call_paris", '{"city":"Paris"}'),
        ("call_tokyo", '{"city":"Tokyo"}'),
    ]
    assert [m.tool_call_id for m in request.messages[3:5]] == ["call_paris", "call_tokyo"]
    assert [t.name for t in request.tools] == ["get_weather", "get_time"]  # web_search dropped
    assert request.tool_choice == ToolChoice(mode="tool", name="get_weather")
    assert request.parallel_tool_calls is False and request.stream and request.include_usage


def test_decode_codex_request() -> None:
    request = wire.decode_request(load("decode_codex.in.json"))
    system, developer, *_ = request.messages
    assert system.text().startswith("You are Codex") and developer.role == "system"
    first_turn, second_turn = (m for m in request.messages if m.role == "assistant")
    # An OpenAI blob stays opaque, and OpenAI's; the gateway's own token gives back the signature it
    # carried (these tokens predate signers: the reasoning's taken for Anthropic's, the call's Gemini's).
    assert first_turn.reasoning == [
        Reasoning(
            text="**Inspecting the tests**\n\nI should list the files first.",
            redacted="gAAAAABo-openai-opaque-blob==",
            signer="openai_responses",
        )
    ]
    assert second_turn.reasoning == [
        Reasoning(text="Now read the failing test.", signature="EqQBCkgIARABGAIiQL-sig", signer="anthropic")
    ]
    assert second_turn.tool_calls == [
        ToolCall(
            id="call_shell_2", name="shell_command", arguments='{"command":"cat tests/test_x.py"}',
            signature="gemini-thought-sig", signer="gemini",
        )
    ]  # fmt: skip
    # The unanswered call followed by more user input is kept as Codex sent it.
    assert request.messages[-1].role == "user" and request.messages[-2] is second_turn
    assert [t.name for t in request.tools] == ["shell_command", "apply_patch"]
    assert request.reasoning_effort == "medium" and request.max_tokens is None
    assert request.extra["store"] is False and request.extra["include"] == ["reasoning.encrypted_content"]
    assert request.extra["prompt_cache_key"] == "019a3c1e-7c42-7d10-b1f2-6a2f0c8e9d11"
    assert request.extra_wire == wire.WIRE


def test_custom_tool_calls_map_to_input_arguments() -> None:
    request = wire.decode_request(load("decode_custom_tool.in.json"))
    patch = request.tools[0]
    assert patch.parameters == wire.CUSTOM_TOOL_PARAMETERS
    assert patch.description is not None and "lark grammar:\nstart: begin_patch" in patch.description
    call = request.messages[1].tool_calls[0]
    assert orjson.loads(call.arguments) == {"input": "*** Begin Patch\n*** Add File: README.md\n+# Hello\n*** End Patch\n"}
    assert wire.custom_input(call.arguments) == orjson.loads(call.arguments)["input"]
    assert wire.custom_input("not json") == "not json"
    assert request.tool_choice == ToolChoice(mode="tool", name="apply_patch")


@pytest.mark.parametrize(
    ("choice", "expected", "names"),
    [
        ("none", ToolChoice(mode="none"), ["a", "b"]),
        ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "b"}]}, ToolChoice(mode="required"), ["b"]),
    ],
)
def test_tool_choice(choice: Any, expected: ToolChoice | None, names: list[str]) -> None:
    tools = [{"type": "function", "name": "a"}, {"type": "function", "name": "b"}]
    request = wire.decode_request({"model": "m", "input": "x", "tools": tools, "tool_choice": choice})
    assert request.tool_choice == expected
    assert [t.name for t in request.tools] == names


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "input": "hi", **fields}


def _items(*items: Any, **fields: Any) -> dict[str, Any]:
    return _body(input=list(items), **fields)


USER = {"role": "user", "content": "hi"}
CALL = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"input": "x"}, "model"),
        ({"model": "m"}, "input"),
        (_body(input=None), "input"),
        (_body(input=5), "input"),
        (_body(model=7), "model"),
        (_body(instructions=["x"]), "instructions"),
        (_body(tools={}), "tools"),
        (_body(tool_choice=5), "tool_choice"),
        (_body(stream="yes"), "stream"),
        (_body(store="no"), "store"),
        (_body(background=1), "background"),
        (_body(parallel_tool_calls="true"), "parallel_tool_calls"),
        (_body(max_output_tokens=True), "max_output_tokens"),
        (_body(max_output_tokens=1.5), "max_output_tokens"),
        (_body(max_tool_calls="3"), "max_tool_calls"),
        (_body(temperature="hot"), "temperature"),
        (_body(top_p=True), "top_p"),
        (_body(text="json"), "text"),
        (_body(reasoning="high"), "reasoning"),
        (_body(metadata=[]), "metadata"),
        (_body(previous_response_id=5), "previous_response_id"),
        (_body(tools=["x"]), "tools[0]"),
        (_body(tools=[{"name": "f"}]), "tools[0].type"),
        (_body(tools=[{"type": "function"}]), "tools[0].name"),
        (_body(tools=[{"type": "function", "name": "get weather"}]), "tools[0].name"),
        (_body(tools=[{"type": "web_search"}, {"type": "custom", "name": "x" * 65}]), "tools[1].name"),
        (_items("hi"), "input[0]"),
        (_items({"content": "hi"}), "input[0].type"),
        (_items({"type": 5}), "input[0].type"),
        (_items({"type": "message", "role": "tool", "content": "x"}), "input[0].role"),
        (_items({"role": "user"}), "input[0].content"),
        (_items(USER, {"role": "user", "content": 5}), "input[1].content"),
    ],
)
def test_validate_request_400_names_the_field(body: Any, param: str | None) -> None:
    for check in (wire.validate_request, wire.decode_request):
        with pytest.raises(GatewayError) as caught:
            check(body)
        assert caught.value.kind is ErrorKind.INVALID_REQUEST
        assert (caught.value.status, caught.value.param) == (400, param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_items(USER, {"type": "function_call_output", "call_id": "call_zzz", "output": "x"}), "input[1].call_id"),
        (_items({"type": "function_call_output", "call_id": "call_1", "output": "x"}, CALL), "input[0].call_id"),
        (_items(USER, {"type": "custom_tool_call_output", "call_id": "call_zzz", "output": "x"}), "input[1].call_id"),
        (_body(previous_response_id="resp_1"), "previous_response_id"),
        (_body(conversation="conv_1"), "conversation"),
        (_items({"type": "item_reference", "id": "msg_1"}), "input[0].type"),
        (_items({"type": "mystery_item"}), "input[0].type"),
        (_items({"role": "user", "content": [{"type": "input_audio"}]}), "input[0].content[0].type"),
        (_items({"role": "user", "content": [{"type": "input_text"}]}), "input[0].content[0].text"),
        (_items({"role": "user", "content": [{"type": "input_image", "detail": "low"}]}), "input[0].content[0].image_url"),
        (_items({"role": "user", "content": [{"type": "input_file", "filename": "a.pdf"}]}), "input[0].content[0].file_data"),
        (_items({"type": "function_call", "name": "f", "arguments": "{}"}), "input[0].call_id"),
        (_items({"type": "custom_tool_call", "call_id": "c", "name": "f"}), "input[0].input"),
        (_items(CALL, {"type": "function_call_output", "call_id": "call_1"}), "input[1].output"),
        (_items(CALL, {"type": "function_call_output", "call_id": "call_1", "output": 5}), "input[1].output"),
        (_items({"type": "reasoning", "summary": [], "encrypted_content": "aigw:v1:!!!"}, CALL), "input[0].encrypted_content"),
        (_items({"type": "reasoning", "summary": [{"type": "summary_text"}]}), "input[0].summary[0].text"),
        (_body(tool_choice="sometimes"), "tool_choice"),
        (_body(tool_choice={"type": "function"}), "tool_choice.name"),
        (_body(tool_choice={"name": "f"}), "tool_choice.type"),
        (_body(text={"format": {"type": "xml"}}), "text.format.type"),
        (_body(reasoning={"effort": 5}), "reasoning.effort"),
        (_body(tools=[{"type": "function", "name": "f", "parameters": "{}"}]), "tools[0].parameters"),
        # A forced call no canonical tool can answer: hosted tools are dropped for this destination.
        (_body(tools=[{"type": "web_search"}], tool_choice={"type": "web_search"}), "tool_choice.type"),
        (_body(tools=[{"type": "web_search"}], tool_choice="required"), "tool_choice"),
        (_body(tools=[{"type": "function", "name": "f"}], tool_choice={"type": "function", "name": "g"}), "tool_choice"),
        (_body(tools=[{"type": "web_search"}, {"type": "function", "name": "f"}],
               tool_choice={"type": "allowed_tools", "mode": "required", "tools": [{"type": "web_search"}]}), "tool_choice"),
    ],
)
def test_decode_request_400_names_the_field(body: Any, param: str) -> None:
    wire.validate_request(body)  # fine to pass through: the destination judges these
    with pytest.raises(GatewayError) as caught:
        wire.decode_request(body)
    assert (caught.value.kind, caught.value.status, caught.value.param) == (ErrorKind.INVALID_REQUEST, 400, param)


def test_orphan_output_400_names_the_call_id() -> None:
    body = _items(USER, {"type": "function_call_output", "id": "fco_1", "call_id": "call_zzz", "output": "x"})
    with pytest.raises(GatewayError) as caught:
        wire.decode_request(body)
    assert "call_zzz" in caught.value.message
    with pytest.raises(GatewayError) as caught:
        wire.decode_request(_body(previous_response_id="resp_1"))
    assert caught.value.message == "previous_response_id needs a stored response, which this destination does not keep."


# --- responses -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["response_tools", "response_length", "response_namespace"])
def test_encode_response_golden(name: str, fixed_ids: None) -> None:
    case = load(f"{name}.in.json")
    body = wire.encode_response(msgspec.convert(case["response"], ChatResponse), case["body"])
    golden_json(f"{name}.out.json", body)
    parsed = Response.model_validate(body)
    assert parsed.object == "response"
    assert "output_text" not in body  # an SDK property, not a wire field


def test_encode_response_shapes(fixed_ids: None) -> None:
    out = load("response_tools.out.json")
    assert out["id"] == "resp_msg_01XyZ" and out["status"] == "completed" and out["model"] == "claude-sonnet-4-5"
    assert [i["type"] for i in out["output"]] == [
        "reasoning", "reasoning", "message", "function_call", "custom_tool_call", "function_call", "reasoning",
    ]  # fmt: skip
    assert out["output"][4]["input"] == "*** Begin Patch\n*** End Patch\n"
    assert out["usage"] == {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 150},
        "output_tokens": 80,
        "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 1280,
    }
    length = load("response_length.out.json")
    assert (length["status"], length["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    assert length["output"][0]["status"] == "incomplete" and length["id"] == "resp_chatcmpl-abc123"
    assert Response.model_validate(length).output_text == "one two three four five"


def test_reasoning_and_signatures_round_trip(fixed_ids: None) -> None:
    """What the gateway emits, sent back as input, decodes to the canonical message it came from."""
    case = load("response_tools.in.json")
    response = msgspec.convert(case["response"], ChatResponse)
    output = wire.encode_response(response, case["body"])["output"]
    outputs = [
        {"type": "function_call_output", "call_id": i["call_id"], "output": "ok"}
        if i["type"] == "function_call"
        else {"type": "custom_tool_call_output", "call_id": i["call_id"], "output": "ok"}
        for i in output
        if i["type"] in ("function_call", "custom_tool_call")
    ]
    request = wire.decode_request({**case["body"], "input": [{"role": "user", "content": "go"}, *output, *outputs]})
    original = response.choices[0].message
    (turn,) = (m for m in request.messages if m.role == "assistant")
    assert turn.reasoning == original.reasoning
    assert turn.tool_calls == original.tool_calls
    assert turn.text() == original.text()


def test_reasoning_token_scheme() -> None:
    assert wire.encode_reasoning_token("anthropic") is None
    assert wire.encode_reasoning_token(None, "sig", "data", {"call_1": "s1"}) is None  # nobody knows who signed it
    # OpenAI's own encrypted reasoning stays as OpenAI issued it, and comes back as OpenAI's.
    assert wire.encode_reasoning_token("openai_responses", None, "gAAAA-openai") == "gAAAA-openai"
    assert wire.decode_reasoning_token("gAAAA-openai", "x") == wire.ReasoningToken("openai_responses", None, "gAAAA-openai")
    for signer, signature, redacted, calls in [
        ("anthropic", "sig", None, None),
        ("anthropic", "", None, None),
        ("anthropic", None, "data", None),  # another vendor's encrypted reasoning is sealed, signer inside
        ("openai_responses", None, "aigw:v1:looks-like-ours", None),
        ("gemini", "sig", "data", {"call_1": "s1"}),
        ("gemini", None, None, {"call_1": "s1"}),
    ]:
        token = wire.encode_reasoning_token(signer, signature, redacted, calls)
        assert token is not None and token.startswith("aigw:v1:")
        call_signatures = {call_id: (signer, s) for call_id, s in (calls or {}).items()}
        assert wire.decode_reasoning_token(token, "x") == (signer, signature, redacted, call_signatures)
    with pytest.raises(GatewayError):
        wire.decode_reasoning_token("aigw:v1:WyJub3QgYW4gb2JqZWN0Il0", "x")  # ["not an object"]


def test_reasoning_tokens_issued_before_signers() -> None:
    """A token without "w": its calls' signatures are Gemini's (no other vendor signs calls), its
    reasoning's taken for Anthropic's, which is where the gateway sent them when it issued them."""
    token = "aigw:v1:" + base64.urlsafe_b64encode(b'{"s":"EqQB","r":"Emwk","c":{"call_1":"R2Vt"}}').rstrip(b"=").decode()
    assert wire.decode_reasoning_token(token, "x") == ("anthropic", "EqQB", "Emwk", {"call_1": ("gemini", "R2Vt")})


def test_signatures_of_unknown_origin_are_left_out_and_each_signer_gets_its_carrier(fixed_ids: None) -> None:
    message = Message(
        role="assistant",
        reasoning=[Reasoning(text="Whose?", signature="x"), Reasoning(text="Claude's.", signature="EqQB", signer="anthropic")],
        tool_calls=[
            ToolCall(id="call_1", name="f", arguments="{}", signature="R2Vt", signer="gemini"),
            ToolCall(id="call_2", name="f", arguments="{}", signature="other", signer="vendor_x"),
            ToolCall(id="call_3", name="f", arguments="{}", signature="unknown-origin"),
        ],
    )
    response = ChatResponse(id="r", model="m", created=0, choices=[Choice(message=message)])
    output = wire.encode_response(response, {"model": "m", "input": "hi"})["output"]
    assert "encrypted_content" not in output[0] and output[0]["summary"][0]["text"] == "Whose?"
    assert wire.decode_reasoning_token(output[1]["encrypted_content"], "x") == ("anthropic", "EqQB", None, {})
    carriers = [wire.decode_reasoning_token(item["encrypted_content"], "x") for item in output[5:]]
    assert [c.calls for c in carriers] == [{"call_1": ("gemini", "R2Vt")}, {"call_2": ("vendor_x", "other")}]
    # and back: each call with its own signer, the unknown one with none
    request = wire.decode_request({"model": "m", "input": [{"role": "user", "content": "hi"}, *output]})
    assert [(c.signature, c.signer) for c in request.messages[1].tool_calls] == [
        ("R2Vt", "gemini"), ("other", "vendor_x"), (None, None),
    ]  # fmt: skip


# --- streams -------------------------------------------------------------------------------------

STREAM_GOLDENS = ["stream_text", "stream_reasoning", "stream_tools", "stream_length", "stream_namespace"]


@pytest.mark.parametrize("name", STREAM_GOLDENS)
def test_stream_encoder_golden(name: str, fixed_ids: None) -> None:
    body, events = stream_case(name)
    golden_bytes(f"{name}.sse", encode_stream(body, events))


@pytest.mark.parametrize("name", STREAM_GOLDENS)
def test_stream_every_event_validates_with_the_sdk(name: str) -> None:
    """Framing (`event:` equals the data's type, sequence numbers 0, 1, ...), every event a valid
    ResponseStreamEvent, the final Response valid, its output text the streamed text."""
    body, events = stream_case(name)
    parsed = frames(encode_stream(body, events))
    assert [data["sequence_number"] for _, data in parsed] == list(range(len(parsed)))
    assert all(event == data["type"] for event, data in parsed)
    typed = [STREAM_EVENT.validate_python(data) for _, data in parsed]
    assert [t.type for t in typed[:2]] == ["response.created", "response.in_progress"]
    assert typed[-1].type in ("response.completed", "response.incomplete")
    final = Response.model_validate(parsed[-1][1]["response"])
    streamed = "".join(t.delta for t in typed if t.type == "response.output_text.delta")
    assert final.output_text == streamed
    # The final response lists exactly the items output_item.done announced, in output order.
    done = [(t.output_index, t.item.model_dump()) for t in typed if t.type == "response.output_item.done"]
    assert [item for _, item in sorted(done, key=lambda entry: entry[0])] == [i.model_dump() for i in final.output]
    assert [index for index, _ in done] == sorted(index for index, _ in done)


def test_stream_tools_structure(fixed_ids: None) -> None:
    body, events = stream_case("stream_tools")
    parsed = [data for _, data in frames(encode_stream(body, events))]
    final = parsed[-1]["response"]
    assert final["status"] == "completed"
    calls = [i for i in final["output"] if i["type"] in ("function_call", "custom_tool_call")]
    assert [(c["type"], c["call_id"]) for c in calls] == [
        ("function_call", "call_paris"),
        ("function_call", "call_tokyo"),
        ("custom_tool_call", "call_patch"),
        ("function_call", "call_time"),
    ]
    assert [c.get("arguments", c.get("input")) for c in calls] == [
        '{"city":"Paris"}', '{"city":"Tokyo"}', "*** Begin Patch\n*** End Patch\n", "{}",
    ]  # fmt: skip
    # Interleaved argument deltas land in their own items.
    deltas = [(d["output_index"], d["delta"]) for d in parsed if d["type"] == "response.function_call_arguments.delta"]
    assert deltas == [(2, '{"city":'), (1, '{"city":"Paris"}'), (2, '"Tokyo"}'), (4, "{}")]
    custom = [d for d in parsed if d["type"].startswith("response.custom_tool_call_input")]
    assert [d["type"] for d in custom] == ["response.custom_tool_call_input.delta", "response.custom_tool_call_input.done"]
    # The Gemini signature of call_time rides in a last reasoning item, and comes back from it.
    carrier = final["output"][-1]
    assert carrier["type"] == "reasoning" and carrier["summary"] == []
    assert wire.decode_reasoning_token(carrier["encrypted_content"], "x").calls == {"call_time": ("gemini", "gemini-thought-sig")}
    assert final["tools"] == wire.echoed_tools(body["tools"]) and all("strict" in t for t in final["tools"] if t["type"] == "function") and final["tool_choice"] == "required"


def test_stream_reasoning_round_trip(fixed_ids: None) -> None:
    body, events = stream_case("stream_reasoning")
    final = frames(encode_stream(body, events))[-1][1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "reasoning", "reasoning", "message"]
    request = wire.decode_request({**body, "input": [{"role": "user", "content": "q"}, *final["output"]]})
    assert request.messages[-1].reasoning == [
        Reasoning(text="Simple arithmetic.", signature="sig-first", signer="anthropic"),
        Reasoning(text="Double-check: 4."),
        Reasoning(redacted="opaque-redacted-bytes", signer="anthropic"),
    ]
    assert request.messages[-1].text() == "2 + 2 = 4."
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 18}


def test_stream_length_is_incomplete(fixed_ids: None) -> None:
    body, events = stream_case("stream_length")
    parsed = [data for _, data in frames(encode_stream(body, events))]
    last = parsed[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete"
    assert last["response"]["completed_at"] == NOW


def test_stream_done_marker_and_no_start_event() -> None:
    body = {"model": "m", "input": "x"}
    without = encode_stream(body, [TextDelta(text="hi")])
    assert not without.endswith(b"data: [DONE]\n\n")
    with_marker = encode_stream(body, [TextDelta(text="hi")], done_marker=True)
    assert with_marker.endswith(b"\n\ndata: [DONE]\n\n") and with_marker.count(b"[DONE]") == 1
    assert frames(with_marker)[-1][1]["type"] == "response.completed"
    parsed = frames(with_marker)
    assert parsed[0][1]["type"] == "response.created" and parsed[0][1]["response"]["id"].startswith("resp_")
    assert parsed[0][1]["response"]["model"] == "m"  # no StreamStart: the requested model


def test_stream_accumulated_by_the_openai_sdk() -> None:
    """The SDK's stream helper checks lifecycle identity, item order and completion as it goes."""
    httpx = pytest.importorskip("httpx2")
    body, _ = stream_case("stream_tools")
    responses = [encode_stream(*stream_case(name)) for name in ("stream_tools", "stream_reasoning")]

    def handler(request: Any) -> Any:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=responses.pop(0))

    client = openai.OpenAI(
        api_key="test", base_url="http://gateway.test/v1", max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )  # fmt: skip
    with client.responses.stream(model="my-endpoint", input="x", tools=body["tools"]) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert final.output_text == "Checking both."
    assert [getattr(i, "call_id", None) for i in final.output[1:5]] == ["call_paris", "call_tokyo", "call_patch", "call_time"]
    with client.responses.stream(model="my-endpoint", input="x") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == "2 + 2 = 4."
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 32


# --- errors --------------------------------------------------------------------------------------


def test_stream_error_event_then_failed(fixed_ids: None) -> None:
    encoder = wire_stream.StreamEncoder({"model": "m", "input": "x"})
    out = encoder.encode(StreamStart(id="chatcmpl-1", model="up", created=1))
    out += encoder.encode(TextDelta(text="partial"))
    out += encoder.encode(ReasoningDelta(text="never closed"))
    out += encoder.error(GatewayError(ErrorKind.RATE_LIMIT, "Slow down.", status=429))
    parsed = [data for _, data in frames(out)]
    typed = [STREAM_EVENT.validate_python(p) for p in parsed]
    error, failed = parsed[-2:]
    assert error == {"type": "error", "sequence_number": len(parsed) - 2, "code": "rate_limit_exceeded", "message": "Slow down.", "param": None}
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "rate_limit_exceeded", "message": "Slow down."}
    assert [i["type"] for i in failed["response"]["output"]] == ["message"]  # the finished item only
    assert failed["response"]["usage"] is not None and typed[-1].type == "response.failed"
    # Before anything started, the stream still opens properly first; other kinds are server errors.
    early = wire_stream.StreamEncoder({"model": "m", "input": "x"}, done_marker=True).error(invalid("Blocked by a guardrail.", "input"))
    parsed = [data for _, data in frames(early)]
    assert [p["type"] for p in parsed] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert (parsed[2]["code"], parsed[2]["param"]) == ("invalid_request_error", "input")
    assert parsed[3]["response"]["error"]["code"] == "invalid_prompt"
    assert early.endswith(b"data: [DONE]\n\n")
    upstream = wire_stream.StreamEncoder({"model": "m", "input": "x"}).error(GatewayError(ErrorKind.UPSTREAM_ERROR, "boom"))
    failed = frames(upstream)[-1][1]
    assert failed["response"]["error"]["code"] == "server_error"
    STREAM_EVENT.validate_python(failed)


@pytest.mark.parametrize(
    ("kind", "status", "error_type", "wire_status"),
    [
        (ErrorKind.INVALID_REQUEST, 400, "invalid_request_error", 400),
        (ErrorKind.RATE_LIMIT, 429, "rate_limit_error", 429),
        (ErrorKind.OVERLOADED, 529, "server_error", 502),
        (ErrorKind.UPSTREAM_TIMEOUT, 504, "server_error", 504),
    ],
)
def test_encode_error(kind: ErrorKind, status: int, error_type: str, wire_status: int) -> None:
    error = GatewayError(kind, "went wrong", status=status, param="input")
    body = wire.encode_error(error)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["type"], body["error"]["param"], body["error"]["message"]) == (error_type, "input", "went wrong")
    assert wire.error_status(error) == wire_status


# --- usage ---------------------------------------------------------------------------------------


def test_usage_from_event() -> None:
    usage = {
        "input_tokens": 50,
        "input_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 5},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 12},
        "total_tokens": 70,
    }
    expected = Usage(input_tokens=50, output_tokens=20, cached_input_tokens=40, cache_creation_input_tokens=5, reasoning_tokens=12)
    completed = {"type": "response.completed", "sequence_number": 9, "response": {"object": "response", "usage": usage}}
    assert wire.usage_from_event(orjson.dumps(completed)) == expected
    assert wire.usage_from_event(orjson.dumps({"object": "response", "id": "resp_1", "usage": usage})) == expected
    assert wire.usage_from_event(orjson.dumps({"type": "response.output_text.delta", "delta": "x"})) is None
    assert wire.usage_from_event(b"[DONE]") is None
    assert wire.usage_from_event(orjson.dumps({"object": "response", "usage": None})) is None
    assert wire.encode_usage(expected) == usage


def test_encoded_usage_round_trips_through_the_stream(fixed_ids: None) -> None:
    usage = Usage(input_tokens=7, output_tokens=3, cached_input_tokens=2)
    events: list[StreamEvent] = [StreamStart(id="x", model="m", created=1), TextDelta(text="a"), Finish(reason="stop"), UsageEvent(usage=usage)]
    last = frames(encode_stream({"model": "m", "input": "x"}, events))[-1][1]
    got = wire.usage_from_event(orjson.dumps(last))
    assert got == Usage(input_tokens=7, output_tokens=3, cached_input_tokens=2, cache_creation_input_tokens=0, reasoning_tokens=0)


def test_only_choice_zero_and_empty_response(fixed_ids: None) -> None:
    empty = ChatResponse(id="", model="", created=5, choices=[])
    out = wire.encode_response(empty, {"model": "my-endpoint", "input": "x"})
    assert out["id"].startswith("resp_") and out["output"] == [] and out["model"] == "my-endpoint"
    Response.model_validate(out)
    two = ChatResponse(
        id="r", model="m", created=5,
        choices=[
            Choice(index=0, message=Message(role="assistant", content=[TextPart(text="first")]), finish_reason="stop"),
            Choice(index=1, message=Message(role="assistant", content=[TextPart(text="second")]), finish_reason="stop"),
        ],
    )  # fmt: skip
    assert Response.model_validate(wire.encode_response(two, {"model": "m", "input": "x"})).output_text == "first"
    encoder = wire_stream.StreamEncoder({"model": "m", "input": "x"})
    assert encoder.encode(ToolCallDelta(tool_index=0, id="c", name="f", index=1)) == b""
