"""A canonical stream stitched back into the one response it adds up to.

Payload logs keep a streamed answer as the response a non-streamed request would have got, so a
reader of the inference table sees one shape whatever the client asked for. A log keeps bodies up
to a size only, so the builder stops collecting once its content is past that size: a 100 MB stream
costs no 100 MB of memory for a log that would keep only the marker.
"""

from __future__ import annotations

import time

from aigw.canonical import (
    ChatResponse, Choice, Finish, FinishReason, Message, Reasoning, ReasoningDelta, StreamEvent, StreamStart,
    TextDelta, TextPart, ToolCall, ToolCallDelta, Usage, UsageEvent,
)  # fmt: skip


class _Choice:
    __slots__ = ("text", "reasoning", "calls", "finish")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[Reasoning] = []
        self.calls: dict[int, ToolCall] = {}
        self.finish: FinishReason | None = None

    def message(self) -> Message:
        content = [TextPart(text="".join(self.text))] if self.text else []
        calls = [self.calls[i] for i in sorted(self.calls)]
        return Message(role="assistant", content=content, tool_calls=calls, reasoning=self.reasoning)


class ResponseBuilder:
    """Feed it a stream's events; `response()` is what they add up to. With a `limit`, it gives up
    (`over`) once the content fed is past `limit` characters: rendered, the response would be at
    least that many bytes (UTF-8 and JSON escaping only add)."""

    def __init__(self, limit: int | None = None) -> None:
        self._id = ""
        self._model = ""
        self._created = 0
        self._choices: dict[int, _Choice] = {}
        self._usage: Usage | None = None
        self._limit = limit
        self._size = 0  # characters of text, reasoning and tool calls fed
        self.over = False

    def give_up(self) -> None:
        """The response is known to be over the limit: stop collecting, and free what was."""
        self.over = True
        self._choices.clear()

    def feed(self, event: StreamEvent) -> None:
        if self.over:
            return
        if self._limit is not None:
            self._size += _content_size(event)
            if self._size > self._limit:
                self.give_up()
                return
        if isinstance(event, StreamStart):
            self._id, self._model, self._created = event.id, event.model, event.created
            return
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return
        choice = self._choices.get(event.index)
        if choice is None:
            choice = self._choices[event.index] = _Choice()
        if isinstance(event, TextDelta):
            choice.text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self._reasoning(choice, event)
        elif isinstance(event, ToolCallDelta):
            call = choice.calls.get(event.tool_index)
            if call is None:
                call = choice.calls[event.tool_index] = ToolCall(id=event.id or "", name=event.name or "", arguments="")
            call.id = event.id or call.id
            call.name = event.name or call.name
            call.arguments += event.arguments
            if event.signature is not None:
                call.signature, call.signer = event.signature, event.signer
        elif isinstance(event, Finish):
            choice.finish = event.reason

    @staticmethod
    def _reasoning(choice: _Choice, event: ReasoningDelta) -> None:
        if event.redacted is not None:
            choice.reasoning.append(Reasoning(redacted=event.redacted, signer=event.signer))
            return
        last = choice.reasoning[-1] if choice.reasoning else None
        if last is None or last.redacted is not None or last.signature is not None:
            last = Reasoning()
            choice.reasoning.append(last)
        last.text += event.text
        if event.signature is not None:
            last.signature, last.signer = event.signature, event.signer

    def response(self) -> ChatResponse:
        choices = [
            Choice(index=index, message=choice.message(), finish_reason=choice.finish)
            for index, choice in sorted(self._choices.items())
        ]
        return ChatResponse(
            id=self._id, model=self._model, created=self._created or int(time.time()), choices=choices, usage=self._usage
        )


def _content_size(event: StreamEvent) -> int:
    """The characters `event` adds to the response (a lower bound of its bytes rendered)."""
    if isinstance(event, TextDelta):
        return len(event.text)
    if isinstance(event, ToolCallDelta):
        return len(event.arguments) + len(event.name or "") + len(event.id or "") + len(event.signature or "")
    if isinstance(event, ReasoningDelta):
        return len(event.text) + len(event.signature or "") + len(event.redacted or "")
    return 0
