"""The one chat flow every surface shares: try the endpoint's destinations in order (see routing);
with each, pass the client's body through when the destination speaks the surface's wire format, or
translate through the canonical model; answer whole or streamed; and account for it (usage, the
upstream's time, the payload) on the request's `Call`.

A surface supplies a `ChatCodec` for its wire format, so a rule about chat is written once, here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

import orjson

from aigw.call import Call
from aigw.canonical import ChatRequest, ChatResponse, StreamEvent, Usage, UsageEvent
from aigw.errors import ErrorKind, GatewayError
from aigw.http.asgi import EventStream, Request, Send, run_cancellable, send_body
from aigw.http.sse import SSEParser, event_too_large
from aigw.http.upstream import UpstreamResponse
from aigw.offload import run_heavy
from aigw.policies.guardrails.verdicts import Phase
from aigw.providers.base import Provider
from aigw.routing import Endpoint, call_with_fallback
from aigw.stitching import ResponseBuilder
from aigw.surfaces import result_policies


class StreamEncoder(Protocol):
    def encode(self, event: StreamEvent) -> bytes: ...

    def finish(self) -> bytes: ...

    def error(self, error: GatewayError) -> bytes:
        """An error after the stream has started, framed in-band for this wire format."""
        ...


class StreamRelay(Protocol):
    """Pass-through stream: bytes in, the same bytes out (cut at event boundaries, at most), the
    upstream's usage read on the way."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def error(self, error: GatewayError) -> bytes:
        """The upstream stream broke off: an error framed in-band for this wire format."""
        ...

    def usage(self) -> Usage | None: ...


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

    def stream_relay(self, body: dict[str, Any], max_event_bytes: int) -> StreamRelay: ...

    def usage_of_body(self, data: bytes) -> Usage | None:
        """The usage an upstream reported in a whole (non-streamed) response of this wire format;
        ValueError if `data` is not a JSON object (then it is no answer at all)."""
        ...

    def stitcher(self, body: dict[str, Any], limit: int) -> Stitcher:
        """What turns a passed-through stream of this wire format back into one whole response
        (for payload logs), giving up once it would be over `limit` bytes."""
        ...


class Stitcher(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def result(self) -> bytes | None:
        """The whole response; None when it was over the limit (only the marker is kept)."""
        ...


class _Passed:
    """A pass-through answer whose status and headers are in (the body follows, or is in, with
    the usage read from it)."""

    __slots__ = ("upstream", "body", "usage")

    def __init__(self, upstream: UpstreamResponse, body: bytes | None = None, usage: Usage | None = None) -> None:
        self.upstream = upstream
        self.body = body
        self.usage = usage


class _Opened:
    """A translated stream whose first event is in."""

    __slots__ = ("first", "events")

    def __init__(self, first: StreamEvent, events: AsyncIterator[StreamEvent]) -> None:
        self.first = first
        self.events = events


async def serve_chat(
    call: Call,
    request: Request,
    send: Send,
    endpoint: Endpoint,
    body: dict[str, Any],
    codec: ChatCodec,
    stream: bool,
    vendor_headers: dict[str, str] | None = None,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Answer one chat request through `endpoint`, in `codec`'s wire format. `settle` is awaited
    once a translated answer is whole (its last event encoded), before its end reaches the client:
    a response stored there is found by any request that follows the answer."""
    call.streamed = stream
    canonical = None if endpoint.all_take(codec.wire) else await run_heavy(codec.decode_request, body)

    async def attempt(provider: Provider) -> _Passed | _Opened | ChatResponse:
        call.upstream_start()
        if codec.wire in provider.chat_wires:
            upstream = await provider.forward(codec.wire, body, stream, vendor_headers)
            if stream:
                return _Passed(upstream)
            # A whole body is read and checked inside the attempt, so a connection dropped midway,
            # or an answer that is not one, falls back too.
            data = await upstream.read()
            return _Passed(upstream, data, passed_usage(provider, data, codec.usage_of_body))
        assert canonical is not None
        try:
            if stream:
                return await _open_stream(provider, canonical)
            return await provider.chat(canonical)
        except GatewayError as error:
            raise in_client_terms(error, codec.param_names) from None

    provider, answer = await call_with_fallback(endpoint, call.attempts, attempt)
    call.destination, call.model = provider.label, provider.destination.model
    # The answer's `result` policies: every answer passes one of the four branches below, checked
    # before the client (or the payload log, or the response store) gets anything of it.
    checked = endpoint.policies.applies(Phase.RESULT)
    if isinstance(answer, _Passed):
        if answer.body is not None:
            call.upstream_end()
            call.usage = answer.usage
            data = answer.body
            if checked:
                data = await result_policies.check_passed_answer(call, endpoint, data, codec.wire)
            _keep_response(call, data)
            await send_body(send, 200, data)
        else:
            relay = codec.stream_relay(body, provider.destination.max_event_bytes)
            guard = None
            if checked:
                context = result_policies.context(call, endpoint)
                guard = result_policies.PassedStreamGuard(codec.wire, endpoint, context, provider.destination.max_event_bytes)
            work = _relay(call, provider, answer.upstream, relay, EventStream(send), codec, body, guard)
            await run_cancellable(request.receive, work)
    elif isinstance(answer, _Opened):
        assert canonical is not None
        encoder = codec.stream_encoder(canonical, body)
        events = result_policies.EventGuard(endpoint, result_policies.context(call, endpoint)) if checked else None
        work = _encode(call, answer.first, answer.events, encoder, EventStream(send), codec, body, settle, events)
        await run_cancellable(request.receive, work)
    else:
        call.upstream_end()
        call.usage = answer.usage
        if checked:
            await result_policies.check_translated_answer(call, endpoint, answer)
        data = await run_heavy(codec.encode_response, answer, body)
        _keep_response(call, data)
        if settle is not None:
            await settle()
        await send_body(send, 200, data)


async def serve_whole(
    call: Call, send: Send, endpoint: Endpoint, attempt: Callable[[Provider], Awaitable[tuple[bytes, Usage | None]]]
) -> None:
    """Answer a request whose answer is one body (embeddings): `attempt` gets it from a destination
    with the upstream's usage, through the endpoint's fallbacks."""

    async def timed(provider: Provider) -> tuple[bytes, Usage | None]:
        call.upstream_start()
        return await attempt(provider)

    provider, (data, usage) = await call_with_fallback(endpoint, call.attempts, timed)
    call.upstream_end()
    call.destination, call.model, call.usage = provider.label, provider.destination.model, usage
    _keep_response(call, data)
    await send_body(send, 200, data)


def usage_of_json(data: bytes, usage_in: Callable[[Any], Any], decode_usage: Callable[[Any], Usage | None]) -> Usage | None:
    """The usage an upstream reported in a whole JSON answer (passed through), if it is readable.
    Every wire's whole answer is a JSON object: anything else raises ValueError (orjson's
    JSONDecodeError is one)."""
    parsed = orjson.loads(data)
    if not isinstance(parsed, dict):
        raise ValueError(f"a JSON {type(parsed).__name__}, not an object")
    try:
        return decode_usage(usage_in(parsed))
    except (TypeError, ValueError):
        return None


def passed_usage(provider: Provider, data: bytes, usage_of_body: Callable[[bytes], Usage | None]) -> Usage | None:
    """The usage in a passed-through whole answer, read in the one parse that also checks it is an
    answer: a 200 whose body is not a JSON object is the destination's failure (502), as on the
    translated paths, and another destination may answer."""
    try:
        return usage_of_body(data)
    except ValueError as exc:
        raise provider.malformed(f"its body is not a JSON object: {exc}") from None


def checked_answer(provider: Provider, data: bytes) -> bytes:
    """A passed-through whole answer that carries no usage (a token count), checked the same way."""
    passed_usage(provider, data, _no_usage)
    return data


def _no_usage(data: bytes) -> None:
    usage_of_json(data, lambda body: None, lambda usage: None)


async def _open_stream(provider: Provider, canonical: ChatRequest) -> _Opened:
    events = provider.stream_chat(canonical).__aiter__()
    try:
        first = await events.__anext__()  # the upstream call: errors here are still plain responses
    except StopAsyncIteration:
        raise GatewayError(
            ErrorKind.UPSTREAM_ERROR, f"Destination '{provider.label}' sent an empty stream.", retryable=True
        ) from None
    return _Opened(first, events)


def _keep_response(call: Call, data: bytes | None) -> None:
    if call.payload is not None:
        call.payload.keep_response(data)


async def _relay(
    call: Call,
    provider: Provider,
    upstream: UpstreamResponse,
    relay: StreamRelay,
    out: EventStream,
    codec: ChatCodec,
    body: dict[str, Any],
    guard: result_policies.PassedStreamGuard | None = None,
) -> None:
    """Relay a passed-through stream. The response starts with the first bytes the relay lets
    through: until then a failure (the first event too large, the connection reset) is still a
    plain error response in the surface's shape; after, it is framed in-band. A `guard` (the
    endpoint's result policies) rewrites the upstream's events before anything else sees them:
    the payload log keeps what the client got."""
    stitch = codec.stitcher(body, call.payload.config.max_bytes) if call.payload is not None else None
    try:
        async for chunk in upstream.iter_chunks():
            if guard is not None:
                chunk = guard.feed(chunk)
            if stitch is not None:
                stitch.feed(chunk)
            ready = relay.feed(chunk)
            if ready:
                if not out.started:
                    await out.start(codec.stream_headers)
                await out.write(ready)
            if guard is not None and guard.ended:  # denied: the ending is framed, the rest unread
                break
        if guard is not None:
            tail = guard.flush()
            if stitch is not None:
                stitch.feed(tail)
            ready = relay.feed(tail)
            if ready:
                if not out.started:
                    await out.start(codec.stream_headers)
                await out.write(ready)
        ready = relay.flush()
        if not out.started:
            if not ready:
                raise GatewayError(ErrorKind.UPSTREAM_ERROR, f"Destination '{provider.label}' sent an empty stream.")
            await out.start(codec.stream_headers)
        await out.write(ready)
    except GatewayError as error:
        if not out.started:
            raise
        await out.write(relay.error(error))
    finally:
        upstream.close()
        call.upstream_end()
        call.usage = relay.usage()
        if guard is not None:
            call.policy_runs.extend(guard.runs())
        if stitch is not None:
            _keep_response(call, stitch.result())
    await out.close()


async def _encode(
    call: Call,
    first: StreamEvent,
    events: AsyncIterator[StreamEvent],
    encoder: StreamEncoder,
    out: EventStream,
    codec: ChatCodec,
    body: dict[str, Any],
    settle: Callable[[], Awaitable[None]] | None = None,
    guard: result_policies.EventGuard | None = None,
) -> None:
    """Encode a translated stream; a `guard` (the endpoint's result policies) checks its text
    first, and after a deny ends the stream the surface's way."""
    builder = ResponseBuilder(call.payload.config.max_bytes) if call.payload is not None else None
    await out.start(codec.stream_headers)

    async def write(checked: list[StreamEvent]) -> None:
        for event in checked:
            if builder is not None:
                builder.feed(event)
            await out.write(encoder.encode(event))

    try:
        event = first
        while True:
            if isinstance(event, UsageEvent):
                call.usage = event.usage
            if guard is None:
                if builder is not None:
                    builder.feed(event)
                await out.write(encoder.encode(event))
            else:
                await write(guard.feed(event))
                if guard.denied is not None:
                    break
            event = await events.__anext__()
        assert guard is not None and guard.denied is not None
        tail = guard.ending(codec.wire, encoder)
        if settle is not None:
            await settle()
        await out.write(tail)
    except StopAsyncIteration:
        if guard is not None:
            await write(guard.finish())
        if guard is not None and guard.denied is not None:
            tail = guard.ending(codec.wire, encoder)
        else:
            tail = encoder.finish()
        if settle is not None:
            await settle()
        await out.write(tail)
    except GatewayError as error:
        tail = encoder.error(error)  # the headers are gone: report in-band
        if settle is not None:
            await settle()
        await out.write(tail)
    finally:
        # Closed here, not whenever the generator is collected: a client gone mid-stream must
        # release the upstream connection now.
        await _close(events)
        call.upstream_end()
        if guard is not None:
            call.policy_runs.extend(guard.runs())
        if builder is not None:
            _keep_response(call, None if builder.over else codec.encode_response(builder.response(), body))
    await out.close()


async def _close(events: AsyncIterator[StreamEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


class DecodingStitcher:
    """A passed-through stream decoded on the side, by its wire's stream decoder, into the response
    it adds up to, rendered in the same wire (payload logs). Chunks are kept and decoded in one go
    at the end (or every `BATCH_BYTES`, to bound memory): a third cheaper than chunk by chunk. A
    log never breaks the answer: what could not be decoded is left out.

    It stops collecting once the response would be over `limit` bytes (the builder's content, or
    one event, past it): the payload log keeps only the marker then, so nothing more is worth holding."""

    BATCH_BYTES = 1 << 20

    def __init__(self, decoder: Any, encode: Callable[[ChatResponse], bytes], limit: int) -> None:
        self._parser = SSEParser(limit)
        self._decoder = decoder
        self._encode = encode
        self._builder = ResponseBuilder(limit)
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        if self._builder.over:
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size >= self.BATCH_BYTES:
            self._decode()

    def result(self) -> bytes | None:
        self._decode()
        if self._builder.over:
            return None
        try:
            for event in self._decoder.finish():
                self._builder.feed(event)
        except Exception:
            pass
        return None if self._builder.over else self._encode(self._builder.response())

    def _decode(self) -> None:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        try:
            events = self._parser.feed(data)
        except GatewayError:  # one event over the limit: so is the response it is part of
            self._builder.give_up()
            return
        for sse in events:
            try:
                for event in self._decoder.feed(sse):
                    self._builder.feed(event)
            except Exception:
                continue


class EventRelay:
    """Passes complete SSE events through untouched and reads the upstream's usage from the events
    that carry it. Per chunk the work is a couple of byte searches: events are parsed only in the
    rare chunk holding `marker`. A partial event at the end of a chunk waits for its rest (an
    upstream that splits events across reads delays them by one read, never more); its pieces are
    set aside as they come and joined once, when its end arrives (see aigw.http.sse), and no more
    than `max_event_bytes` of them wait.

    `raw_usage` finds the wire's usage object in one event; objects are merged (later fields win:
    Anthropic sends input tokens first and output tokens last) and `decode_usage` reads the result.
    `drop` removes matching marker events from what the client gets; `error` frames a failure."""

    __slots__ = ("_marker", "_raw_usage", "_decode_usage", "_drop", "_error", "_max", "_pending", "_held", "_usage")

    def __init__(
        self,
        marker: bytes,
        raw_usage: Callable[[Any], Any],
        decode_usage: Callable[[Any], Usage | None],
        error: Callable[[GatewayError], bytes],
        drop: Callable[[bytes], bool] | None = None,
        max_event_bytes: int | None = None,
    ) -> None:
        self._marker = marker
        self._raw_usage = raw_usage
        self._decode_usage = decode_usage
        self._error = error
        self._drop = drop
        self._max = max_event_bytes
        self._pending: list[bytes] = []  # pieces of an event whose end has not arrived
        self._held = 0  # their bytes
        self._usage: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> bytes:
        pending = self._pending
        if not pending:
            return self._release(chunk, _last_event_end(chunk))
        end = _last_event_end(chunk)
        if end:
            cut = self._held + end  # the last end is in this chunk: no need to search the joined bytes
        else:
            # The end of the waiting event may straddle the seam (at most 3 bytes of "\r\n\r\n"
            # either side); if not, it has not come yet and this chunk just waits too.
            tail = pending[-1][-3:] if len(pending[-1]) >= 3 else b"".join(pending[-3:])[-3:]
            if not _last_event_end(tail + chunk[:3]):
                self._hold(chunk)
                return b""
            cut = -1
        data = pending[0] + chunk if len(pending) == 1 else b"".join([*pending, chunk])  # the one join
        pending.clear()
        self._held = 0
        return self._release(data, cut if cut >= 0 else _last_event_end(data))

    def flush(self) -> bytes:
        rest = b"".join(self._pending)
        self._pending.clear()
        self._held = 0
        if rest.strip() and self._marker in rest:
            return self._read_usage(rest)
        return rest

    def _release(self, data: bytes, cut: int) -> bytes:
        """The complete events of `data` (up to `cut`), usage read; the rest waits."""
        if cut < len(data):
            self._hold(data[cut:])
        if cut == 0:
            return b""
        ready = data[:cut]
        if self._marker in ready:
            ready = self._read_usage(ready)
        return ready

    def _hold(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._held += len(piece)
        if self._max is not None and self._held > self._max:
            self._pending.clear()
            self._held = 0
            raise event_too_large(self._max)

    def error(self, error: GatewayError) -> bytes:
        return self._error(error)

    def usage(self) -> Usage | None:
        return self._decode_usage(self._usage) if self._usage else None

    def _read_usage(self, ready: bytes) -> bytes:
        kept: list[bytes] = []
        dropped = False
        for event in _split_events(ready):
            if self._marker in event:
                self._merge(event)
                if self._drop is not None and self._drop(event):
                    dropped = True
                    continue
            kept.append(event)
        return b"".join(kept) if dropped else ready

    def _merge(self, event: bytes) -> None:
        for line in event.splitlines():
            if not line.startswith(b"data:"):
                continue
            try:
                raw = self._raw_usage(orjson.loads(line[5:]))
            except orjson.JSONDecodeError:
                continue
            if isinstance(raw, dict):
                self._usage.update((k, v) for k, v in raw.items() if v is not None)


def _last_event_end(data: bytes) -> int:
    """Where the last complete SSE event in `data` ends (0: none does). Events end with a blank
    line, LF or CRLF framed (Google frames with CRLF)."""
    lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def _split_events(data: bytes) -> list[bytes]:
    """Complete SSE events, each with its own terminator, so joining them gives `data` back."""
    events: list[bytes] = []
    start = 0
    while start < len(data):
        lf, crlf = data.find(b"\n\n", start), data.find(b"\r\n\r\n", start)
        ends = [e + 2 for e in (lf,) if e >= 0] + [e + 4 for e in (crlf,) if e >= 0]
        end = min(ends) if ends else len(data)
        events.append(data[start:end])
        start = end
    return events


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
        retryable=error.retryable, upstream_status=error.upstream_status,
    )  # fmt: skip


def _fields(path: str) -> Iterator[str]:
    """`messages[3].content` -> itself, `messages[3]`, `messages`."""
    while path:
        yield path
        path = path[: max(path.rfind("."), path.rfind("["), 0)]
