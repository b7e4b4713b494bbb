"""The result phase on streams, below the HTTP layer (aigw.surfaces.result_policies): a passed-through
stream's bytes in each wire, cut anywhere, come out with their text masked and every event without
text unchanged; a translated stream's canonical events keep their order around held text."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from aigw.canonical import Finish, TextDelta, ToolCallDelta, UsageEvent, Usage
from aigw.policies.guardrails.engine import PolicyEngine
from aigw.policies.guardrails.keywords import KeywordMatcher, KeywordsPolicy
from aigw.policies.guardrails.pii import PiiPolicy, PiiScanner
from aigw.policies.guardrails.verdicts import Phase, PolicyContext
from aigw.surfaces.result_policies import EventGuard, PassedStreamGuard

RESULT = frozenset({Phase.RESULT})
CONTEXT = PolicyContext(Phase.RESULT, "chat")
ENDPOINT = SimpleNamespace(
    name="chat",
    policies=PolicyEngine([PiiPolicy("no-pii", RESULT, "mask", PiiScanner(["EMAIL"])), KeywordsPolicy("words", RESULT, KeywordMatcher(["forbidden"]))]),
)
TEXT = "write to jane.doe@example.com now"
PIECES = [TEXT[i : i + 3] for i in range(0, len(TEXT), 3)]


def chat_stream(pieces: list[str]) -> bytes:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def anthropic_stream(pieces: list[str]) -> bytes:
    def frame(kind: str, data: dict) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    out = frame("message_start", {"message": {"id": "m"}}) + frame("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    out += b"".join(frame("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}}) for p in pieces)
    return out + frame("content_block_stop", {"index": 0}) + frame("message_stop", {})


def gemini_stream(pieces: list[str]) -> bytes:
    chunks = [{"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}, "index": 0}], "modelVersion": "g"} for p in pieces]
    chunks[-1]["candidates"][0]["finishReason"] = "STOP"
    return b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)


def texts(wire: str, data: bytes) -> str:
    """The text a client reads from a stream of `wire`."""
    out = []
    for line in data.replace(b"\r\n", b"\n").split(b"\n"):
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        event = json.loads(line[6:])
        if wire == "openai_chat":
            out += [c["delta"].get("content") or "" for c in event["choices"]]
        elif wire == "anthropic" and event["type"] == "content_block_delta":
            out.append(event["delta"]["text"])
        elif wire == "gemini":
            out += [p.get("text", "") for c in event["candidates"] for p in (c.get("content") or {}).get("parts", [])]
    return "".join(out)


def relay(wire: str, data: bytes, cut: int) -> tuple[bytes, PassedStreamGuard]:
    guard = PassedStreamGuard(wire, ENDPOINT, CONTEXT, 1 << 20)  # type: ignore[arg-type]
    out = b"".join(guard.feed(data[i : i + cut]) for i in range(0, len(data), cut))
    return out + guard.flush(), guard


STREAMS = {"openai_chat": chat_stream, "anthropic": anthropic_stream, "gemini": gemini_stream}


@pytest.mark.parametrize("cut", [1, 7, 64, 100_000])
@pytest.mark.parametrize("wire", list(STREAMS))
def test_a_passed_stream_is_masked_however_its_bytes_are_cut(wire: str, cut: int) -> None:
    out, guard = relay(wire, STREAMS[wire](PIECES), cut)
    assert b"jane" not in out
    assert texts(wire, out) == "write to [EMAIL] now"
    assert [(r.policy, r.action, r.categories) for r in guard.runs()] == [("no-pii", "mask", ("EMAIL",)), ("words", "allow", ())]


@pytest.mark.parametrize("wire", ["openai_chat", "anthropic"])
def test_events_without_text_pass_byte_for_byte(wire: str) -> None:
    data = STREAMS[wire](["plain words only"])
    out, _ = relay(wire, data, 5)
    assert texts(wire, out) == "plain words only"
    # The channel's last characters are held to its end, so they ride on the finish chunk (chat).
    textless = [e for e in data.split(b"\n\n") if e and not any(m in e for m in (b'"content": "p', b"content_block_delta", b'"stop"'))]
    assert len(textless) == {"openai_chat": 2, "anthropic": 4}[wire]
    for event in textless:
        assert event + b"\n\n" in out


def test_a_passed_deny_ends_each_wire_its_way() -> None:
    pieces = ["a long opening ", "and then forbidden ", "words"]
    chat, guard = relay("openai_chat", chat_stream(pieces), 10)
    assert guard.ended and b"forbidden" not in chat
    assert b'"finish_reason":"content_filter"' in chat and chat.endswith(b"data: [DONE]\n\n")
    anthropic, _ = relay("anthropic", anthropic_stream(pieces), 10)
    assert anthropic.endswith(b"event: error\ndata: " + json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": "The response was refused by policy 'words' (keywords)."}}, separators=(",", ":")).encode() + b"\n\n")
    gemini, _ = relay("gemini", gemini_stream(pieces), 10)
    assert json.loads(gemini.rstrip().split(b"\r\n\r\n")[-1][6:])["candidates"] == [{"finishReason": "SAFETY", "index": 0}]


def test_translated_events_keep_their_order_around_held_text() -> None:
    guard = EventGuard(ENDPOINT, CONTEXT)  # type: ignore[arg-type]
    events = [TextDelta(p) for p in PIECES] + [ToolCallDelta(tool_index=0, id="t", name="f"), Finish("tool_calls"), UsageEvent(Usage(1, 2))]
    out = [e for event in events for e in guard.feed(event)] + guard.finish()
    text = "".join(e.text for e in out if isinstance(e, TextDelta))
    assert text == "write to [EMAIL] now"
    kinds = [type(e).__name__ for e in out]
    assert kinds.index("ToolCallDelta") > max(i for i, k in enumerate(kinds) if k == "TextDelta")
    assert kinds[-2:] == ["Finish", "UsageEvent"]
