"""The text a policy checks in a request or response body of each wire format, and where a mask
writes it back.

A body is read where it lies: each text is a *slot* (the dict or list holding it, and its key), and a
mask writes its segments back into the same slots, in place. Nothing else in the body is touched, so
fields the gateway does not know survive, and the body goes on to pass-through or translation as
before. Which fields hold text is data (the tables below), one small walker per shape of content.

Left out for now: images and files (no text to read), tool-call arguments (JSON the model wrote),
Gemini `functionResponse` objects (arbitrary JSON), thinking and thought parts (signed by their
vendor: rewriting them breaks the signature), token-id inputs of embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Slot = tuple[Any, Any]  # (the dict or list holding a text, its key or index)


class TextSlots:
    """The texts of one body, in order, and where each came from."""

    __slots__ = ("slots",)

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = slots

    @property
    def texts(self) -> list[str]:
        return [holder[key] for holder, key in self.slots]

    def write(self, texts: list[str] | tuple[str, ...]) -> bool:
        """Put `texts` (as many as were read) back into their slots; whether anything changed."""
        changed = False
        for (holder, key), text in zip(self.slots, texts, strict=True):
            if holder[key] != text:
                holder[key] = text
                changed = True
        return changed


def _text(holder: Any, key: Any) -> Iterator[Slot]:
    if isinstance(holder, dict) and isinstance(holder.get(key), str):
        yield holder, key


def _parts(parts: Any, text_types: frozenset[str], nested: dict[str, str] | None = None) -> Iterator[Slot]:
    """Text blocks of a content list: `{"type": <one of text_types>, "text": ...}`. `nested`: block
    types whose `<field>` holds content of its own (a tool result's string or blocks)."""
    if not isinstance(parts, list):
        return
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in text_types:
            yield from _text(part, "text")
        elif nested is not None and kind in nested:
            yield from _content(part, nested[kind], text_types)


def _content(holder: Any, key: str, text_types: frozenset[str], nested: dict[str, str] | None = None) -> Iterator[Slot]:
    """A content field that is a string or a list of blocks."""
    if not isinstance(holder, dict):
        return
    value = holder.get(key)
    if isinstance(value, str):
        yield holder, key
    else:
        yield from _parts(value, text_types, nested)


def _items(body: Any, key: str) -> list[Any]:
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, list) else []


# --- one walker per wire ----------------------------------------------------------------------------

_CHAT_TEXT = frozenset({"text"})
_RESPONSES_TEXT = frozenset({"input_text", "output_text"})
_ANTHROPIC_NESTED = {"tool_result": "content"}


def _openai_chat(body: Any) -> Iterator[Slot]:
    for message in _items(body, "messages"):  # tool messages' content included
        yield from _content(message, "content", _CHAT_TEXT)


def _openai_responses(body: Any) -> Iterator[Slot]:
    yield from _text(body, "instructions")
    if isinstance(body, dict) and isinstance(body.get("input"), str):
        yield body, "input"
        return
    for item in _items(body, "input"):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "function_call_output":
            yield from _content(item, "output", _RESPONSES_TEXT)
        elif kind == "message" or (kind is None and "role" in item):
            yield from _content(item, "content", _RESPONSES_TEXT)


def _anthropic(body: Any) -> Iterator[Slot]:
    yield from _content(body, "system", _CHAT_TEXT)
    for message in _items(body, "messages"):
        yield from _content(message, "content", _CHAT_TEXT, _ANTHROPIC_NESTED)


def _gemini_field(holder: Any, name: str, snake: str) -> Any:
    if not isinstance(holder, dict):
        return None
    value = holder.get(name)
    return holder.get(snake) if value is None else value


def _gemini_parts(content: Any) -> Iterator[Slot]:
    for part in _items(content, "parts"):
        if isinstance(part, dict) and not part.get("thought"):
            yield from _text(part, "text")


def _gemini(body: Any) -> Iterator[Slot]:
    yield from _gemini_parts(_gemini_field(body, "systemInstruction", "system_instruction"))
    for content in _items(body, "contents"):
        yield from _gemini_parts(content)


def _gemini_count_tokens(body: Any) -> Iterator[Slot]:
    inner = _gemini_field(body, "generateContentRequest", "generate_content_request")
    yield from _gemini(inner if isinstance(inner, dict) else body)


def _gemini_embeddings(body: Any) -> Iterator[Slot]:
    """embedContent's `content`, or batchEmbedContents' `requests[].content`."""
    requests = _items(body, "requests") if isinstance(body, dict) and "requests" in body else [body]
    for request in requests:
        yield from _gemini_parts(_gemini_field(request, "content", "content"))


def _openai_embeddings(body: Any) -> Iterator[Slot]:
    if not isinstance(body, dict):
        return
    value = body.get("input")
    if isinstance(value, str):
        yield body, "input"
    elif isinstance(value, list):
        yield from ((value, i) for i, item in enumerate(value) if isinstance(item, str))


# --- answers (the `result` phase of a whole response) --------------------------------------------------


def _openai_chat_result(body: Any) -> Iterator[Slot]:
    for choice in _items(body, "choices"):
        message = choice.get("message") if isinstance(choice, dict) else None
        yield from _content(message, "content", _CHAT_TEXT)


def _openai_responses_result(body: Any) -> Iterator[Slot]:
    for item in _items(body, "output"):
        if isinstance(item, dict) and item.get("type") == "message":
            yield from _parts(item.get("content"), _OUTPUT_TEXT)


def _anthropic_result(body: Any) -> Iterator[Slot]:
    yield from _parts(body.get("content") if isinstance(body, dict) else None, _CHAT_TEXT)


def _gemini_result(body: Any) -> Iterator[Slot]:
    for candidate in _items(body, "candidates"):
        yield from _gemini_parts(candidate.get("content") if isinstance(candidate, dict) else None)


_OUTPUT_TEXT = frozenset({"output_text"})

WALKERS: dict[str, Callable[[Any], Iterator[Slot]]] = {
    "openai_chat": _openai_chat,
    "openai_responses": _openai_responses,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "gemini_count_tokens": _gemini_count_tokens,
    "gemini_embeddings": _gemini_embeddings,
    "openai_embeddings": _openai_embeddings,
}
# A chat wire's answers: `text_slots(body, RESULT_WALKERS[wire])`.
RESULT_WALKERS: dict[str, str] = {
    "openai_chat": "openai_chat_result",
    "openai_responses": "openai_responses_result",
    "anthropic": "anthropic_result",
    "gemini": "gemini_result",
}
WALKERS.update({
    "openai_chat_result": _openai_chat_result,
    "openai_responses_result": _openai_responses_result,
    "anthropic_result": _anthropic_result,
    "gemini_result": _gemini_result,
})


def text_slots(body: Any, wire: str) -> TextSlots:
    """The text slots of `body` (a parsed request of `wire`, or an answer of a `*_result` walker), in order."""
    return TextSlots(list(WALKERS[wire](body)))
