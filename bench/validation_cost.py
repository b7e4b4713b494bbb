"""What request validation costs per request: the depth check and the schema check that every
surface runs on a parsed body (aigw.wire.schemas), for a small and a large request of each API,
next to the JSON parse they follow. Run: `python bench/validation_cost.py`.
"""

from __future__ import annotations

import timeit

import orjson

from aigw.wire.schemas import check_depth, conform
from aigw.wire.schemas import anthropic, gemini, openai, responses

TOOL = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def chat(turns: int) -> dict:
    messages = [{"role": "system", "content": "You are brief."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i} " * 20})
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": '{"q": "x"}'}}]})  # fmt: skip
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "result " * 20})
    tools = [{"type": "function", "function": {"name": "f", "parameters": TOOL}}]
    return {"model": "demo", "messages": messages, "tools": tools, "temperature": 0.2, "max_tokens": 256}


def responses_body(turns: int) -> dict:
    items: list[dict] = []
    for i in range(turns):
        items.append({"role": "user", "content": [{"type": "input_text", "text": f"question {i} " * 20}]})
        items.append({"type": "function_call", "call_id": f"c{i}", "name": "f", "arguments": "{}"})
        items.append({"type": "function_call_output", "call_id": f"c{i}", "output": "result " * 20})
    return {"model": "demo", "input": items, "tools": [{"type": "function", "name": "f", "parameters": TOOL}]}


def messages_body(turns: int) -> dict:
    messages = []
    for i in range(turns):
        messages.append({"role": "user", "content": [{"type": "text", "text": f"question {i} " * 20}]})
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "f", "input": {"q": "x"}}]})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "result"}]})
    messages.append({"role": "user", "content": "go on"})
    return {"model": "demo", "max_tokens": 256, "messages": messages, "tools": [{"name": "f", "input_schema": TOOL}]}


def generate_body(turns: int) -> dict:
    contents = []
    for i in range(turns):
        contents.append({"role": "user", "parts": [{"text": f"question {i} " * 20}]})
        contents.append({"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"q": "x"}}}]})
        contents.append({"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"r": "ok"}}}]})
    declaration = {"name": "f", "parameters": {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}}}
    return {"contents": contents, "tools": [{"functionDeclarations": [declaration]}], "generationConfig": {"temperature": 0.2}}


CASES = [
    ("openai chat", openai.ChatCompletionRequest, chat),
    ("openai responses", responses.ResponsesRequest, responses_body),
    ("anthropic messages", anthropic.MessagesRequest, messages_body),
    ("gemini generateContent", gemini.GenerateContentRequest, generate_body),
]


def per_call_us(function, number: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def main() -> None:
    print(f"{'request':<24} {'turns':>5} {'bytes':>7} {'parse µs':>9} {'depth µs':>9} {'schema µs':>10}")
    for name, schema, build in CASES:
        for turns in (1, 50):
            raw = orjson.dumps(build(turns))
            body = orjson.loads(raw)
            number = 20_000 if turns == 1 else 500
            parse = per_call_us(lambda: orjson.loads(raw), number)
            depth = per_call_us(lambda: check_depth(body, raw), number)
            check = per_call_us(lambda: conform(body, schema), number)
            print(f"{name:<24} {turns:>5} {len(raw):>7} {parse:>9.2f} {depth:>9.2f} {check:>10.2f}")


if __name__ == "__main__":
    main()
