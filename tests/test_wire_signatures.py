"""Signed reasoning across wires (see `aigw.canonical`): a vendor's signature, shown to a client of
another wire and sent back by it, reaches that vendor again as it was, and never another vendor
(which refuses the turn: "Invalid `signature` in `thinking` block").

Each test runs the real translations in a row: an upstream's answer decoded, encoded for a client
(and read by the client's own SDK where it holds signatures as a type of its own), the client's next
request decoded, and that encoded for each upstream.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from google.genai import types as genai

from aigw.canonical import ChatRequest, ChatResponse, Choice, Message, Reasoning, StreamEvent, TextPart, ToolCall
from aigw.http.sse import SSEEvent, SSEParser
from aigw.wire import anthropic, gemini, gemini_stream, openai_responses

CLAUDE = "claude-sonnet-4-5"
GEMINI_3 = "gemini-3-pro-preview"

GEMINI_ANSWER = {
    "candidates": [{
        "content": {"role": "model", "parts": [
            {"text": "The user wants a lookup.", "thought": True, "thoughtSignature": "Q2lRQlZLaGtMdVdQ"},
            {"text": "Looking."},
            {"functionCall": {"id": "call_1", "name": "lookup", "args": {"q": "a"}}, "thoughtSignature": "U2lnUGFyaXM="},
        ]},
        "finishReason": "STOP",
    }],
    "responseId": "r1",
    "modelVersion": GEMINI_3,
}  # fmt: skip
ANTHROPIC_ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": CLAUDE,
    "content": [
        {"type": "thinking", "thinking": "The user wants a lookup.", "signature": "EqQBCkYIBxgCKkBsigR"},
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "a"}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 10, "output_tokens": 20},
}
GEMINI_SIGNATURES = ("Q2lRQlZLaGtMdVdQ", "U2lnUGFyaXM=")
ANTHROPIC_SIGNATURE = "EqQBCkYIBxgCKkBsigR"
ARGUMENTS = '{"q":"a"}'


def _response(message: Message) -> ChatResponse:
    return ChatResponse(id="r", model="m", created=0, choices=[Choice(message=message)])


# --- clients: an answer shown, the next request decoded --------------------------------------------


def anthropic_client(shown: list[dict[str, Any]]) -> Message:
    """An Anthropic client's next turn: the answer's blocks as it got them, the tool's result after."""
    body = {"model": "m", "max_tokens": 100, "messages": [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": shown},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "found"}]},
    ]}  # fmt: skip
    return anthropic.decode_request(body).messages[1]


def gemini_client(parts: list[dict[str, Any]]) -> Message:
    """A Gemini client's next turn: the model's parts as Google's SDK holds them, then the function's
    response. The SDK reads thoughtSignature as bytes and writes it back as base64."""
    content = genai.Content.model_validate({"role": "model", "parts": parts}).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    answer = {"functionResponse": {"id": "call_1", "name": "lookup", "response": {"result": "found"}}}
    question = {"role": "user", "parts": [{"text": "look it up"}]}
    body = {"contents": [question, content, {"role": "user", "parts": [answer]}]}
    return gemini.decode_request(body, "m").messages[1]


def responses_client(output: list[dict[str, Any]]) -> Message:
    """A Responses client's next turn (as Codex sends it): the output items as they came, then the
    calls' outputs."""
    calls = [item["call_id"] for item in output if "call_id" in item]
    outputs = [{"type": "function_call_output", "call_id": call_id, "output": "found"} for call_id in calls]
    body = {"model": "m", "input": [{"role": "user", "content": "look it up"}, *output, *outputs]}
    (turn,) = (m for m in openai_responses.decode_request(body).messages if m.role == "assistant")
    return turn


def through_anthropic_client(message: Message) -> Message:
    return anthropic_client(anthropic.encode_response(_response(message))["content"])


def through_gemini_client(message: Message) -> Message:
    return gemini_client(gemini.encode_response(_response(message))["candidates"][0]["content"]["parts"])


def through_responses_client(message: Message) -> Message:
    body = {"model": "m", "input": "x"}
    return responses_client(openai_responses.encode_response(_response(message), body)["output"])


def upstream_requests(turn: Message) -> tuple[dict[str, Any], dict[str, Any]]:
    """The turn, with the question before it and the tool's result after, as each vendor gets it."""
    messages = [
        Message(role="user", content=[TextPart(text="look it up")]),
        turn,
        Message(role="tool", tool_call_id="call_1", name="lookup", content=[TextPart(text="found")]),
    ]
    request = ChatRequest(model="m", messages=messages)
    to_anthropic = anthropic.encode_request(request, CLAUDE, stream=False)
    return to_anthropic, gemini.encode_request(request, GEMINI_3, stream=False)


def _text(body: dict[str, Any]) -> str:
    return orjson.dumps(body).decode()


# --- Gemini's signatures ---------------------------------------------------------------------------


def test_gemini_reasoning_through_an_anthropic_client_goes_back_to_gemini_only() -> None:
    shown = anthropic.encode_response(_response(gemini.decode_response(GEMINI_ANSWER).choices[0].message))["content"]
    assert shown[0] == {
        "type": "thinking", "thinking": "The user wants a lookup.", "signature": "aigw1.gemini.Q2lRQlZLaGtMdVdQ",
    }  # fmt: skip
    to_anthropic, to_gemini = upstream_requests(anthropic_client(shown))
    assert to_gemini["contents"][1]["parts"][0] == {
        "text": "The user wants a lookup.", "thought": True, "thoughtSignature": "Q2lRQlZLaGtMdVdQ",
    }  # fmt: skip
    # A tool_use block has nowhere to keep the call's signature: Gemini 3 gets Google's sentinel.
    assert to_gemini["contents"][1]["parts"][-1]["thoughtSignature"] == gemini.SKIP_SIGNATURE
    assert [block["type"] for block in to_anthropic["messages"][1]["content"]] == ["text", "tool_use"]
    assert not any(signature in _text(to_anthropic) for signature in GEMINI_SIGNATURES)


def test_gemini_stream_through_an_anthropic_client_goes_back_to_gemini_only() -> None:
    anthropic_sdk = pytest.importorskip("anthropic")
    httpx = pytest.importorskip("httpx2")
    events = _decode(gemini_stream.StreamDecoder(), orjson.dumps(GEMINI_ANSWER))
    encoder = anthropic.StreamEncoder("m")
    body = b"".join(encoder.encode(e) for e in events) + encoder.finish()
    sse = {"content-type": "text/event-stream"}
    transport = httpx.MockTransport(lambda _: httpx.Response(200, headers=sse, content=body))
    http_client = httpx.Client(transport=transport)
    client = anthropic_sdk.Anthropic(api_key="k", base_url="http://gw.test", http_client=http_client)
    with client.messages.stream(model="m", max_tokens=100, messages=[{"role": "user", "content": "x"}]) as stream:
        shown = [block.to_dict() for block in stream.get_final_message().content]
    to_anthropic, to_gemini = upstream_requests(anthropic_client(shown))
    assert to_gemini["contents"][1]["parts"][0]["thoughtSignature"] == "Q2lRQlZLaGtMdVdQ"
    assert not any(signature in _text(to_anthropic) for signature in GEMINI_SIGNATURES)


def test_gemini_signatures_through_a_responses_client_go_back_to_gemini_only() -> None:
    turn = through_responses_client(gemini.decode_response(GEMINI_ANSWER).choices[0].message)
    to_anthropic, to_gemini = upstream_requests(turn)
    parts = to_gemini["contents"][1]["parts"]
    assert [part.get("thoughtSignature") for part in parts] == [*GEMINI_SIGNATURES[:1], None, GEMINI_SIGNATURES[1]]
    assert not any(signature in _text(to_anthropic) for signature in GEMINI_SIGNATURES)


# --- Anthropic's signatures ------------------------------------------------------------------------


def test_anthropic_reasoning_through_a_gemini_client_goes_back_to_anthropic_only() -> None:
    parts = gemini.encode_response(_response(anthropic.decode_response(ANTHROPIC_ANSWER).choices[0].message))
    to_anthropic, to_gemini = upstream_requests(gemini_client(parts["candidates"][0]["content"]["parts"]))
    assert to_anthropic["messages"][1]["content"][0] == ANTHROPIC_ANSWER["content"][0]
    assert ANTHROPIC_SIGNATURE not in _text(to_gemini)
    assert to_gemini["contents"][1]["parts"][-1]["thoughtSignature"] == gemini.SKIP_SIGNATURE


def test_anthropic_stream_through_a_gemini_client_goes_back_to_anthropic_only() -> None:
    """A streamed thought reaches a Gemini client in pieces, the signature in the last: the pieces
    come back as the one thinking block the signature signs."""
    sse = _anthropic_sse(
        {"type": "message_start", "message": {"id": "msg_1", "model": CLAUDE, "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "The user "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "wants a lookup."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": ANTHROPIC_SIGNATURE}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_1", "name": "lookup"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"q":"a"}'}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    )
    encoder = gemini_stream.StreamEncoder()
    events = _decode(anthropic.StreamDecoder(), sse, framed=True)
    stream = b"".join(encoder.encode(e) for e in events) + encoder.finish()
    frames = [orjson.loads(e.data) for e in SSEParser().feed(stream)]
    parts = [part for frame in frames for part in frame["candidates"][0]["content"]["parts"]]
    to_anthropic, to_gemini = upstream_requests(gemini_client(parts))
    assert to_anthropic["messages"][1]["content"][0] == {
        "type": "thinking", "thinking": "The user wants a lookup.", "signature": ANTHROPIC_SIGNATURE,
    }  # fmt: skip
    assert ANTHROPIC_SIGNATURE not in _text(to_gemini)


def test_anthropic_reasoning_through_a_responses_client_goes_back_to_anthropic_only() -> None:
    turn = through_responses_client(anthropic.decode_response(ANTHROPIC_ANSWER).choices[0].message)
    to_anthropic, to_gemini = upstream_requests(turn)
    assert to_anthropic["messages"][1]["content"][0] == ANTHROPIC_ANSWER["content"][0]
    assert ANTHROPIC_SIGNATURE not in _text(to_gemini)


# --- OpenAI's encrypted reasoning ------------------------------------------------------------------


def test_openai_encrypted_reasoning_from_a_responses_client_reaches_no_other_vendor() -> None:
    """A turn OpenAI answered (passed through: its encrypted reasoning as OpenAI issued it), the next
    turn sent to another vendor: Anthropic would refuse it as a redacted_thinking block."""
    output = [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAABo-openai-blob"},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup", "arguments": '{"q":"a"}'},
    ]
    turn = responses_client(output)
    assert turn.reasoning == [Reasoning(redacted="gAAAAABo-openai-blob", signer="openai_responses")]
    to_anthropic, to_gemini = upstream_requests(turn)
    assert [block["type"] for block in to_anthropic["messages"][1]["content"]] == ["tool_use"]
    assert "gAAAAABo-openai-blob" not in _text(to_anthropic) + _text(to_gemini)


# --- every signer through every client --------------------------------------------------------------

CLIENTS = {
    "anthropic": through_anthropic_client, "gemini": through_gemini_client, "openai_responses": through_responses_client,
}  # fmt: skip


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("signer", ["anthropic", "gemini", "openai_responses"])
def test_a_client_gives_back_every_signature_with_its_signer(client: str, signer: str) -> None:
    message = Message(
        role="assistant",
        content=[TextPart(text="Looking.")],
        # base64 (as Gemini's must be, being bytes to its SDK) with the characters base64url changes
        reasoning=[Reasoning(text="The user wants a lookup.", signature="++++c2lnbmVk", signer=signer)],
        tool_calls=[ToolCall(id="call_1", name="lookup", arguments=ARGUMENTS, signature="//4gY2FsbA==", signer=signer)],
    )
    turn = CLIENTS[client](message)
    if client == signer == "gemini":  # Google's SDK writes bytes back as base64url: the same bytes
        assert [(r.signer, _bytes(r.signature)) for r in turn.reasoning] == [("gemini", _bytes("++++c2lnbmVk"))]
        assert [(c.signer, _bytes(c.signature)) for c in turn.tool_calls] == [("gemini", _bytes("//4gY2FsbA=="))]
        return
    assert turn.reasoning == message.reasoning
    # Anthropic's tool_use blocks have no place for a call's signature; the others keep it.
    unsigned = [ToolCall(id="call_1", name="lookup", arguments=ARGUMENTS)]
    assert turn.tool_calls == (unsigned if client == "anthropic" else message.tool_calls)


def _bytes(value: str | None) -> bytes:
    assert value is not None
    return base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_") + "=" * (-len(value) % 4))


def _anthropic_sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


def _decode(decoder: Any, data: bytes, framed: bool = False) -> list[StreamEvent]:
    """An upstream's answer through its stream decoder: SSE as it is, or one Gemini chunk."""
    sse = SSEParser().feed(data) if framed else [SSEEvent(None, data)]
    return [event for item in sse for event in decoder.feed(item)] + decoder.finish()
