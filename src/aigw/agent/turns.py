"""One model turn of an agent run: a Responses request body in, the model's Responses answer out,
whole or as a stream of event objects, through the endpoint's destinations and fallbacks.

A destination that speaks the Responses API gets the body as it is (pass-through); any other gets it
translated through the canonical model and its answer rendered back as Responses (the same encoders
the /openai/v1/responses surface uses). Either way the agent loop sees one shape: Responses items.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from aigw.agent import model_output
from aigw.call import Call
from aigw.canonical import StreamEvent
from aigw.errors import ErrorKind, GatewayError
from aigw.http.sse import SSEParser
from aigw.http.upstream import UpstreamResponse
from aigw.offload import run_heavy
from aigw.providers.base import Provider
from aigw.routing import Endpoint, call_with_fallback
from aigw.surfaces.chat_flow import in_client_terms
from aigw.wire import openai_responses, openai_responses_stream

WIRE = openai_responses.WIRE
Event = dict[str, Any]


async def whole_turn(call: Call, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
    """The model's answer to `body` as one Response object."""
    body = {**body, "stream": False}

    async def attempt(provider: Provider) -> dict[str, Any]:
        call.upstream_start()
        try:
            if WIRE in provider.chat_wires:
                upstream = await provider.forward(WIRE, body, False, None)
                data = await upstream.read()
                return await run_heavy(model_output.response_object, data, provider.label, size=len(data))
            response = await provider.chat(await run_heavy(openai_responses.decode_request, body))
            return await run_heavy(openai_responses.encode_response, response, body)
        except GatewayError as error:
            raise in_client_terms(error, openai_responses.PARAM_NAMES) from None
        finally:
            call.upstream_end()

    provider, answer = await call_with_fallback(endpoint, call.attempts, attempt)
    call.destination, call.model = provider.label, provider.destination.model
    return answer


async def streamed_turn(call: Call, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[Event]:
    """The model's answer to `body` as Responses stream events, parsed. Fallback happens until the
    first event is in; after that a failure ends the stream with `response.failed`."""
    body = {**body, "stream": True}

    async def attempt(provider: Provider) -> tuple[Event, AsyncIterator[Event]]:
        call.upstream_start()
        try:
            if WIRE in provider.chat_wires:
                events = _passed_events(await provider.forward(WIRE, body, True, None), provider)
            else:
                events = _encoded_events(provider, body)
            first = await anext(events, None)
        except GatewayError as error:
            call.upstream_end()
            raise in_client_terms(error, openai_responses.PARAM_NAMES) from None
        if first is None:
            call.upstream_end()
            raise GatewayError(ErrorKind.UPSTREAM_ERROR, f"Destination '{provider.label}' sent an empty stream.", retryable=True)
        return first, events

    provider, (first, events) = await call_with_fallback(endpoint, call.attempts, attempt)
    call.destination, call.model = provider.label, provider.destination.model
    try:
        yield first
        async for event in events:
            yield event
    except GatewayError as error:  # mid-stream: the loop ends the response with it, status and all
        raise in_client_terms(error, openai_responses.PARAM_NAMES) from None
    finally:
        call.upstream_end()


async def _passed_events(upstream: UpstreamResponse, provider: Provider) -> AsyncIterator[Event]:
    # Linear in what arrives, and one event cannot grow without bound.
    parser = SSEParser(provider.destination.max_event_bytes)
    try:
        async for chunk in upstream.iter_chunks():
            for sse in parser.feed(chunk):
                if sse.data and sse.data != b"[DONE]":
                    yield model_output.stream_event(sse.data, provider.label)
    finally:
        upstream.close()


async def _encoded_events(provider: Provider, body: dict[str, Any]) -> AsyncIterator[Event]:
    """A translated stream rendered by the Responses encoder, then read back as objects: the encoder
    is the one place that knows the event sequence, and a model's latency dwarfs the re-parse.
    A provider's error is raised as it is, not rendered as `response.failed`: before the first event
    the router may fall back and the client gets the error's own status (429 with Retry-After, 400,
    504); after it, the loop's `error` event and failed response carry its code."""
    encoder = openai_responses_stream.StreamEncoder(body)
    parser = SSEParser()
    events: AsyncIterator[StreamEvent] = provider.stream_chat(await run_heavy(openai_responses.decode_request, body))
    try:
        async for event in events:
            for sse in parser.feed(encoder.encode(event)):
                yield orjson.loads(sse.data)
    finally:  # an error or a client gone: the provider's upstream response is released now, not at GC
        close = getattr(events, "aclose", None)  # async generators have it; other iterators need none
        if close is not None:
            await close()
    for sse in parser.feed(encoder.finish()):
        yield orjson.loads(sse.data)
