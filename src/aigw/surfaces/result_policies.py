"""The `result` phase of an endpoint's content policies on chat answers, whole and streamed.

A whole answer is checked once, before the client gets it: a passed-through body in its own wire
format (parsed only when the endpoint has result policies; a mask is written in place and the body
re-serialised, so fields the gateway does not know survive), a translated one on the canonical
response before it is encoded. A deny is a 400 in the surface's error shape, as in the call phase.

A stream is checked as it goes: each text channel (a choice, a content block, a candidate) has its
own `StreamGuard`, which releases what cannot become a finding any more and holds back the rest
(the library bounds what it holds). Held text is flushed before anything else of its channel
(a tool call, the channel's end), so the order of the answer is kept. A deny ends the stream the
surface's own way: a `content_filter` finish (OpenAI chat, and Responses, whose response ends
`incomplete`), Gemini's `SAFETY` finish, Anthropic's `error` event. Pass-through streams are
rewritten event by event in the upstream's wire format (`PassedStreamGuard`): events without text
pass byte for byte; translated streams go through `EventGuard` before their encoder.

Kinds that can only judge a whole text (judge, webhook, python) are not stream stages: their
`stream: buffer | after` modes are the seam `unstreamable` marks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from aigw.call import Call
from aigw.canonical import ChatResponse, Finish, StreamEvent, StreamStart, TextDelta, TextPart, UsageEvent
from aigw.errors import ErrorKind, GatewayError
from aigw.http.sse import event_too_large, sse_frame
from aigw.offload import run_heavy
from aigw.policies.guardrails.engine import Outcome
from aigw.policies.guardrails.stream_guard import StreamGuard, StreamStep, stream_capable
from aigw.policies.guardrails.verdicts import Phase, Policy, PolicyContext, PolicyRun, refusal_message
from aigw.policies.guardrails.wire_texts import RESULT_WALKERS, text_slots
from aigw.routing import Endpoint
from aigw.wire import anthropic

CODE = "content_policy_violation"


def context(call: Call, endpoint: Endpoint) -> PolicyContext:
    return PolicyContext(Phase.RESULT, endpoint.name, call.principal.name if call.principal else None, call.surface)


def refused(outcome: Outcome | StreamStep) -> GatewayError:
    message = outcome.message or refusal_message(outcome.policy or "?", Phase.RESULT, outcome.categories)
    return GatewayError(ErrorKind.POLICY, message, code=CODE)


def unstreamable(endpoint: Endpoint) -> tuple[Policy, ...]:
    """Result policies a stream cannot feed incrementally. Their `stream: buffer | after` modes
    (hold the stream until checked, or check the whole text at the end) plug in here; until then
    a stream passes them by."""
    return tuple(p for p in endpoint.policies.for_phase(Phase.RESULT) if not stream_capable(p))


# --- whole answers --------------------------------------------------------------------------------------


async def check_passed_answer(call: Call, endpoint: Endpoint, data: bytes, wire: str) -> bytes:
    """A passed-through whole answer of `wire`, checked: the same bytes, or the masked body."""
    try:
        body = await run_heavy(orjson.loads, data, size=len(data))
    except orjson.JSONDecodeError:
        return data  # checked to be a JSON object already; nothing readable to check
    slots = await run_heavy(text_slots, body, RESULT_WALKERS[wire], size=len(data))
    outcome = await endpoint.policies.run(slots.texts, context(call, endpoint))
    call.policy_runs.extend(outcome.runs)
    if outcome.action in ("deny", "ask"):  # no one to ask about an answer
        raise refused(outcome)
    if outcome.action == "mask" and slots.write(outcome.texts):
        return await run_heavy(orjson.dumps, body, size=len(data))
    return data


async def check_translated_answer(call: Call, endpoint: Endpoint, response: ChatResponse) -> None:
    """A translated whole answer, checked before it is encoded; a mask rewrites its text parts."""
    parts = [part for choice in response.choices for part in choice.message.content if isinstance(part, TextPart)]
    outcome = await endpoint.policies.run([part.text for part in parts], context(call, endpoint))
    call.policy_runs.extend(outcome.runs)
    if outcome.action in ("deny", "ask"):
        raise refused(outcome)
    if outcome.action == "mask":
        for part, text in zip(parts, outcome.texts, strict=True):
            part.text = text


def merge_runs(runs: list[PolicyRun]) -> list[PolicyRun]:
    """One entry per policy for a stream checked in several channels: the strongest verdict, every
    category, the time added up."""
    rank = {"allow": 0, "mask": 1, "ask": 2, "deny": 3}
    merged: dict[str, PolicyRun] = {}
    for run in runs:
        seen = merged.get(run.policy)
        if seen is None:
            merged[run.policy] = run
            continue
        action = run.action if rank[run.action] > rank[seen.action] else seen.action
        categories = tuple(sorted(set(seen.categories) | set(run.categories)))
        merged[run.policy] = PolicyRun(run.policy, run.phase, action, categories, seen.elapsed_ms + run.elapsed_ms)
    return list(merged.values())


class _Channels:
    """One `StreamGuard` per text channel, opened on its first text and closed (flushed) when the
    channel ends; the runs of closed guards kept for the usage record."""

    def __init__(self, policies: tuple[Policy, ...], ctx: PolicyContext) -> None:
        self._policies = policies
        self._context = ctx
        self._open: dict[Any, StreamGuard] = {}
        self._runs: list[PolicyRun] = []
        self.denied: StreamStep | None = None

    def feed(self, key: Any, text: str) -> str | None:
        """The text to send now; None once denied."""
        guard = self._open.get(key)
        if guard is None:
            guard = self._open[key] = StreamGuard(self._policies, self._context)
        return self._step(guard.feed(text))

    def close(self, key: Any) -> str | None:
        guard = self._open.pop(key, None)
        if guard is None:
            return ""
        step = guard.finish()
        self._runs.extend(guard.runs())
        return self._step(step)

    def keys(self) -> list[Any]:
        return list(self._open)

    def _step(self, step: StreamStep) -> str | None:
        if step.denied:
            self.denied = self.denied or step
            return None
        return step.text

    def runs(self) -> list[PolicyRun]:
        for guard in self._open.values():  # a stream cut short: what its open guards saw
            self._runs.extend(guard.runs())
        self._open.clear()
        return merge_runs(self._runs)


def stream_policies(endpoint: Endpoint) -> tuple[Policy, ...]:
    return tuple(p for p in endpoint.policies.for_phase(Phase.RESULT) if stream_capable(p))


# --- translated streams ---------------------------------------------------------------------------------


class EventGuard:
    """Canonical stream events in, checked events out (`feed`, then `finish` at the end). After a
    deny (`denied`), `ending` frames the surface's end of the stream."""

    def __init__(self, endpoint: Endpoint, ctx: PolicyContext) -> None:
        self._channels = _Channels(stream_policies(endpoint), ctx)
        self._finished: set[int] = set()
        self._seen: set[int] = set()

    @property
    def denied(self) -> StreamStep | None:
        return self._channels.denied

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        if isinstance(event, TextDelta):
            self._seen.add(event.index)
            text = self._channels.feed(event.index, event.text)
            return [TextDelta(text, event.index)] if text else []
        if isinstance(event, (UsageEvent, StreamStart)):
            return [event]
        self._seen.add(event.index)
        held = self._channels.close(event.index)  # held text goes before the channel's next thing
        if held is None:
            return []
        if isinstance(event, Finish):
            self._finished.add(event.index)
        return [TextDelta(held, event.index), event] if held else [event]

    def finish(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for index in self._channels.keys():
            held = self._channels.close(index)
            if held is None:
                return []
            if held:
                out.append(TextDelta(held, index))
        return out

    def ending(self, wire: str, encoder: Any) -> bytes:
        """The end of a denied stream, in the surface's way."""
        assert self.denied is not None
        if wire == anthropic.WIRE:
            return encoder.error(refused(self.denied))
        unfinished = sorted(self._seen - self._finished) or [0]
        return b"".join(encoder.encode(Finish("content_filter", index)) for index in unfinished) + encoder.finish()

    def runs(self) -> list[PolicyRun]:
        return self._channels.runs()


# --- pass-through streams -------------------------------------------------------------------------------



class PassedStreamGuard:
    """A passed-through stream of `wire`, event by event: text deltas are checked and rewritten,
    other events pass as they came. `feed` returns complete events (a partial one waits for its
    end, within `max_event_bytes`); `flush` the rest at the end. `ended`: a deny ended the stream
    (its ending framed), so nothing more is to be read."""

    def __init__(self, wire: str, endpoint: Endpoint, ctx: PolicyContext, max_event_bytes: int | None) -> None:
        self._channels = _Channels(stream_policies(endpoint), ctx)
        self._wire = wire
        self._event: Callable[..., bytes] = getattr(self, "_" + wire)
        self._max = max_event_bytes
        self._pending = b""
        self.ended = False
        # Responses: the stream's own state (sequence numbers, masked text per part, the response).
        self._shift = 0
        self._sequence = -1
        self._masked: dict[tuple[int, int], str] = {}
        self._items: dict[int, dict[str, Any]] = {}
        self._response: dict[str, Any] | None = None
        self._base: dict[str, Any] = {}  # OpenAI chat / Gemini: the fields each chunk repeats

    def feed(self, chunk: bytes) -> bytes:
        if self.ended:
            return b""
        from aigw.surfaces.chat_flow import _last_event_end

        data = self._pending + chunk if self._pending else chunk
        end = _last_event_end(data)
        self._pending = data[end:]
        if self._max is not None and len(self._pending) > self._max:
            raise event_too_large(self._max)
        return self._events(data[:end]) if end else b""

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        out = self._events(rest) if rest.strip() and not self.ended else b""
        if self.ended:
            return out
        for key in self._channels.keys():  # the upstream ended without closing a channel
            held = self._channels.close(key)
            if held is None:
                return out + self._deny()
            if held:
                out += self._tail(key, held)
        return out

    def runs(self) -> list[PolicyRun]:
        return self._channels.runs()

    def _events(self, data: bytes) -> bytes:
        from aigw.surfaces.chat_flow import _split_events

        if self._wire == "openai_chat":
            return self._openai_chat(_split_events(data))
        out: list[bytes] = []
        for event in _split_events(data):
            out.append(self._event(event))
            if self.ended:
                break
        return b"".join(out)

    # -- one event of each wire ------------------------------------------------------------------

    def _openai_chat(self, events: list[bytes]) -> bytes:
        """One read's chat chunks together: each channel's text of the read goes through its guard
        in one feed (a guard costs per feed, and an upstream that writes quickly sends many chunks
        per read), the text released put in the channel's last delta of the read, its earlier ones
        emptied. A deny drops the read's chunks for the ending."""
        parsed: list[tuple[bytes, Any, bytes]] = []  # (raw, the chunk if rewritten, its terminator)
        waiting: dict[Any, list[dict[str, Any]]] = {}  # per channel: deltas whose text is not fed yet
        for raw in events:
            chunk: Any = None
            end = b""
            if b'"choices"' in raw:
                chunk, end = _data(raw)
            if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
                parsed.append((raw, None, end))
                continue
            if not self._base:
                self._base = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
            touched = False
            for choice in chunk["choices"]:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(delta, dict):
                    continue
                index, content = choice.get("index", 0), delta.get("content")
                if isinstance(content, str) and content:
                    waiting.setdefault(index, []).append(delta)
                    touched = True
                if delta.get("tool_calls") or choice.get("finish_reason"):  # the channel's text ends here
                    held = self._channels.close(index) if self._settle(index, waiting) else None
                    if held is None:
                        return self._deny()
                    if held:
                        delta["content"], touched = (delta.get("content") or "") + held, True
            parsed.append((raw, chunk if touched else None, end))
        for index in list(waiting):
            if not self._settle(index, waiting):
                return self._deny()
        # A chunk left with nothing to say (its text moved to a later chunk of the read) is dropped.
        return b"".join(raw if chunk is None else _framed(raw, chunk, end) for raw, chunk, end in parsed if not _emptied(chunk))

    def _settle(self, key: Any, waiting: dict[Any, list[dict[str, Any]]]) -> bool:
        """Feed a channel's waiting deltas as one text; False if that was denied."""
        deltas = waiting.pop(key, None)
        if not deltas:
            return True
        text = self._channels.feed(key, "".join(d["content"] for d in deltas))
        if text is None:
            return False
        for delta in deltas:
            delta["content"] = ""
        deltas[-1]["content"] = text
        return True

    def _openai_responses(self, raw: bytes) -> bytes:
        event, end = _data(raw)
        if not isinstance(event, dict):
            return raw
        kind = event.get("type")
        numbered = isinstance(event.get("sequence_number"), int)
        number = event["sequence_number"] + self._shift if numbered else self._sequence + 1
        changed = bool(self._shift)
        before = b""
        key = (event.get("output_index"), event.get("content_index"))
        if kind == "response.created" and isinstance(event.get("response"), dict):
            self._response = event["response"]
        elif kind == "response.output_item.added" and isinstance(event.get("item"), dict):
            self._items[key[0]] = event["item"]
        elif kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            text = self._channels.feed(key, event["delta"])
            if text is None:
                return self._deny()
            self._masked[key] = self._masked.get(key, "") + text
            event["delta"], changed = text, True
        elif kind == "response.output_text.done":
            held = self._channels.close(key)
            if held is None:
                return self._deny()
            if held:  # one more delta before the done: the events after it are renumbered
                self._masked[key] = self._masked.get(key, "") + held
                fields = {"item_id": event.get("item_id"), "output_index": key[0], "content_index": key[1], "delta": held, "logprobs": []}
                before = self._responses_event("response.output_text.delta", fields)
                self._shift += 1
                number += 1
            if key in self._masked:
                event["text"], changed = self._masked[key], True
        elif kind == "response.content_part.done":
            changed = self._put_part(key, event.get("part")) or changed
        elif kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            self._items[key[0]] = event["item"]
            changed = self._put_item(key[0], event["item"]) or changed
        elif kind in ("response.completed", "response.incomplete", "response.failed") and isinstance(event.get("response"), dict):
            for index, item in enumerate(event["response"].get("output") or ()):
                changed = self._put_item(index, item) or changed
        self._sequence = number
        if not changed:
            return raw
        if numbered:
            event["sequence_number"] = number
        return before + _framed(raw, event, end)

    def _put_part(self, key: tuple[Any, Any], part: Any) -> bool:
        if isinstance(part, dict) and part.get("type") == "output_text" and key in self._masked:
            part["text"] = self._masked[key]
            return True
        return False

    def _put_item(self, index: Any, item: Any) -> bool:
        if not isinstance(item, dict) or not isinstance(item.get("content"), list):
            return False
        return any([self._put_part((index, i), part) for i, part in enumerate(item["content"])])

    def _responses_event(self, kind: str, fields: dict[str, Any]) -> bytes:
        """An event the gateway adds, numbered after the last one sent."""
        self._sequence += 1
        return sse_frame(orjson.dumps({"type": kind, "sequence_number": self._sequence, **fields}), kind)

    def _anthropic(self, raw: bytes) -> bytes:
        if b"content_block_delta" not in raw and b"content_block_stop" not in raw:
            return raw
        event, end = _data(raw)
        if not isinstance(event, dict):
            return raw
        index = event.get("index")
        if event.get("type") == "content_block_delta":
            delta = event.get("delta")
            if not isinstance(delta, dict) or delta.get("type") != "text_delta" or not isinstance(delta.get("text"), str):
                return raw
            text = self._channels.feed(index, delta["text"])
            if text is None:
                return self._deny()
            delta["text"] = text
            return _framed(raw, event, end)
        if event.get("type") == "content_block_stop":
            held = self._channels.close(index)
            if held is None:
                return self._deny()
            return self._tail(index, held) + raw if held else raw
        return raw

    def _gemini(self, raw: bytes) -> bytes:
        if b'"candidates"' not in raw:
            return raw
        chunk, end = _data(raw)
        if not isinstance(chunk, dict) or not isinstance(chunk.get("candidates"), list):
            return raw
        if not self._base:
            self._base = {k: v for k, v in chunk.items() if k in ("modelVersion", "responseId")}
        changed = False
        for candidate in chunk["candidates"]:
            if not isinstance(candidate, dict):
                continue
            index = candidate.get("index", 0)
            content = candidate.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            last: dict[str, Any] | None = None
            kept: list[Any] = []
            for part in parts if isinstance(parts, list) else ():
                if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought"):
                    text = self._channels.feed(index, part["text"])
                    if text is None:
                        return self._deny()
                    part["text"], last, changed = text, part, True
                elif isinstance(part, dict) and "functionCall" in part:  # the text before a call goes first
                    held = self._channels.close(index)
                    if held is None:
                        return self._deny()
                    if held:
                        kept.append({"text": held})
                        changed = True
                kept.append(part)
            if changed and isinstance(parts, list):
                parts[:] = kept
            if candidate.get("finishReason"):
                held = self._channels.close(index)
                if held is None:
                    return self._deny()
                if held:
                    if last is not None:
                        last["text"] += held
                    else:
                        candidate.setdefault("content", {"role": "model"}).setdefault("parts", []).append({"text": held})
                    changed = True
        return _framed(raw, chunk, end) if changed else raw

    # -- the end of a stream --------------------------------------------------------------------

    def _tail(self, key: Any, text: str) -> bytes:
        """Held text released at a channel's end, as one more delta event of the wire."""
        if self._wire == "anthropic":
            return sse_frame(orjson.dumps({"type": "content_block_delta", "index": key, "delta": {"type": "text_delta", "text": text}}), "content_block_delta")
        if self._wire == "openai_chat":
            chunk = {**self._base, "choices": [{"index": key, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]}
            return sse_frame(orjson.dumps(chunk))
        if self._wire == "gemini":
            chunk = {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": key}], **self._base}
            return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"
        output_index, content_index = key
        self._masked[key] = self._masked.get(key, "") + text
        fields = {"item_id": (self._items.get(output_index) or {}).get("id"), "output_index": output_index, "content_index": content_index, "delta": text, "logprobs": []}
        return self._responses_event("response.output_text.delta", fields)

    def _deny(self) -> bytes:
        """The surface's end of a denied stream; nothing more goes to the client."""
        self.ended = True
        denied = self._channels.denied
        assert denied is not None
        if self._wire == "anthropic":
            return anthropic.encode_error_event(refused(denied))
        if self._wire == "openai_chat":
            indexes = sorted({k for k in self._channels.keys()} | {0})
            choices = [{"index": i, "delta": {}, "logprobs": None, "finish_reason": "content_filter"} for i in indexes]
            return sse_frame(orjson.dumps({**self._base, "choices": choices})) + b"data: [DONE]\n\n"
        if self._wire == "gemini":
            indexes = sorted({k for k in self._channels.keys()} | {0})
            chunk = {"candidates": [{"finishReason": "SAFETY", "index": i} for i in indexes], **self._base}
            return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"
        return self._responses_incomplete()

    def _responses_incomplete(self) -> bytes:
        """A denied Responses stream: each message still open ends `incomplete` with the (masked)
        text sent so far, then the response ends `incomplete`, reason content_filter."""
        out = b""
        output = []
        for index in sorted(self._items):
            item = self._items[index]
            if item.get("type") == "message" and item.get("status") == "in_progress":
                parts = [
                    {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                    for (oi, _), text in sorted(self._masked.items()) if oi == index
                ]  # fmt: skip
                item = {**item, "content": parts, "status": "incomplete"}
                out += self._responses_event("response.output_item.done", {"output_index": index, "item": item})
            output.append(item)
        response = {**(self._response or {}), "status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "output": output}
        return out + self._responses_event("response.incomplete", {"response": response})


def _emptied(chunk: Any) -> bool:
    """A chat chunk whose one choice's delta is an empty text and nothing else."""
    if chunk is None or chunk.get("usage") is not None or len(chunk["choices"]) != 1:
        return False
    choice = chunk["choices"][0]
    delta = choice.get("delta")
    return (
        delta == {"content": ""} and choice.get("finish_reason") is None and choice.get("logprobs") is None
        and set(choice) <= {"index", "delta", "finish_reason", "logprobs"}
    )  # fmt: skip


def _data(raw: bytes) -> tuple[Any, bytes]:
    """The parsed `data:` of one SSE event (None if it has none, or it is not JSON), and the event's terminator."""
    end = b"\r\n\r\n" if raw.endswith(b"\r\n\r\n") else b"\n\n"
    for line in raw.splitlines():
        if line.startswith(b"data:"):
            try:
                return orjson.loads(line[5:]), end
            except orjson.JSONDecodeError:
                return None, end
    return None, end


def _framed(raw: bytes, data: Any, end: bytes) -> bytes:
    """`raw` with its data line replaced by `data`, its other lines (`event:`) as they were."""
    if raw.startswith(b"data:") and raw.count(b"\n") == 2:  # the usual event: one data line
        return b"data: " + orjson.dumps(data) + end
    newline = b"\r\n" if end == b"\r\n\r\n" else b"\n"
    lines = [b"data: " + orjson.dumps(data) if line.startswith(b"data:") else line for line in raw.splitlines() if line]
    return newline.join(lines) + end


# --- the agent's model turns (/mlflow/v1/responses) -------------------------------------------------------


async def check_response_items(call: Call, endpoint: Endpoint, answer: dict[str, Any]) -> None:
    """A whole model turn of the agent loop (a Response object), checked: its message text is what
    the client gets. A mask is written in place; a deny raises the policy's 400."""
    slots = await run_heavy(text_slots, answer, RESULT_WALKERS["openai_responses"])
    outcome = await endpoint.policies.run(slots.texts, context(call, endpoint))
    call.policy_runs.extend(outcome.runs)
    if outcome.action in ("deny", "ask"):
        raise refused(outcome)
    if outcome.action == "mask":
        slots.write(outcome.texts)


class ResponsesEventGuard:
    """A streamed model turn of the agent loop: Responses event objects in, checked ones out (the
    pass-through guard's rules: a deny turns into `response.incomplete` with reason content_filter,
    which ends the turn and so the response)."""

    def __init__(self, call: Call, endpoint: Endpoint) -> None:
        self._guard = PassedStreamGuard("openai_responses", endpoint, context(call, endpoint), None)

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        return _parsed(self._guard.feed(sse_frame(orjson.dumps(event), kind if isinstance(kind, str) else None)))

    def flush(self) -> list[dict[str, Any]]:
        return _parsed(self._guard.flush())

    @property
    def denied(self) -> bool:
        return self._guard.ended

    def runs(self) -> list[PolicyRun]:
        return self._guard.runs()


def _parsed(data: bytes) -> list[dict[str, Any]]:
    from aigw.surfaces.chat_flow import _split_events

    events = (_data(raw)[0] for raw in _split_events(data)) if data else ()
    return [event for event in events if isinstance(event, dict)]
