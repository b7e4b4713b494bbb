"""The built-in `demo` provider: deterministic answers with no network, so a fresh gateway works out
of the box and its own tests need nothing else. It streams, calls tools and embeds.

Behaviour: the answer echoes the last user message; with tools declared and a user turn last, it
calls the first tool with `{"input": <user text>}`; after a tool result it reports what the tool said.

Every token holder may call it, so its work is bounded whatever the request: it echoes at most
`MAX_ECHO_CHARS` of the user's text, streams at most `MAX_STREAM_PIECES` text pieces over all
choices, and embeds in at most its own `EMBEDDING_DIMENSIONS` (the surfaces bound `n` and the rest).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import struct
import time
from collections.abc import AsyncIterator

import orjson

from aigw.canonical import (
    ChatRequest,
    ChatResponse,
    Choice,
    EmbeddingsRequest,
    EmbeddingsResponse,
    Finish,
    Message,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
    estimate_tokens,
)
from aigw.errors import invalid
from aigw.offload import run_heavy
from aigw.providers.base import Provider

DEMO_MODEL = "aigw-demo-1"
EMBEDDING_DIMENSIONS = 16  # the model's size: more is refused, as a vendor's model refuses it
MAX_ECHO_CHARS = 1_000
MAX_STREAM_PIECES = 256


class DemoProvider(Provider):
    kind = "demo"
    tasks = frozenset({"chat", "embeddings"})

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await run_heavy(_response, request)  # reading every message of a big request is work

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        message, finish = await run_heavy(_answer, request)
        yield StreamStart(id="chatcmpl-demo-" + secrets.token_hex(8), model=DEMO_MODEL, created=int(time.time()))
        choices = request.n or 1
        pieces = _pieces(message.text(), max(1, MAX_STREAM_PIECES // choices))
        for index in range(choices):
            for word in pieces:
                yield TextDelta(text=word, index=index)
                await asyncio.sleep(0)  # a real stream: each piece is its own write
            for tool_index, call in enumerate(message.tool_calls):
                yield ToolCallDelta(tool_index=tool_index, id=call.id, name=call.name, index=index)
                half = len(call.arguments) // 2
                for piece in (call.arguments[:half], call.arguments[half:]):
                    yield ToolCallDelta(tool_index=tool_index, arguments=piece, index=index)
            yield Finish(reason=finish, index=index)
        yield UsageEvent(usage=await run_heavy(_usage, request, message))

    async def embed(self, request: EmbeddingsRequest) -> EmbeddingsResponse:
        dimensions = request.dimensions or EMBEDDING_DIMENSIONS
        if not 1 <= dimensions <= EMBEDDING_DIMENSIONS:
            raise invalid(
                f"Invalid 'dimensions': this model embeds in at most {EMBEDDING_DIMENSIONS} dimensions, not {dimensions}.",
                "dimensions",
            )
        return EmbeddingsResponse(
            model=DEMO_MODEL,
            vectors=[_embedding(text, dimensions) for text in request.inputs],
            usage=Usage(input_tokens=sum(estimate_tokens(text) for text in request.inputs)),
        )


def _response(request: ChatRequest) -> ChatResponse:
    message, finish = _answer(request)
    return ChatResponse(
        id="chatcmpl-demo-" + secrets.token_hex(8),
        model=DEMO_MODEL,
        created=int(time.time()),
        choices=[Choice(index=i, message=message, finish_reason=finish) for i in range(request.n or 1)],
        usage=_usage(request, message),
    )


def _answer(request: ChatRequest) -> tuple[Message, str]:
    last = request.messages[-1]
    if last.role == "tool":
        return Message(role="assistant", content=[TextPart(text=f"The tool said: {last.text()[:MAX_ECHO_CHARS]}")]), "stop"
    user_text = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")[:MAX_ECHO_CHARS]
    wants_tool = request.tools and (request.tool_choice is None or request.tool_choice.mode != "none")
    if wants_tool and last.role == "user":
        tool = request.tools[0]
        if request.tool_choice is not None and request.tool_choice.mode == "tool":
            tool = next((t for t in request.tools if t.name == request.tool_choice.name), tool)
        arguments = orjson.dumps({"input": user_text}).decode()
        call = ToolCall(id="call_demo_" + secrets.token_hex(6), name=tool.name, arguments=arguments)
        return Message(role="assistant", tool_calls=[call]), "tool_calls"
    if request.response_format is not None and request.response_format.type != "text":
        return Message(role="assistant", content=[TextPart(text=orjson.dumps({"echo": user_text}).decode())]), "stop"
    text = f"Echo: {user_text}" if user_text else "Hello from the aigw demo endpoint."
    if request.max_tokens is not None and len(text.split()) > request.max_tokens:
        return Message(role="assistant", content=[TextPart(text=" ".join(text.split()[: request.max_tokens]))]), "length"
    return Message(role="assistant", content=[TextPart(text=text)]), "stop"


def _pieces(text: str, limit: int) -> list[str]:
    """Split into words, keeping the spaces, so the stream rejoins to exactly the text; at most
    `limit` pieces (neighbouring words share one past that)."""
    if not text:
        return []
    words = text.split(" ")
    pieces = [w + " " for w in words[:-1]] + [words[-1]]
    if len(pieces) <= limit:
        return pieces
    size = -(-len(pieces) // limit)  # ceiling division
    return ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]


def _usage(request: ChatRequest, answer: Message) -> Usage:
    prompt = "".join(m.text() for m in request.messages)
    output = answer.text() + "".join(c.arguments for c in answer.tool_calls)
    return Usage(input_tokens=estimate_tokens(prompt), output_tokens=max(1, estimate_tokens(output)))


def _embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on the text: equal texts embed equally."""
    seed = hashlib.sha256(text.encode()).digest()
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        block = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        raw.extend(v / 2**31 - 1.0 for v in struct.unpack("<8I", block))
        counter += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]
