"""What every client-facing surface shares: authentication, body parsing, request tags, and the
one chat flow — pass the body through when the destination speaks the surface's wire format,
translate through the canonical model otherwise — streaming included.

A surface supplies a `ChatCodec` (its wire format's request decoder, response and stream encoders,
in-band stream error, and the names its clients give canonical fields) and `serve_chat` does the
rest, so a rule about chat (recording, limits, fallback) is written once here, not once per surface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from aigw.canonical import ChatRequest, ChatResponse, StreamEvent
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.http.asgi import JSON_HEADERS, EventStream, Request, Send, run_cancellable, send_body
from aigw.http.upstream import UpstreamResponse
from aigw.policies.auth import Principal
from aigw.providers.base import Provider

if TYPE_CHECKING:
    from aigw.app import Gateway

Handler = Callable[[Request, Send], Any]
ErrorRenderer = Callable[[GatewayError], tuple[int, bytes, list[tuple[bytes, bytes]]]]
TAGS_HEADER = "x-aigw-request-tags"


class StreamEncoder(Protocol):
    def encode(self, event: StreamEvent) -> bytes: ...

    def finish(self) -> bytes: ...

    def error(self, error: GatewayError) -> bytes:
        """An error after the stream has started, framed in-band for this wire format."""
        ...


class StreamRelay(Protocol):
    """Pass-through stream filter: bytes in, bytes out, cut at event boundaries."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class RawRelay:
    """The identity relay: every byte as it came."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def flush(self) -> bytes:
        return b""


class ChatCodec(Protocol):
    """One surface's wire format, as `serve_chat` needs it."""

    wire: str
    stream_headers: list[tuple[bytes, bytes]]
    # Canonical request field -> the field this wire's clients set it with (`n` ->
    # `generationConfig.candidateCount`): a provider's 400 about a canonical field names the client's.
    param_names: Mapping[str, str]

    def decode_request(self, body: Any) -> ChatRequest: ...

    def encode_response(self, response: ChatResponse, body: dict[str, Any]) -> bytes: ...

    def stream_encoder(self, request: ChatRequest, body: dict[str, Any]) -> StreamEncoder: ...

    def stream_relay(self, body: dict[str, Any]) -> StreamRelay: ...

    def relay_error(self, error: GatewayError) -> bytes:
        """An error in the middle of a passed-through stream, framed in-band for this wire format."""
        ...


def parse_json(body: bytes) -> Any:
    if not body:
        raise invalid("The request body is empty; expected a JSON object.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON: {exc}.") from None


def request_tags(request: Request) -> dict[str, str]:
    """The `X-Aigw-Request-Tags` header: a JSON object of strings kept with the request."""
    raw = request.headers.get(TAGS_HEADER)
    if not raw:
        return {}
    try:
        tags = orjson.loads(raw)
    except orjson.JSONDecodeError:
        tags = None
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise invalid(f"The {TAGS_HEADER} header must be a JSON object of strings.", TAGS_HEADER)
    return tags


class Surface:
    """Base of every surface: the gateway, and the steps each request starts with."""

    # Paths under these prefixes that match no route still get this surface's error shape.
    path_prefixes: tuple[str, ...] = ()

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        """(method, path, handler) triples; a path ending in `/*` matches every path under it."""
        raise NotImplementedError

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        raise NotImplementedError

    async def authenticate(self, request: Request) -> Principal:
        return await self.gateway.auth.authenticate(request.headers, request.query)

    def authorize(self, principal: Principal, endpoint: str) -> None:
        """403 unless `principal` may query `endpoint`: every handler that names an endpoint calls
        this. An endpoint that does not exist passes, so it gets the router's 404 whether this runs
        before or after the endpoint is resolved."""
        if endpoint in self.gateway.router.endpoints:
            self.gateway.permissions.require_query(principal, endpoint)

    def queryable(self, principal: Principal, names: Iterable[str]) -> list[str]:
        """`names` without the endpoints `principal` may not query: what the model lists show."""
        return self.gateway.permissions.queryable(principal, names)

    async def json_body(self, request: Request) -> Any:
        return parse_json(await request.body(self.gateway.settings.server.max_request_bytes))


async def serve_chat(
    request: Request,
    send: Send,
    provider: Provider,
    body: dict[str, Any],
    codec: ChatCodec,
    stream: bool,
    vendor_headers: dict[str, str] | None = None,
) -> None:
    """Answer one chat request through `provider`, in `codec`'s wire format."""
    if codec.wire in provider.chat_wires:
        relay = codec.stream_relay(body) if stream else None  # from the client's body, as sent
        upstream = await provider.forward(codec.wire, body, stream, vendor_headers)
        if relay is not None:
            work = _relay_stream(upstream, EventStream(send), relay, codec, codec.stream_headers)
            await run_cancellable(request.receive, work)
        else:
            await send_body(send, 200, await upstream.read())
        return

    canonical = codec.decode_request(body)
    if stream:
        events = provider.stream_chat(canonical).__aiter__()
        try:
            first = await events.__anext__()  # the upstream call: errors here are still plain responses
        except StopAsyncIteration:
            raise GatewayError(ErrorKind.UPSTREAM_ERROR, f"Destination '{provider.label}' sent an empty stream.") from None
        except GatewayError as error:
            raise in_client_terms(error, codec.param_names) from None
        encoder = codec.stream_encoder(canonical, body)
        await run_cancellable(request.receive, _encode_stream(first, events, encoder, EventStream(send), codec))
    else:
        try:
            response = await provider.chat(canonical)
        except GatewayError as error:
            raise in_client_terms(error, codec.param_names) from None
        await send_body(send, 200, codec.encode_response(response, body))


def in_client_terms(error: GatewayError, names: Mapping[str, str]) -> GatewayError:
    """A 400 naming a canonical request field (a provider's encoder refused what its upstream cannot
    do) renamed to the field the client set, in `param` and where the message quotes it. A path
    inside a field without a name of its own (`messages[3].tool_call_id`) takes the field's name:
    canonical indexes need not count as the client's do. Errors naming no field (the upstream's
    own) are the client's already."""
    if error.kind is not ErrorKind.INVALID_REQUEST or not error.param:
        return error
    quoted: list[str] = []  # the param and the fields it lies in, up to the one `names` knows
    for field in _fields(error.param):
        quoted.append(field)
        if field in names:
            break
    else:
        return error
    name, message = names[quoted[-1]], error.message
    for field in quoted:
        message = message.replace(f"'{field}'", f"'{name}'")
    return GatewayError(
        error.kind, message, status=error.status, param=name, code=error.code, headers=error.headers,
        retryable=error.retryable,
    )  # fmt: skip


def _fields(path: str) -> Iterator[str]:
    """`messages[3].content` -> itself, `messages[3]`, `messages`."""
    while path:
        yield path
        path = path[: max(path.rfind("."), path.rfind("["), 0)]


async def _relay_stream(
    upstream: UpstreamResponse, out: EventStream, relay: StreamRelay, codec: ChatCodec, headers: list[tuple[bytes, bytes]]
) -> None:
    await out.start(headers)
    try:
        async for chunk in upstream.iter_chunks():
            await out.write(relay.feed(chunk))
        await out.write(relay.flush())
    except GatewayError as error:
        await out.write(codec.relay_error(error))
    finally:
        upstream.close()
    await out.close()


async def _encode_stream(
    first: StreamEvent, events: AsyncIterator[StreamEvent], encoder: StreamEncoder, out: EventStream, codec: ChatCodec
) -> None:
    await out.start(codec.stream_headers)
    try:
        await out.write(encoder.encode(first))
        async for event in events:
            await out.write(encoder.encode(event))
        await out.write(encoder.finish())
    except GatewayError as error:
        await out.write(encoder.error(error))  # headers are gone: report in-band
    await out.close()


def json_error(status: int, body: dict[str, Any], error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """A rendered error: status, JSON body, and the error's headers (Retry-After, ...)."""
    headers = JSON_HEADERS + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    return status, orjson.dumps(body), headers

