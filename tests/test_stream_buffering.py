"""Buffering of upstream streams: linear in what arrives however events are cut, capped per event,
and payload logs that stop collecting past their size (issue 11: a 50 MB event without an end cost
33 s of CPU in the relays' re-joining and re-scanning; payload logging held a whole 100 MB stream
only to replace it with a marker)."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest

from aigw.call import Call
from aigw.canonical import TextDelta
from aigw.config import PayloadLoggingConfig
from aigw.errors import GatewayError
from aigw.http.sse import SSEParser, ends_event
from aigw.stitching import ResponseBuilder
from aigw.surfaces.chat_flow import DecodingStitcher, EventRelay
from aigw.surfaces.gemini import JsonArrayRelay
from aigw.surfaces.responses import FinalResponseStitcher, ResponsesRelay
from aigw.wire import openai_chat

MB = 1 << 20
PIECE = b"a" * 65536
EVENTS = [
    b'data: {"a":1}\n\n', b"event: x\ndata: y\n\n", b"data: crlf\r\n\r\n", b"data: cr\r\r", b": comment\n\n",
    b"data: l1\ndata: l2\n\n", b"data: mixed\r\n\n", b"data: mixed2\n\r\n", b'data: {"usage":{"n":2}}\n\n', b"\n",
]  # fmt: skip


def cuts(data: bytes, rng: random.Random, most: int = 7) -> list[bytes]:
    pieces, at = [], 0
    while at < len(data):
        n = rng.randint(1, most)
        pieces.append(data[at : at + n])
        at += n
    return pieces


def chat_relay(**kwargs: Any) -> EventRelay:
    return EventRelay(b'"usage"', openai_chat.usage_in, openai_chat.decode_usage, openai_chat.encode_error_event, **kwargs)


def test_a_blank_line_is_found_in_every_framing() -> None:
    for ending in (b"\n\n", b"\r\n\r\n", b"\r\r", b"\r\n\n", b"\n\r\n", b"\n\r"):
        assert ends_event(b"data: x" + ending), ending
    for open_ in (b"data: x\n", b"data: x\r\n", b"data: x\r", b"data: x\r\ndata: y"):
        assert not ends_event(open_), open_


def test_the_parser_gives_the_same_events_however_the_stream_is_cut() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        stream = b"".join(rng.choice(EVENTS) for _ in range(rng.randint(1, 10)))
        whole = SSEParser()
        expected = whole.feed(stream) + whole.flush()
        parser = SSEParser()
        got = [event for piece in cuts(stream, rng) for event in parser.feed(piece)] + parser.flush()
        assert got == expected, stream


def test_the_relay_passes_every_byte_through_however_the_stream_is_cut() -> None:
    rng = random.Random(12)
    for _ in range(2000):
        stream = b"".join(rng.choice(EVENTS) for _ in range(rng.randint(1, 10)))
        relay = chat_relay()
        out = b"".join(relay.feed(piece) for piece in cuts(stream, rng, most=9)) + relay.flush()
        assert out == stream
        assert (relay.usage() is not None) == (b'"usage"' in stream)


def test_small_events_arriving_whole_are_passed_on_without_a_copy() -> None:
    chunk = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n' * 3
    assert chat_relay().feed(chunk) is chunk


def cpu_for(feed: Any, megabytes: int) -> float:
    started = time.process_time()
    feed(b"data: ")
    for _ in range(megabytes * 16):
        feed(PIECE)
    return time.process_time() - started


@pytest.mark.parametrize(
    "make",
    [
        lambda: SSEParser().feed,
        lambda: chat_relay().feed,
        lambda: ResponsesRelay().feed,
        lambda: JsonArrayRelay().feed,
        lambda: DecodingStitcher(openai_chat.StreamDecoder(), lambda r: b"", 1 << 30).feed,
        lambda: FinalResponseStitcher(1 << 30).feed,
    ],
    ids=["parser", "event-relay", "responses-relay", "json-array-relay", "decoding-stitcher", "final-response-stitcher"],
)
def test_a_50_mb_event_without_an_end_costs_linear_time(make: Any) -> None:
    # Re-joining the waiting bytes on every 64 KiB read made this quadratic: ~26 s for the parser.
    assert cpu_for(make(), 50) < 1.5


@pytest.mark.parametrize(
    "make",
    [lambda: SSEParser(MB).feed, lambda: chat_relay(max_event_bytes=MB).feed, lambda: ResponsesRelay(MB).feed, lambda: JsonArrayRelay(MB).feed],
    ids=["parser", "event-relay", "responses-relay", "json-array-relay"],
)
def test_one_event_past_max_event_bytes_is_an_honest_502(make: Any) -> None:
    with pytest.raises(GatewayError) as caught:
        cpu_for(make(), 2)
    error = caught.value
    assert (error.status, error.code, error.retryable) == (502, "upstream_event_too_large", False)


def test_a_response_builder_stops_collecting_past_its_limit() -> None:
    builder = ResponseBuilder(limit=100)
    builder.feed(TextDelta(text="x" * 60))
    assert not builder.over
    builder.feed(TextDelta(text="x" * 60))
    assert builder.over
    builder.feed(TextDelta(text="x" * 60))
    assert builder.response().choices == []  # what it had is given back


def chat_stream(text_bytes: int) -> bytes:
    delta = orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                          "choices": [{"index": 0, "delta": {"content": "x" * 1000}, "finish_reason": None}]})  # fmt: skip
    return (b"data: " + delta + b"\n\n") * (text_bytes // 1000) + b"data: [DONE]\n\n"


def test_a_stitched_stream_past_max_bytes_is_not_collected() -> None:
    stitcher = DecodingStitcher(openai_chat.StreamDecoder(), lambda r: orjson.dumps(openai_chat.encode_response(r)), 64 * 1024)
    for _ in range(20):
        stitcher.feed(chat_stream(256 * 1024))  # 5 MB of text in all
    assert stitcher._size == 0 and not stitcher._chunks  # nothing held once over
    assert stitcher.result() is None
    small = DecodingStitcher(openai_chat.StreamDecoder(), lambda r: orjson.dumps(openai_chat.encode_response(r)), 64 * 1024)
    small.feed(chat_stream(10_000))
    result = small.result()
    assert result is not None and orjson.loads(result)["choices"][0]["message"]["content"] == "x" * 10_000


def test_a_responses_stream_with_an_event_past_max_bytes_is_not_collected() -> None:
    stitcher = FinalResponseStitcher(1000)
    stitcher.feed(b'event: response.output_text.delta\ndata: {"delta": "' + b"x" * 2000)
    stitcher.feed(b'"}\n\nevent: response.completed\ndata: {"type":"response.completed","response":{"id":"r"}}\n\n')
    assert stitcher.result() is None
    whole = FinalResponseStitcher(1000)
    whole.feed(b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r"}}\n\n')
    assert whole.result() == b'{"id":"r"}'


def test_payload_bodies_past_max_bytes_are_kept_as_markers_only() -> None:
    call = Call("openai_chat", {})
    call.log_payload(PayloadLoggingConfig(enabled=True, max_bytes=10), b"x" * 11)
    payload = call.payload
    assert payload is not None and payload.request is None  # not held until the record is written
    payload.keep_response(b"y" * 11)
    assert payload.response is None
    record = call.payload_record(call.usage_record(200, None))
    assert record is not None
    assert (record.request_marker, record.response_marker) == ("MAX_REQUEST_SIZE_EXCEEDED", "MAX_RESPONSE_SIZE_EXCEEDED")
    payload.keep_response(None)  # a stitcher that gave up
    assert call.payload_record(call.usage_record(200, None)).response_marker == "MAX_RESPONSE_SIZE_EXCEEDED"
    payload.keep_response(b"ok")
    assert call.payload_record(call.usage_record(200, None)).response_body == "ok"
