"""OpenAI Responses streams: canonical stream events -> Responses SSE (`StreamEncoder`), in the event
order OpenAI sends. The request side and whole Response objects are in aigw.wire.openai_responses."""

from __future__ import annotations

from typing import Any

import orjson

from aigw.canonical import (
    Finish, FinishReason, ReasoningDelta, StreamEvent, StreamStart, TextDelta, ToolCallDelta, Usage, UsageEvent,
)  # fmt: skip
from aigw.errors import GatewayError
from aigw.http.sse import sse_frame
from aigw.wire.openai_responses import (
    INCOMPLETE_REASONS, build_response, by_signer, call_item, custom_input, error_event_fields, failure,
    message_item, new_id, now, output_text_part, reasoning_item, response_id, response_status,
)  # fmt: skip
from aigw.wire.openai_responses_tools import ToolNames


class _OpenCall:
    __slots__ = ("index", "item_id", "call_id", "name", "namespace", "custom", "arguments")

    def __init__(self, index: int, call_id: str, canonical_name: str, names: ToolNames) -> None:
        self.index, self.call_id = index, call_id
        self.namespace, self.name = names.origin(canonical_name)
        self.custom = names.is_custom(canonical_name)
        self.arguments: list[str] = []
        self.item_id = self.item("", "in_progress")["id"]

    def item(self, arguments: str, status: str) -> dict[str, Any]:
        return call_item(self.call_id, self.name, arguments, self.custom, status, self.namespace)


class StreamEncoder:
    """Canonical stream events -> Responses SSE, in the order OpenAI sends it: response.created,
    response.in_progress, then per output item its added / part / delta / done events, and last
    response.completed (or response.incomplete) carrying the whole Response, usage included.

    One output item is open at a time, except tool calls: consecutive calls stay open together (so
    interleaved argument deltas of parallel calls land in the right item) and close, in output
    order, when another kind of delta or the finish arrives. A signed reasoning item closes on the
    next reasoning text, so each signature keeps the text it signs. A custom tool's input is sent
    whole when its call closes: canonical arguments are JSON, and the input is a string inside it.
    A call to a namespace's tool (by its flat canonical name) is rendered with its own name and
    `namespace` in every item that names it. Only choice 0 is rendered."""

    def __init__(self, body: dict[str, Any], *, done_marker: bool = False, response_id: str | None = None) -> None:
        self._body = body
        self._fixed_id = response_id  # the id to give the response, instead of one from the upstream's
        self.final: dict[str, Any] | None = None  # the Response the terminal event carries, once sent
        self._done_marker = done_marker
        self._names = ToolNames(body.get("tools"))
        self._sequence = 0
        self._id = ""
        self._model = ""
        self._created = 0
        self._started = False
        self._output: dict[int, dict[str, Any]] = {}  # output index -> finished item
        self._next_index = 0
        self._open: dict[str, Any] | None = None  # the open message or reasoning item's state
        self._calls: dict[int, _OpenCall] = {}  # open tool calls by canonical tool index
        self._closed_calls: set[int] = set()
        self._call_signatures: dict[str, tuple[str, str]] = {}  # call id -> (signer, signature)
        self._reason: FinishReason | None = None
        self._usage: Usage | None = None

    # -- public

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            return self._start(event.id, event.model, event.created)
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return b""
        if event.index != 0:
            return b""
        out = self._ensure_started()
        if isinstance(event, TextDelta):
            return out + self._text(event.text)
        if isinstance(event, ReasoningDelta):
            return out + self._reasoning(event)
        if isinstance(event, ToolCallDelta):
            return out + self._tool_call(event)
        if isinstance(event, Finish):
            self._reason = event.reason
            return out + self._close_all()
        return out

    def finish(self) -> bytes:
        out = self._ensure_started() + self._close_all() + self._signature_carrier()
        status, incomplete = response_status(self._reason)
        response = self.final = self._response(status, incomplete_reason=incomplete)
        out += self._event(f"response.{status}", {"response": response})
        return out + self._done()

    def error(self, error: GatewayError) -> bytes:
        """An error after the stream started: an `error` event, then `response.failed` with the
        items finished so far."""
        out = self._ensure_started() + self._event("error", error_event_fields(error))
        self.final = self._response("failed", error=failure(error))
        out += self._event("response.failed", {"response": self.final})
        return out + self._done()

    # -- framing and lifecycle

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return sse_frame(orjson.dumps(payload), kind)

    def _done(self) -> bytes:
        return b"data: [DONE]\n\n" if self._done_marker else b""

    def _response(self, status: str, **fields: Any) -> dict[str, Any]:
        output = [self._output[i] for i in sorted(self._output)]
        return build_response(
            self._body, id=self._id, model=self._model, created_at=self._created, status=status, output=output,
            usage=self._usage, **fields,
        )  # fmt: skip

    def _start(self, id: str, model: str, created: int) -> bytes:
        if self._started:
            return b""
        self._started = True
        self._id, self._model, self._created = self._fixed_id or response_id(id), model, created
        response = self._response("in_progress")
        return self._event("response.created", {"response": response}) + self._event(
            "response.in_progress", {"response": response}
        )

    def _ensure_started(self) -> bytes:
        return b"" if self._started else self._start("", "", now())

    def _allocate(self) -> int:
        index, self._next_index = self._next_index, self._next_index + 1
        return index

    def _item_done(self, index: int, item: dict[str, Any]) -> bytes:
        self._output[index] = item
        return self._event("response.output_item.done", {"output_index": index, "item": item})

    def _close_all(self) -> bytes:
        return self._close_open() + self._close_calls()

    # -- message items

    def _text(self, text: str) -> bytes:
        if not text:
            return b""
        out = b""
        if self._open is None or self._open["kind"] != "message":
            out += self._close_all()
            out += self._open_message()
        state = self._open
        assert state is not None
        state["text"].append(text)
        fields = {"item_id": state["id"], "output_index": state["index"], "content_index": 0, "delta": text}
        return out + self._event("response.output_text.delta", {**fields, "logprobs": []})

    def _open_message(self) -> bytes:
        index, item_id = self._allocate(), new_id("msg_")
        self._open = {"kind": "message", "index": index, "id": item_id, "text": []}
        item = message_item(item_id, None, "in_progress")
        out = self._event("response.output_item.added", {"output_index": index, "item": item})
        part = {"item_id": item_id, "output_index": index, "content_index": 0, "part": output_text_part("")}
        return out + self._event("response.content_part.added", part)

    def _close_message(self, state: dict[str, Any]) -> bytes:
        text, index, item_id = "".join(state["text"]), state["index"], state["id"]
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        out = self._event("response.output_text.done", {**where, "text": text, "logprobs": []})
        out += self._event("response.content_part.done", {**where, "part": output_text_part(text)})
        status = "incomplete" if self._reason in INCOMPLETE_REASONS else "completed"
        return out + self._item_done(index, message_item(item_id, text, status))

    # -- reasoning items

    def _reasoning(self, event: ReasoningDelta) -> bytes:
        if event.redacted is not None:
            out = self._close_all() + self._open_reasoning()
            assert self._open is not None
            self._open["redacted"], self._open["signer"] = event.redacted, event.signer
            return out + self._close_open()
        if not event.text and event.signature is None:
            return b""
        out = b""
        state = self._open
        if state is None or state["kind"] != "reasoning" or (event.text and state["signature"] is not None):
            out += self._close_all() + self._open_reasoning()
            state = self._open
        assert state is not None
        if event.text:
            where = {"item_id": state["id"], "output_index": state["index"], "summary_index": 0}
            if not state["text"]:
                part = {"type": "summary_text", "text": ""}
                out += self._event("response.reasoning_summary_part.added", {**where, "part": part})
            state["text"].append(event.text)
            out += self._event("response.reasoning_summary_text.delta", {**where, "delta": event.text})
        if event.signature is not None:
            state["signature"] = (state["signature"] or "") + event.signature
            state["signer"] = event.signer
        return out

    def _open_reasoning(self) -> bytes:
        index, item_id = self._allocate(), new_id("rs_")
        self._open = {
            "kind": "reasoning", "index": index, "id": item_id, "text": [], "signature": None, "redacted": None,
            "signer": None,
        }  # fmt: skip
        item = {"id": item_id, "type": "reasoning", "summary": []}
        return self._event("response.output_item.added", {"output_index": index, "item": item})

    def _close_reasoning(self, state: dict[str, Any]) -> bytes:
        text, index, item_id = "".join(state["text"]), state["index"], state["id"]
        out = b""
        if text:
            where = {"item_id": item_id, "output_index": index, "summary_index": 0}
            out += self._event("response.reasoning_summary_text.done", {**where, "text": text})
            part = {"type": "summary_text", "text": text}
            out += self._event("response.reasoning_summary_part.done", {**where, "part": part})
        item = reasoning_item(item_id, text, state["signer"], state["signature"], state["redacted"])
        return out + self._item_done(index, item)

    def _close_open(self) -> bytes:
        state, self._open = self._open, None
        if state is None:
            return b""
        return self._close_message(state) if state["kind"] == "message" else self._close_reasoning(state)

    # -- tool-call items

    def _tool_call(self, event: ToolCallDelta) -> bytes:
        if event.tool_index in self._closed_calls:
            return b""  # a fragment of a call already closed by other output: it cannot be reopened
        out = b""
        call = self._calls.get(event.tool_index)
        if call is None:
            out += self._close_open()
            call = _OpenCall(self._allocate(), event.id or new_id("call_"), event.name or "", self._names)
            self._calls[event.tool_index] = call
            out += self._event("response.output_item.added", {"output_index": call.index, "item": call.item("", "in_progress")})
        if event.signature is not None and event.signer is not None:
            self._call_signatures[call.call_id] = (event.signer, event.signature)
        if event.arguments:
            call.arguments.append(event.arguments)
            if not call.custom:
                fields = {"item_id": call.item_id, "output_index": call.index, "delta": event.arguments}
                out += self._event("response.function_call_arguments.delta", fields)
        return out

    def _close_calls(self) -> bytes:
        out = b""
        for tool_index, call in sorted(self._calls.items(), key=lambda entry: entry[1].index):
            self._closed_calls.add(tool_index)
            arguments = "".join(call.arguments)
            where = {"item_id": call.item_id, "output_index": call.index}
            if call.custom:
                text = custom_input(arguments)
                if text:
                    out += self._event("response.custom_tool_call_input.delta", {**where, "delta": text})
                out += self._event("response.custom_tool_call_input.done", {**where, "input": text})
            else:
                out += self._event("response.function_call_arguments.done", {**where, "arguments": arguments})
            out += self._item_done(call.index, call.item(arguments, "completed"))
        self._calls.clear()
        return out

    def _signature_carrier(self) -> bytes:
        """Tool-call signatures ride in last reasoning items, one per signer (see the module docstring)."""
        out = b""
        groups, self._call_signatures = by_signer(self._call_signatures), {}
        for signer, signatures in groups:
            index, item_id = self._allocate(), new_id("rs_")
            item = reasoning_item(item_id, "", None, None, None)
            out += self._event("response.output_item.added", {"output_index": index, "item": item})
            out += self._item_done(index, reasoning_item(item_id, "", signer, None, None, signatures))
        return out
