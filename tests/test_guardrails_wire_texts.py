"""The text slots of each wire format's request body (aigw.policies.guardrails.wire_texts): which
texts a policy sees, in order, and that a mask writes them back in place, every other field kept."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aigw.policies.guardrails.wire_texts import WALKERS, text_slots

CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "openai_chat": (
        {
            "model": "m", "x_top": 1,
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "u1", "x": 1}, {"type": "image_url", "image_url": {"url": "data:"}}]},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\": \"args\"}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "tool out"},
                {"role": "tool", "tool_call_id": "d", "content": [{"type": "text", "text": "tool part"}]},
            ],
        },
        ["sys", "u1", "tool out", "tool part"],
    ),
    "openai_responses": (
        {
            "model": "m", "instructions": "ins",
            "input": [
                {"role": "user", "content": "bare"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "it"}, {"type": "input_image", "image_url": "x"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ot", "annotations": []}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "fco"},
                {"type": "function_call_output", "call_id": "d", "output": [{"type": "input_text", "text": "fco part"}]},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
            ],
        },
        ["ins", "bare", "it", "ot", "fco", "fco part"],
    ),
    "anthropic": (
        {
            "model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "plain"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "a"},
                                                  {"type": "tool_use", "id": "t", "name": "f", "input": {"q": "args"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "result"},
                                             {"type": "tool_result", "tool_use_id": "u", "content": [{"type": "text", "text": "rb"}]},
                                             {"type": "text", "text": "after"}]},
            ],
        },
        ["sys", "plain", "a", "result", "rb", "after"],
    ),
    "gemini": (
        {
            "system_instruction": {"parts": [{"text": "sys"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "u"}, {"inlineData": {"mimeType": "image/png", "data": "x"}}]},
                {"role": "model", "parts": [{"text": "thought", "thought": True}, {"text": "m", "thoughtSignature": "s"}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"out": "json"}}}]},
            ],
            "generationConfig": {"temperature": 0},
        },
        ["sys", "u", "m"],
    ),
    "gemini_count_tokens": (
        {"generateContentRequest": {"model": "models/x", "systemInstruction": {"parts": [{"text": "s"}]}, "contents": [{"parts": [{"text": "c"}]}]}},
        ["s", "c"],
    ),
    "gemini_embeddings": (
        {"requests": [{"model": "models/x", "content": {"parts": [{"text": "one"}]}}, {"content": {"parts": [{"text": "two"}, {"text": "three"}]}}]},
        ["one", "two", "three"],
    ),
    "openai_embeddings": ({"model": "m", "input": ["a", "b"], "dimensions": 8}, ["a", "b"]),
    # Answers (the result phase of a whole response).
    "openai_chat_result": (
        {
            "id": "c", "object": "chat.completion", "x_top": 1,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hello", "refusal": None}, "finish_reason": "stop"},
                {"index": 1, "message": {"role": "assistant", "content": None, "tool_calls": [{"id": "t", "function": {"arguments": "{}"}}]}},
                {"index": 2, "message": {"role": "assistant", "content": [{"type": "text", "text": "part"}]}},
            ],
            "usage": {"prompt_tokens": 1},
        },
        ["hello", "part"],
    ),
    "openai_responses_result": (
        {
            "id": "r", "status": "completed",
            "output": [
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ot", "annotations": [{"x": 1}]},
                                                                     {"type": "refusal", "refusal": "no"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            ],
        },
        ["ot"],
    ),
    "anthropic_result": (
        {
            "id": "m", "type": "message", "role": "assistant",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "a", "citations": None},
                        {"type": "tool_use", "id": "t", "name": "f", "input": {"q": "args"}}, {"type": "text", "text": "b"}],
        },
        ["a", "b"],
    ),
    "gemini_result": (
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "t", "thought": True}, {"text": "one"}, {"functionCall": {"name": "f", "args": {}}}]}, "index": 0},
                {"content": {"role": "model", "parts": [{"text": "two", "thoughtSignature": "s"}]}, "finishReason": "STOP", "index": 1},
                {"finishReason": "SAFETY", "index": 2},
            ],
            "usageMetadata": {"totalTokenCount": 3},
        },
        ["one", "two"],
    ),
}


@pytest.mark.parametrize("wire", list(CASES))
def test_texts_in_order_and_a_mask_written_in_place(wire: str) -> None:
    body, texts = CASES[wire]
    body = copy.deepcopy(body)
    original = copy.deepcopy(body)
    slots = text_slots(body, wire)
    assert slots.texts == texts
    assert slots.write([t.upper() for t in texts]) is True
    assert text_slots(body, wire).texts == [t.upper() for t in texts]
    # Exactly the slots changed: put them back and the body is what came in, every field kept.
    text_slots(body, wire).write(texts)
    assert body == original


def test_every_walker_is_covered() -> None:
    assert set(WALKERS) == set(CASES)


@pytest.mark.parametrize(
    ("wire", "body", "texts"),
    [
        ("openai_responses", {"input": "just a string", "instructions": "i"}, ["i", "just a string"]),
        ("anthropic", {"system": "s", "messages": [{"role": "user", "content": "c"}]}, ["s", "c"]),
        ("gemini_count_tokens", {"contents": [{"parts": [{"text": "bare"}]}]}, ["bare"]),
        ("gemini_embeddings", {"content": {"parts": [{"text": "single"}]}}, ["single"]),
        ("openai_embeddings", {"input": "one string"}, ["one string"]),
        ("openai_embeddings", {"input": [[1, 2, 3]]}, []),  # token ids: nothing to read
        ("openai_chat", {"messages": "not a list"}, []),  # validated elsewhere; never a crash here
        ("gemini", {"contents": [None, {"parts": None}, {"parts": ["x"]}]}, []),
    ],
)
def test_other_shapes(wire: str, body: dict[str, Any], texts: list[str]) -> None:
    slots = text_slots(body, wire)
    assert slots.texts == texts
    assert slots.write(texts) is False  # unchanged: nothing written, nothing re-serialised


def test_a_string_input_is_rewritten_at_the_top_level() -> None:
    body = {"model": "m", "input": "mail a@b.example"}
    text_slots(body, "openai_responses").write(["mail [EMAIL]"])
    assert body == {"model": "m", "input": "mail [EMAIL]"}
    listed = {"input": ["x", [1, 2], "y"]}
    text_slots(listed, "openai_embeddings").write(["X", "Y"])
    assert listed == {"input": ["X", [1, 2], "Y"]}
