"""The OpenAI-shaped surface: chat completions, embeddings and models. Served as the unified API
(`/mlflow/v1`) and as OpenAI's native API (`/openai/v1`, with `/cursor/v1` for Cursor and `/codex/v1`
for Codex CLI as aliases),
to any client of OpenAI's wire format, whatever provider is behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from aigw.canonical import ChatRequest, ChatResponse
from aigw.errors import ErrorKind, GatewayError
from aigw.http.asgi import SSE_HEADERS, Request, Send, send_body
from aigw.surfaces.common import Handler, Surface, json_error, request_tags, serve_chat
from aigw.wire import openai_chat, openai_embeddings

PREFIXES = ("/mlflow/v1", "/openai/v1", "/cursor/v1", "/codex/v1")


class OpenAIChatCodec:
    wire = openai_chat.WIRE
    stream_headers = SSE_HEADERS
    param_names = openai_chat.PARAM_NAMES

    def decode_request(self, body: Any) -> ChatRequest:
        return openai_chat.decode_request(body)

    def encode_response(self, response: ChatResponse, body: dict[str, Any]) -> bytes:
        return orjson.dumps(openai_chat.encode_response(response))

    def stream_encoder(self, request: ChatRequest, body: dict[str, Any]) -> openai_chat.StreamEncoder:
        return openai_chat.StreamEncoder(request.include_usage)

    def stream_relay(self, body: dict[str, Any]) -> OpenAIStreamRelay:
        return OpenAIStreamRelay(bool((body.get("stream_options") or {}).get("include_usage")))

    def relay_error(self, error: GatewayError) -> bytes:
        return openai_chat.encode_error_event(error)


class OpenAISurface(Surface):
    codec = OpenAIChatCodec()

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        for prefix in PREFIXES:
            yield "POST", prefix + "/chat/completions", self.chat_completions
            yield "POST", prefix + "/embeddings", self.embeddings
            yield "GET", prefix + "/models", self.models

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return json_error(openai_chat.error_status(error), openai_chat.encode_error(error), error)

    async def chat_completions(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        request_tags(request)
        body = await self.json_body(request)
        openai_chat.validate_request(body)
        provider = self.gateway.router.endpoint(body["model"], "chat").destination()
        self.authorize(principal, body["model"])
        # The stream's usage chunk is filtered per client by the relay; the flag itself is re-set
        # upstream by the provider, so the gateway always sees usage.
        await serve_chat(request, send, provider, body, self.codec, body.get("stream") is True)

    async def embeddings(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        request_tags(request)
        body = await self.json_body(request)
        openai_embeddings.validate_request(body)
        provider = self.gateway.router.endpoint(body["model"], "embeddings").destination()
        self.authorize(principal, body["model"])
        if provider.embeddings_wire == openai_embeddings.WIRE:
            upstream = await provider.forward_embeddings(body)
            await send_body(send, 200, await upstream.read())
            return
        canonical = openai_embeddings.decode_request(body)
        response = await provider.embed(canonical)
        await send_body(send, 200, orjson.dumps(openai_embeddings.encode_response(response, canonical.encoding_format)))

    async def models(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "aigw"}
            for name in self.queryable(principal, self.gateway.router.names_for())
        ]
        await send_body(send, 200, orjson.dumps({"object": "list", "data": data}))


class OpenAIStreamRelay:
    """Passes complete SSE events through untouched. Work per chunk is a couple of byte searches;
    events are only looked at one by one in the rare chunk that carries usage. The gateway always
    asks the upstream for usage; a client that did not ask does not get the usage-only chunk."""

    __slots__ = ("include_usage", "_pending")

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        if b"\r" in data:  # CRLF framing: normalise so events split on blank lines
            data = data.replace(b"\r\n", b"\n")
        cut = data.rfind(b"\n\n") + 2
        if cut < 2:
            self._pending = data
            return b""
        ready, self._pending = data[:cut], data[cut:]
        if b'"usage"' in ready and not self.include_usage:
            events = ready.split(b"\n\n")
            ready = b"".join(e + b"\n\n" for e in events if e and not _is_usage_only(e))
        return ready

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self.feed(rest + b"\n\n") if rest.strip() else b""


def _is_usage_only(event: bytes) -> bool:
    return b'"usage"' in event and b'"choices":[]' in event.replace(b" ", b"")


def unknown_route(request: Request) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, f"Unknown path: {request.method} {request.path}")
