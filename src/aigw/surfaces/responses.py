"""OpenAI's Responses API at /openai/v1/responses, and at /codex/v1/responses for Codex CLI.

Passed through to destinations that serve the Responses API (OpenAI, Azure OpenAI), so every field
and event of it keeps working, `store`, `previous_response_id` and `item_reference` included (the
vendor keeps the state and resolves its own ids); translated through the canonical model to chat
for every other provider.

Where state lives. An OpenAI client expects `store` (true by default), `previous_response_id` and
`item_reference` to work. For an endpoint that no destination serves natively the gateway keeps the
state, in the same store and through the same code (surfaces/stored_responses.py) as the agent API
at /mlflow/v1/responses: history and references are read from the store and sent to the model as
items; the answer gets an id the gateway minted and, unless `store` is false, is saved before its
end reaches the client (as the agent API saves), so the next turn finds it. The OpenAI SDK's
`responses.retrieve`, `.delete` and `.input_items.list` are served from that store. The agent loop
itself (hosted tools, background runs) stays at /mlflow/v1: this path remains a plain model call,
byte for byte the translated answer it was, so the two share state without sharing behaviour.

A request that neither stores nor refers to stored state (`store: false`, no
`previous_response_id`, no `item_reference`: what Codex CLI sends, with its full history) costs no
store round trip. Endpoints served natively keep the vendor's state: the gateway does not fetch a
vendor's stored responses, so `GET /responses/{id}` for an id it did not mint is a 404. An endpoint
mixing both kinds of destination stays stateless in the gateway: its requests must be translatable
for any of them, so stored state (`previous_response_id`, `item_reference`) is a 400, and an answer
from a translated destination is not stored; a response stored by the vendor could not be continued
by the other destinations, nor one stored by the gateway by the vendor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from aigw.agent import conversation
from aigw.call import Call
from aigw.canonical import ChatRequest, ChatResponse, Usage
from aigw.errors import GatewayError, invalid
from aigw.http.asgi import SSE_HEADERS, Request, Send
from aigw.http.sse import SSEParser, sse_frame
from aigw.offload import run_heavy
from aigw.policies.auth import Principal
from aigw.routing import Endpoint
from aigw.store.responses import ResponseStore, StoredResponse
from aigw.surfaces import stored_responses
from aigw.surfaces.chat_flow import EventRelay, serve_chat, usage_of_json
from aigw.surfaces.common import Handler, json_error
from aigw.surfaces.stored_responses import StoredResponseRoutes
from aigw.wire import openai_chat, openai_responses, openai_responses_stream
from aigw.wire.schemas.responses import ResponsesRequest

PREFIXES = ("/openai/v1", "/codex/v1")
TERMINAL_EVENTS = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')


class ResponsesCodec:
    wire = openai_responses.WIRE
    stream_headers = SSE_HEADERS
    param_names = openai_responses.PARAM_NAMES

    def decode_request(self, body: Any) -> ChatRequest:
        if body.get("background"):
            raise invalid("background responses need a stored response, which this destination does not keep (/mlflow/v1/responses keeps them for any destination).", "background")
        return openai_responses.decode_request(body)

    def encode_response(self, response: ChatResponse, body: dict[str, Any]) -> bytes:
        return orjson.dumps(openai_responses.encode_response(response, body))

    def stream_encoder(self, request: ChatRequest, body: dict[str, Any]) -> openai_responses_stream.StreamEncoder:
        return openai_responses_stream.StreamEncoder(body)

    def stream_relay(self, body: dict[str, Any], max_event_bytes: int) -> ResponsesRelay:
        return ResponsesRelay(max_event_bytes)

    def usage_of_body(self, data: bytes) -> Usage | None:
        return usage_of_json(data, openai_responses.usage_in, openai_responses.decode_usage)

    def stitcher(self, body: dict[str, Any], limit: int) -> FinalResponseStitcher:
        return FinalResponseStitcher(limit)


class StoredResponsesCodec(ResponsesCodec):
    """One translated request whose state the gateway keeps: its answer gets the id the gateway
    minted, `previous_response_id` (resolved already, its history in `input`) is echoed but not
    decoded, and `settle` hands the finished Response to `keep` (None: store is false)."""

    def __init__(self, response_id: str, keep: Callable[[dict[str, Any]], Awaitable[None]] | None) -> None:
        self.response_id = response_id
        self._keep = keep
        self._whole: dict[str, Any] | None = None
        self._encoder: openai_responses_stream.StreamEncoder | None = None

    def decode_request(self, body: Any) -> ChatRequest:
        return super().decode_request({k: v for k, v in body.items() if k != "previous_response_id"})

    def encode_response(self, response: ChatResponse, body: dict[str, Any]) -> bytes:
        whole = openai_responses.encode_response(response, body)
        whole["id"] = self.response_id
        if self._whole is None:
            self._whole = whole
        return orjson.dumps(whole)

    def stream_encoder(self, request: ChatRequest, body: dict[str, Any]) -> openai_responses_stream.StreamEncoder:
        self._encoder = openai_responses_stream.StreamEncoder(body, response_id=self.response_id)
        return self._encoder

    async def settle(self) -> None:
        final = self._encoder.final if self._encoder is not None else self._whole
        if final is not None and self._keep is not None:
            await self._keep(final)


class FinalResponseStitcher:
    """A passed-through Responses stream's whole response: the one its terminal event
    (response.completed, .incomplete or .failed) carries. Every event's content is in that
    response, so one event over `limit` bytes means the response is too: it stops collecting."""

    def __init__(self, limit: int) -> None:
        self._parser = SSEParser(limit)
        self._response = b""
        self._over = False

    def feed(self, chunk: bytes) -> None:
        if self._over:
            return
        try:
            events = self._parser.feed(chunk)
        except GatewayError:
            self._over, self._response = True, b""
            return
        for event in events:
            if any(kind in event.data[:64] for kind in TERMINAL_EVENTS):
                try:
                    self._response = orjson.dumps(orjson.loads(event.data).get("response"))
                except (orjson.JSONDecodeError, AttributeError):
                    pass

    def result(self) -> bytes | None:
        return None if self._over else self._response


class ResponsesRelay(EventRelay):
    """A passed-through Responses stream. Besides usage it keeps what an in-band failure must
    continue: the last sequence number and the response begun by `response.created`, so a stream
    that breaks off ends as OpenAI's would, with `error` and `response.failed` in sequence."""

    __slots__ = ("_sequence", "_response")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        super().__init__(
            b'"usage"', openai_responses.usage_in, openai_responses.decode_usage, self._failure, max_event_bytes=max_event_bytes
        )
        self._sequence = -1
        self._response: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> bytes:
        ready = super().feed(chunk)
        at = ready.rfind(b'"sequence_number":')
        if at >= 0:
            digits = ready[at + 18 : at + 40].lstrip().split(b",", 1)[0].split(b"}", 1)[0]
            if digits.isdigit():
                self._sequence = int(digits)
        if self._response is None and b'"response.created"' in ready:
            self._response = _created_response(ready)
        return ready

    def _failure(self, error: GatewayError) -> bytes:
        out = self._event("error", openai_responses.error_event_fields(error))
        if self._response is not None:
            response = {**self._response, "status": "failed", "error": openai_responses.failure(error)}
            out += self._event("response.failed", {"response": response})
        return out

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        self._sequence += 1
        return sse_frame(orjson.dumps({"type": kind, "sequence_number": self._sequence, **fields}), kind)


def _created_response(ready: bytes) -> dict[str, Any] | None:
    for line in ready.splitlines():
        if line.startswith(b"data:") and b'"response.created"' in line:
            try:
                response = orjson.loads(line[5:]).get("response")
            except (orjson.JSONDecodeError, AttributeError):
                return None
            return response if isinstance(response, dict) else None
    return None


class ResponsesSurface(StoredResponseRoutes):
    codec = ResponsesCodec()
    stored_prefixes = PREFIXES
    not_found_note = (
        " Responses stored by a destination that serves the Responses API itself (OpenAI, Azure OpenAI)"
        " are kept by that vendor: the gateway does not retrieve them."
    )

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        for prefix in PREFIXES:
            yield "POST", prefix + "/responses", self.create
        yield from self.stored_routes()

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return json_error(openai_chat.error_status(error), openai_chat.encode_error(error), error)

    async def create(self, request: Request, send: Send) -> None:
        self.open_call(request, "openai_responses")
        principal = await self.authenticate(request)
        body = await self.json_body(request, ResponsesRequest)
        await run_heavy(openai_responses.validate_request, body)
        endpoint, call = await self.begin(request, body["model"], "chat", body=body, wire=openai_responses.WIRE)
        stream = body.get("stream") is True
        if _uses_state(body) and endpoint.none_take(openai_responses.WIRE):
            await self._stateful(call, request, send, endpoint, principal, body, stream)
        else:
            await serve_chat(call, request, send, endpoint, body, self.codec, stream)

    async def _stateful(
        self, call: Call, request: Request, send: Send, endpoint: Endpoint, principal: Principal, body: dict[str, Any], stream: bool
    ) -> None:
        """A translated request with state the gateway keeps: its history and references read from
        the store, its answer stored unless `store` is false."""
        store = self.gateway.agent.responses
        previous = body.get("previous_response_id")
        history = await stored_responses.history(store, principal, previous)
        input = await stored_responses.resolve_references(store, principal, body["input"])
        new_items = await run_heavy(conversation.input_items, input)
        if history:  # a tool output answering a call of the history (400s name the client's input[i])
            await run_heavy(conversation.check, history, new_items)
        response_id = openai_responses.new_id("resp_")
        keep = None
        if body.get("store") is not False:
            stored = StoredResponse(
                id=response_id, principal_id=principal.id, endpoint=endpoint.name, status="in_progress",
                previous_response_id=previous, input_items=new_items, response={},
            )  # fmt: skip
            keep = _keeper(store, stored)
        codec = StoredResponsesCodec(response_id, keep)
        full = {**body, "input": history + new_items}
        settle = codec.settle if keep is not None else None
        await serve_chat(call, request, send, endpoint, full, codec, stream, settle=settle)


def _keeper(store: ResponseStore, stored: StoredResponse) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def keep(response: dict[str, Any]) -> None:
        stored.status, stored.response = response["status"], response
        await stored_responses.save(store, stored)

    return keep


def _uses_state(body: dict[str, Any]) -> bool:
    """Whether a request stores its answer or reads stored state (OpenAI's `store` is true unless
    set false). A cheap look, no store round trip."""
    return body.get("store") is not False or body.get("previous_response_id") is not None or stored_responses.has_references(body["input"])
