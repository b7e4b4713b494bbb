"""The OpenAI-shaped surface: chat completions, embeddings and models, as the unified API
(`/mlflow/v1/...`) serves them to any client of OpenAI's wire format, whatever provider is behind.

Same wire format behind (OpenAI, Azure, OpenAI-compatible): the body is passed through with only
`model` changed, and the stream relayed event by event. Otherwise: decode to the canonical model, let
the provider translate, encode the answer back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from aigw.canonical import StreamEvent
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.http.asgi import JSON_HEADERS, EventStream, Request, Send, header_list, run_cancellable, send_body
from aigw.http.sse import sse_frame
from aigw.http.upstream import UpstreamResponse
from aigw.policies.auth import Principal
from aigw.wire import openai_chat, openai_embeddings

if TYPE_CHECKING:
    from aigw.app import Gateway


def parse_json(body: bytes) -> Any:
    if not body:
        raise invalid("The request body is empty; expected a JSON object.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON: {exc}.") from None


class OpenAISurface:
    """Handlers for OpenAI-shaped routes. Every handler authenticates first, then works."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def _authenticate(self, request: Request) -> Principal:
        return await self.gateway.auth.authenticate(request.headers, request.query)

    async def _json_body(self, request: Request) -> Any:
        return parse_json(await request.body(self.gateway.settings.server.max_request_bytes))

    # --- chat completions --------------------------------------------------------------------------

    async def chat_completions(self, request: Request, send: Send) -> None:
        await self._authenticate(request)
        body = await self._json_body(request)
        openai_chat.validate_request(body)
        endpoint = self.gateway.router.endpoint(body["model"], "chat")
        provider = endpoint.destination()
        stream = body.get("stream") is True
        if provider.chat_wire == openai_chat.WIRE:
            if stream:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                upstream = await provider.forward(body, stream=True)
                await run_cancellable(request.receive, _relay_stream(upstream, EventStream(send), include_usage))
            else:
                upstream = await provider.forward(body, stream=False)
                await send_body(send, 200, await upstream.read())
            return

        canonical = openai_chat.decode_request(body)
        if stream:
            events = provider.stream_chat(canonical).__aiter__()
            first = await events.__anext__()  # the upstream call: errors here are still plain JSON
            encoder = openai_chat.StreamEncoder(canonical.include_usage)
            await run_cancellable(request.receive, _encode_stream(first, events, encoder, EventStream(send)))
        else:
            response = await provider.chat(canonical)
            await send_body(send, 200, orjson.dumps(openai_chat.encode_response(response)))

    # --- embeddings --------------------------------------------------------------------------------

    async def embeddings(self, request: Request, send: Send) -> None:
        await self._authenticate(request)
        body = await self._json_body(request)
        openai_embeddings.validate_request(body)
        endpoint = self.gateway.router.endpoint(body["model"], "embeddings")
        provider = endpoint.destination()
        if provider.embeddings_wire == openai_embeddings.WIRE:
            upstream = await provider.forward_embeddings(body)
            await send_body(send, 200, await upstream.read())
            return
        canonical = openai_embeddings.decode_request(body)
        response = await provider.embed(canonical)
        await send_body(send, 200, orjson.dumps(openai_embeddings.encode_response(response, canonical.encoding_format)))

    # --- models ------------------------------------------------------------------------------------

    async def models(self, request: Request, send: Send) -> None:
        await self._authenticate(request)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "aigw"}
            for name in sorted(self.gateway.router.endpoints)
        ]
        await send_body(send, 200, orjson.dumps({"object": "list", "data": data}))

    # --- errors ------------------------------------------------------------------------------------

    @staticmethod
    def error_response(error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return (
            openai_chat.error_status(error),
            orjson.dumps(openai_chat.encode_error(error)),
            JSON_HEADERS + header_list(error.headers),
        )


async def _relay_stream(upstream: UpstreamResponse, out: EventStream, include_usage: bool) -> None:
    """Relay an OpenAI-wire stream as it arrives, byte for byte, cut only at event boundaries.
    The gateway always asks the upstream for usage; a client that did not ask for it does not get
    the usage-only chunk."""
    relay = OpenAIStreamRelay(include_usage)
    await out.start()
    try:
        async for chunk in upstream.iter_chunks():
            await out.write(relay.feed(chunk))
        await out.write(relay.flush())
    except GatewayError as error:
        await out.write(sse_frame(orjson.dumps(openai_chat.encode_error(error))))
    finally:
        upstream.close()
    await out.close()


class OpenAIStreamRelay:
    """Passes complete SSE events through untouched. Work per chunk is a couple of byte searches;
    events are only looked at one by one in the rare chunk that carries usage."""

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


async def _encode_stream(
    first: StreamEvent, events: AsyncIterator[StreamEvent], encoder: openai_chat.StreamEncoder, out: EventStream
) -> None:
    await out.start()
    try:
        await out.write(encoder.encode(first))
        async for event in events:
            await out.write(encoder.encode(event))
        await out.write(encoder.finish())
    except GatewayError as error:
        # Headers are gone: report in-band, as OpenAI does, and end the stream.
        await out.write(sse_frame(orjson.dumps(openai_chat.encode_error(error))))
    await out.close()


def unknown_route(request: Request) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, f"Unknown path: {request.method} {request.path}")
