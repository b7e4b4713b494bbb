"""The OpenAI-shaped surface: chat completions, embeddings and models. Served as the unified API
(`/mlflow/v1`) and as OpenAI's native API (`/openai/v1`, with `/cursor/v1` for Cursor and `/codex/v1`
for Codex CLI as aliases),
to any client of OpenAI's wire format, whatever provider is behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from aigw.canonical import ChatRequest, ChatResponse, Usage
from aigw.errors import ErrorKind, GatewayError
from aigw.http.asgi import SSE_HEADERS, Request, Send, send_body
from aigw.offload import run_heavy
from aigw.providers.base import Provider
from aigw.surfaces.chat_flow import DecodingStitcher, EventRelay, passed_usage, serve_chat, serve_whole, usage_of_json
from aigw.surfaces.common import Handler, Surface, json_error
from aigw.wire import openai_chat, openai_embeddings
from aigw.wire.schemas import openai as schemas

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

    def stream_relay(self, body: dict[str, Any], max_event_bytes: int) -> EventRelay:
        # The provider always asks the upstream for usage (the gateway counts tokens); a client that
        # did not ask does not get the usage-only chunk.
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        drop = None if include_usage else _is_usage_only
        return EventRelay(
            b'"usage"', openai_chat.usage_in, openai_chat.decode_usage, openai_chat.encode_error_event, drop, max_event_bytes
        )

    def usage_of_body(self, data: bytes) -> Usage | None:
        return usage_of_json(data, openai_chat.usage_in, openai_chat.decode_usage)

    def stitcher(self, body: dict[str, Any], limit: int) -> DecodingStitcher:
        return DecodingStitcher(openai_chat.StreamDecoder(), lambda response: self.encode_response(response, body), limit)


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
        self.open_call(request, "openai_chat")
        await self.authenticate(request)
        body = await self.json_body(request, schemas.ChatCompletionRequest)
        await run_heavy(openai_chat.validate_request, body)
        endpoint, call = await self.begin(request, body["model"], "chat", body=body, wire=openai_chat.WIRE)
        await serve_chat(call, request, send, endpoint, body, self.codec, body.get("stream") is True)

    async def embeddings(self, request: Request, send: Send) -> None:
        self.open_call(request, "openai_embeddings")
        await self.authenticate(request)
        body = await self.json_body(request, schemas.EmbeddingsRequest)
        await run_heavy(openai_embeddings.validate_request, body)
        endpoint, call = await self.begin(request, body["model"], "embeddings", body=body, wire=openai_embeddings.WIRE)
        destinations = endpoint.every_destination()
        passed = all(p.embeddings_wire == openai_embeddings.WIRE for p in destinations)
        canonical = None if passed else await run_heavy(openai_embeddings.decode_request, body)

        async def attempt(provider: Provider) -> tuple[bytes, Usage | None]:
            if provider.embeddings_wire == openai_embeddings.WIRE:
                data = await (await provider.forward_embeddings(body)).read()
                return data, passed_usage(provider, data, _embeddings_usage)
            assert canonical is not None
            response = await provider.embed(canonical)
            encoded = openai_embeddings.encode_response(response, canonical.encoding_format)
            return orjson.dumps(encoded), response.usage

        await serve_whole(call, send, endpoint, attempt)

    async def models(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "aigw"}
            for name in self.queryable(principal, self.gateway.router.names_for())
        ]
        await send_body(send, 200, orjson.dumps({"object": "list", "data": data}))


def _embeddings_usage(data: bytes) -> Usage | None:
    return usage_of_json(data, openai_chat.usage_in, openai_chat.decode_usage)


def _is_usage_only(event: bytes) -> bool:
    return b'"usage"' in event and b'"choices":[]' in event.replace(b" ", b"")


def unknown_route(request: Request) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, f"Unknown path: {request.method} {request.path}", code="unknown_url")
