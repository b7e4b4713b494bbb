"""What a provider is: transport (URL, auth, capabilities) plus the mapping to its wire format.

`Provider` is the interface the router calls. `HttpProvider` implements it for every provider that
talks HTTP, in terms of a few small hooks (build the upstream request, parse the answer, decode the
stream, read an error), so a new provider is one module of hooks and one registry line.

Pass-through: a provider whose API speaks wire format W (W in `chat_wires`) can take a body that a
client sent in W and forward it nearly untouched (`forward`), keeping every vendor feature working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Protocol, TypeVar

import orjson

from aigw.canonical import (
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, StreamEvent, estimate_request_tokens,
)  # fmt: skip
from aigw.config import DestinationConfig
from aigw.errors import ErrorKind, GatewayError
from aigw.http.sse import SSEEvent, SSEParser
from aigw.http.upstream import UpstreamClient, UpstreamLimits, UpstreamRequest, UpstreamResponse
from aigw.offload import run_heavy


T = TypeVar("T")


class StreamDecoder(Protocol):
    """Turns an upstream's SSE events into canonical stream events (a small state machine)."""

    def feed(self, event: SSEEvent) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]:
        """Called when the upstream stream ends; returns any events still owed (e.g. a Finish)."""
        ...


class Provider:
    """One destination: a provider kind bound to its configuration and the shared HTTP client."""

    kind: ClassVar[str]  # registry name, e.g. "openai"
    chat_wires: ClassVar[frozenset[str]] = frozenset()  # chat wire formats it takes as they are
    embeddings_wire: ClassVar[str | None] = None  # wire format of its embeddings API, likewise
    tasks: ClassVar[frozenset[str]] = frozenset({"chat"})

    def __init__(self, destination: DestinationConfig, client: UpstreamClient) -> None:
        self.destination = destination
        self.client = client
        self.label = destination.label
        self.limits = UpstreamLimits(destination.timeout, destination.total_timeout, destination.max_response_bytes)

    @classmethod
    def check_config(cls, destination: DestinationConfig, tasks: frozenset[str]) -> tuple[str, str] | None:
        """A (key, problem) pair if this destination cannot work as configured, else None."""
        unsupported = tasks - cls.tasks
        if unsupported:
            return "provider", f"'{cls.kind}' does not support task(s) {', '.join(sorted(unsupported))}"
        return None

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError

    async def embed(self, request: EmbeddingsRequest) -> EmbeddingsResponse:
        raise GatewayError(ErrorKind.INVALID_REQUEST, f"Destination '{self.label}' does not serve embeddings.")

    async def forward(
        self, wire: str, body: dict[str, Any], stream: bool, headers: dict[str, str] | None = None
    ) -> UpstreamResponse:
        """Pass-through: send a body already in `wire` format (one of `chat_wires`), with the client's vendor headers
        worth keeping (`anthropic-beta`, ...); return the raw upstream response (status checked:
        errors raise GatewayError)."""
        raise NotImplementedError

    async def forward_embeddings(self, body: dict[str, Any]) -> UpstreamResponse:
        """Pass-through for a body already in `embeddings_wire` format."""
        raise NotImplementedError

    async def count_tokens(self, request: ChatRequest) -> int:
        """The input tokens of `request`: the provider's own count where it has such a call, else
        the gateway's estimate."""
        return estimate_request_tokens(request)

    def malformed(self, detail: str) -> GatewayError:
        """A 200 that is not an answer (not JSON, not an event stream, events the decoder cannot
        read). Retryable: it is this destination's failure (a proxy's HTML page, a broken server),
        and another destination, or a later try, may answer."""
        return GatewayError(
            ErrorKind.UPSTREAM_ERROR, f"Destination '{self.label}' sent a response the gateway could not read ({detail}).", retryable=True
        )

    async def forward_count_tokens(
        self, wire: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> UpstreamResponse:
        """Pass-through of a token-count request already in `wire` format (one of `chat_wires`)."""
        raise NotImplementedError


class HttpProvider(Provider):
    """A provider reached over HTTP. Subclasses fill in the hooks below."""

    # --- hooks -------------------------------------------------------------------------------------

    def chat_request(self, request: ChatRequest, stream: bool) -> UpstreamRequest:
        raise NotImplementedError

    def parse_chat(self, body: bytes) -> ChatResponse:
        raise NotImplementedError

    def stream_decoder(self) -> StreamDecoder:
        raise NotImplementedError

    def forward_request(
        self, wire: str, body: dict[str, Any], stream: bool, headers: dict[str, str] | None = None
    ) -> UpstreamRequest:
        raise NotImplementedError

    def forward_embeddings_request(self, body: dict[str, Any]) -> UpstreamRequest:
        raise NotImplementedError

    def embeddings_request(self, request: EmbeddingsRequest) -> UpstreamRequest:
        raise NotImplementedError

    def parse_embeddings(self, body: bytes, request: EmbeddingsRequest) -> EmbeddingsResponse:
        raise NotImplementedError

    def count_tokens_request(self, request: ChatRequest) -> UpstreamRequest | None:
        """The upstream's token-count call for `request`, or None where it has none."""
        return None

    def parse_count_tokens(self, body: bytes) -> int:
        raise NotImplementedError

    def forward_count_tokens_request(
        self, wire: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> UpstreamRequest:
        raise NotImplementedError

    def error_message(self, body: bytes) -> str | None:
        """The upstream's own error message from an error body, if it has one."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if isinstance(data, list) and data:  # Gemini's JSON-array streams wrap errors too
            data = data[0]
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        return None

    # --- the interface, in terms of the hooks -------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._exchange(await run_heavy(self.chat_request, request, False), self.parse_chat)

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        response = await self._send(await run_heavy(self.chat_request, request, True))
        async for event in self.decode_stream(response):
            yield event

    async def decode_stream(self, response: UpstreamResponse) -> AsyncIterator[StreamEvent]:
        parser, decoder = SSEParser(self.destination.max_event_bytes), self.stream_decoder()
        try:
            async for chunk in response.iter_chunks():
                for sse in parser.feed(chunk):
                    for event in decoder.feed(sse):
                        yield event
            for sse in parser.flush():
                for event in decoder.feed(sse):
                    yield event
            for event in decoder.finish():
                yield event
        except GatewayError:
            raise
        except Exception as exc:
            raise self._malformed(exc) from None
        finally:
            response.close()

    async def forward(
        self, wire: str, body: dict[str, Any], stream: bool, headers: dict[str, str] | None = None
    ) -> UpstreamResponse:
        response = await self._send(await run_heavy(self.forward_request, wire, body, stream, headers))
        if stream and not response.headers.get("content-type", "").lower().startswith("text/event-stream"):
            # Relayed as it is, anything else would reach the client as a stream without events.
            response.close()
            raise self.malformed(f"a stream was asked for, it answered {response.headers.get('content-type') or 'no content-type'}")
        return response

    async def forward_embeddings(self, body: dict[str, Any]) -> UpstreamResponse:
        return await self._send(self.forward_embeddings_request(body))

    async def forward_count_tokens(
        self, wire: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> UpstreamResponse:
        return await self._send(self.forward_count_tokens_request(wire, body, headers))

    async def count_tokens(self, request: ChatRequest) -> int:
        upstream = self.count_tokens_request(request)
        if upstream is None:
            return await super().count_tokens(request)
        return await self._exchange(upstream, self.parse_count_tokens)

    async def embed(self, request: EmbeddingsRequest) -> EmbeddingsResponse:
        if "embeddings" not in self.tasks:
            return await super().embed(request)
        return await self._exchange(self.embeddings_request(request), lambda body: self.parse_embeddings(body, request))

    # --- shared plumbing ---------------------------------------------------------------------------

    async def _exchange(self, request: UpstreamRequest, parse: Callable[[bytes], T]) -> T:
        """Send, read the whole answer, parse it; an upstream that answers 200 with garbage is a 502."""
        response = await self._send(request)
        body = await response.read()
        try:
            return await run_heavy(parse, body, size=len(body))
        except GatewayError:
            raise
        except Exception as exc:
            raise self._malformed(exc) from None

    async def _send(self, request: UpstreamRequest) -> UpstreamResponse:
        response = await self.client.send(request, limits=self.limits, destination=self.label)
        if response.status >= 400:
            body = await response.read()
            raise self.upstream_error(response.status, body, response.headers)
        return response

    def upstream_error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        error = self._upstream_error(status, body, headers)
        error.upstream_status = status
        return error

    def _upstream_error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        """Map an upstream error status to the caller's error, keeping its meaning: 429 stays 429
        (with Retry-After), 5xx becomes 502, the upstream's complaints about the request stay 4xx,
        and a rejected provider key is the gateway's problem (502), not the caller's."""
        upstream_message = self.error_message(body)
        detail = f": {self._redact(upstream_message)}" if upstream_message else ""
        prefix = f"Destination '{self.label}' returned HTTP {status}"
        if status == 429:
            retry_after = headers.get("retry-after")
            return GatewayError(
                ErrorKind.RATE_LIMIT,
                f"{prefix} (rate limited){detail}",
                headers={"retry-after": retry_after} if retry_after else None,
                retryable=True,
            )
        if status in (401, 403):
            return GatewayError(
                ErrorKind.UPSTREAM_ERROR,
                f"{prefix}: the gateway's credentials for it were rejected.",
                code="upstream_authentication_failed",
            )
        if status in (503, 529):
            return GatewayError(ErrorKind.OVERLOADED, f"{prefix} (overloaded){detail}", status=502, retryable=True)
        if status >= 500:
            return GatewayError(ErrorKind.UPSTREAM_ERROR, f"{prefix}{detail}", retryable=True)
        if status == 404:
            return GatewayError(ErrorKind.UPSTREAM_ERROR, f"{prefix} (not found){detail}", code="upstream_not_found")
        kind = ErrorKind.REQUEST_TOO_LARGE if status == 413 else ErrorKind.INVALID_REQUEST
        return GatewayError(kind, f"{prefix}{detail}", status=status if status < 500 else 400)

    def _redact(self, text: str) -> str:
        """Never let an upstream echo our provider key back to the caller."""
        key = self.destination.api_key
        if key and len(key) >= 6:
            text = text.replace(key, "***")
        return text[:2000]

    def _malformed(self, exc: Exception) -> GatewayError:
        return self.malformed(f"{type(exc).__name__}: {exc}")


# Headers a client may never set on a forwarded request: the gateway's credentials and the framing.
RESERVED_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "x-goog-api-key", "content-type", "content-length", "host", "transfer-encoding"}
)


def with_client_headers(own: dict[str, str], client: dict[str, str] | None) -> dict[str, str]:
    """The provider's headers plus the client's vendor headers, never replacing credentials."""
    if not client:
        return own
    return {**own, **{k.lower(): v for k, v in client.items() if k.lower() not in RESERVED_HEADERS}}
