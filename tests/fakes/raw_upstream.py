"""A raw-socket fake upstream: scripted bytes and timing per request, for the faults a well-behaved
HTTP server library cannot produce (a head that never ends, a body that drips or is cut by a reset,
a stream event without an end, a 200 that is not what was asked).

It speaks enough of OpenAI (chat completions, responses, embeddings), Anthropic (messages) and
Gemini (generateContent, streamGenerateContent, embedContent, batchEmbedContents) to be a
destination of each kind. The request's path names the API; its body (or the path, for Gemini)
whether it streams. The fault is named in the request itself, `fault:<name>` in the client's text
(every translation carries it to the upstream) or `fault-<name>` as the destination's model, so
one destination serves every fault:

    ok              a normal answer, whole or streamed
    big             a whole answer of about 5 MB (text, or embedding vectors)
    drip            the answer in small pieces 0.12 s apart: slow but flowing, it must succeed
    drip_forever    the head, then one body byte every 0.1 s, never ending
    hang_head       nothing at all: the connection stays open and silent
    reset           the head and part of the body (streams: the first event), then a TCP reset
    endless_head    a header value that never ends (64 KiB pieces, up to 200 MB)
    many_headers    10,000 small headers
    huge_event      a stream whose first event never ends (1 MiB pieces 15 ms apart, up to HUGE_EVENT_BYTES)
    huge_event_late the same after one complete event
    garbage         a 200 that is not what was asked: HTML for a whole answer, JSON for a stream
    big_error       a 500 whose body is about 5 MB

>>> fake = RawUpstream().start(); fake.url; fake.requests; fake.stop()
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

HUGE_EVENT_BYTES = 80 * 1024 * 1024
BIG_BYTES = 5 * 1024 * 1024
DRIP_GAP = 0.12
_FAULT = re.compile(rb"fault[:-]([a-z_]+)")


@dataclass
class Exchange:
    """What the fake makes of one request."""

    api: str  # openai_chat, openai_responses, openai_embeddings, anthropic, gemini, gemini_embeddings
    stream: bool
    fault: str
    body: dict[str, Any]
    path: str


@dataclass
class RawUpstream:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Exchange] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> RawUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            self._server = loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="raw-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _shutdown(self) -> None:
        """Close the listener and end every connection still being played."""
        assert self._server is not None
        self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def count(self, model: str) -> int:
        """Requests sent for the upstream model `model` (the body's, or Gemini's in the path)."""
        return sum(1 for exchange in list(self.requests) if exchange.body.get("model") == model or f"/models/{model}:" in exchange.path)

    # --- the connection ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                exchange = await _read_request(reader)
                if exchange is None:
                    return
                self.requests.append(exchange)
                if not await _play(writer, reader, exchange):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Exchange | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    line, _, header_block = head.partition(b"\r\n")
    path = line.split(b" ")[1].decode()
    length = 0
    for header in header_block.split(b"\r\n"):
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    raw = await reader.readexactly(length)
    body = orjson.loads(raw) if raw else {}
    found = _FAULT.search(path.encode() + b" " + raw)
    fault = found.group(1).decode() if found else "ok"
    api = _api(path)
    stream = ":streamGenerateContent" in path or (isinstance(body, dict) and body.get("stream") is True)
    return Exchange(api, stream, fault, body, path)


def _api(path: str) -> str:
    route = path.split("?")[0]
    if route.endswith("/chat/completions"):
        return "openai_chat"
    if route.endswith("/responses"):
        return "openai_responses"
    if route.endswith("/embeddings"):
        return "openai_embeddings"
    if route.endswith("/messages"):
        return "anthropic"
    if route.endswith((":embedContent", ":batchEmbedContents")):
        return "gemini_embeddings"
    return "gemini"


# --- scripts -----------------------------------------------------------------------------------------


async def _play(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, exchange: Exchange) -> bool:
    """Answer `exchange` as its fault says; whether the connection may carry another request."""
    fault = exchange.fault
    if fault == "hang_head":
        await reader.read()  # until the gateway gives up and closes
        return False
    if fault in ("endless_head", "many_headers"):
        await _send_bad_head(writer, fault)
        return False
    if fault == "garbage":
        if exchange.stream:
            await _send_whole(writer, orjson.dumps(_answer(exchange, "not a stream")))
        else:
            await _send_whole(writer, b"<html><body>Gateway portal</body></html>", "text/html")
        return True
    if fault == "big_error":
        body = orjson.dumps({"error": {"message": "overloaded " + "x" * BIG_BYTES, "type": "server_error"}})
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        return True
    if exchange.stream:
        return await _play_stream(writer, exchange)
    return await _play_whole(writer, reader, exchange)


async def _play_whole(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, exchange: Exchange) -> bool:
    fault = exchange.fault
    body = orjson.dumps(_answer(exchange, "x" * BIG_BYTES if fault == "big" else "Hello from the raw fake."))
    if fault == "drip":
        writer.write(_whole_head(len(body)))
        step = max(1, len(body) // 12)
        for at in range(0, len(body), step):
            writer.write(body[at : at + step])
            await writer.drain()
            await asyncio.sleep(DRIP_GAP)
        return True
    if fault == "drip_forever":
        writer.write(_whole_head(len(body)))
        for at in range(len(body)):
            writer.write(body[at : at + 1])
            await writer.drain()
            await asyncio.sleep(0.1)
        return False
    if fault == "reset":
        writer.write(_whole_head(len(body)) + body[: len(body) // 2])
        await writer.drain()
        await asyncio.sleep(0.05)
        _reset(writer)
        return False
    await _send_whole(writer, body)
    return True


async def _play_stream(writer: asyncio.StreamWriter, exchange: Exchange) -> bool:
    fault = exchange.fault
    events = list(_events(exchange))
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    if fault in ("huge_event", "huge_event_late"):
        if fault == "huge_event_late":
            writer.write(_chunk(events[0]))
        await _send_huge_event(writer)
        return False
    for n, event in enumerate(events):
        writer.write(_chunk(event))
        await writer.drain()
        if fault == "reset":
            await asyncio.sleep(0.05)
            _reset(writer)
            return False
        if fault == "drip" and n < len(events) - 1:
            await asyncio.sleep(DRIP_GAP)
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


async def _send_whole(writer: asyncio.StreamWriter, body: bytes, content_type: str = "application/json") -> None:
    writer.write(_whole_head(len(body), content_type) + body)
    await writer.drain()


async def _send_bad_head(writer: asyncio.StreamWriter, fault: str) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
    if fault == "many_headers":
        writer.write(b"".join(b"x-header-%d: value\r\n" % n for n in range(10_000)) + b"content-length: 2\r\n\r\n{}")
        await writer.drain()
        return
    writer.write(b"x-endless: ")
    piece = b"a" * 65536
    for _ in range(200 * 16):  # 200 MB at most; the gateway is expected to hang up long before
        writer.write(piece)
        await writer.drain()


async def _send_huge_event(writer: asyncio.StreamWriter) -> None:
    piece = b"a" * (1 << 20)
    writer.write(_chunk(b'data: {"filler": "'))
    for _ in range(HUGE_EVENT_BYTES >> 20):
        writer.write(_chunk(piece))
        await writer.drain()
        await asyncio.sleep(0.015)  # about a second for 64 MiB: long enough to watch the gateway meanwhile


def _whole_head(length: int, content_type: str = "application/json") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (content_type.encode(), length)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed upstream or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --- the wire formats --------------------------------------------------------------------------------

USAGE = {"input": 3, "output": 5}


def _answer(exchange: Exchange, text: str) -> dict[str, Any]:
    """A whole answer of the exchange's API holding `text` (embeddings: vectors of about that size)."""
    api = exchange.api
    if api == "openai_chat":
        return {
            "id": "chatcmpl-raw", "object": "chat.completion", "created": 1, "model": "raw",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": USAGE["input"], "completion_tokens": USAGE["output"], "total_tokens": 8},
        }  # fmt: skip
    if api == "openai_responses":
        return _response("completed", [_message_item(text)])
    if api == "anthropic":
        return {
            "id": "msg_raw", "type": "message", "role": "assistant", "model": "raw",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": USAGE["input"], "output_tokens": USAGE["output"]},
        }  # fmt: skip
    if api == "gemini":
        return {
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": USAGE["input"], "candidatesTokenCount": USAGE["output"], "totalTokenCount": 8},
            "modelVersion": "raw",
        }  # fmt: skip
    return _embeddings(exchange, len(text))


def _embeddings(exchange: Exchange, size: int) -> dict[str, Any]:
    body = exchange.body
    if exchange.api == "openai_embeddings":
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
    else:
        count = len(body.get("requests") or [None])
    floats = max(4, size // (20 * count))  # "0.1234567890123456," is about 20 bytes
    vector = [0.1234567890123456] * floats
    if exchange.api == "openai_embeddings":
        data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)]
        return {"object": "list", "data": data, "model": "raw", "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    if exchange.path.split("?")[0].endswith(":embedContent"):
        return {"embedding": {"values": vector}}
    return {"embeddings": [{"values": vector} for _ in range(count)]}


def _message_item(text: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {"type": "message", "id": "msg_raw", "status": "completed", "role": "assistant", "content": content}


def _response(status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    usage = {"input_tokens": USAGE["input"], "output_tokens": USAGE["output"], "total_tokens": 8}
    return {
        "id": "resp_raw", "object": "response", "created_at": 1, "status": status, "model": "raw",
        "output": output, "usage": usage if status == "completed" else None,
    }  # fmt: skip


PIECES = ["Hello", " from", " the", " raw", " fake", "."]


def _events(exchange: Exchange) -> Iterator[bytes]:
    """A short streamed answer, one framed SSE event per item."""
    api = exchange.api
    if api == "openai_chat":
        yield from _openai_chat_events()
    elif api == "openai_responses":
        yield from _responses_events()
    elif api == "anthropic":
        yield from _anthropic_events()
    else:
        yield from _gemini_events()


def _data(obj: Any, event: str | None = None, crlf: bool = False) -> bytes:
    end = b"\r\n\r\n" if crlf else b"\n\n"
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(obj) + end


def _openai_chat_events() -> Iterator[bytes]:
    base = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "raw"}
    for n, piece in enumerate(PIECES):
        delta = {"role": "assistant", "content": piece} if n == 0 else {"content": piece}
        yield _data({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    yield _data({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": USAGE["input"], "completion_tokens": USAGE["output"], "total_tokens": 8}
    yield _data({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def _responses_events() -> Iterator[bytes]:
    sequence = iter(range(1000))

    def event(kind: str, **fields: Any) -> bytes:
        return _data({"type": kind, "sequence_number": next(sequence), **fields}, kind)

    yield event("response.created", response=_response("in_progress", []))
    started = {**_message_item(""), "status": "in_progress", "content": []}
    yield event("response.output_item.added", output_index=0, item=started)
    part = {"type": "output_text", "text": "", "annotations": []}
    yield event("response.content_part.added", output_index=0, item_id="msg_raw", content_index=0, part=part)
    for piece in PIECES:
        yield event("response.output_text.delta", output_index=0, item_id="msg_raw", content_index=0, delta=piece)
    text = "".join(PIECES)
    yield event("response.output_text.done", output_index=0, item_id="msg_raw", content_index=0, text=text)
    yield event("response.content_part.done", output_index=0, item_id="msg_raw", content_index=0, part={**part, "text": text})
    yield event("response.output_item.done", output_index=0, item=_message_item(text))
    yield event("response.completed", response=_response("completed", [_message_item(text)]))


def _anthropic_events() -> Iterator[bytes]:
    message = {
        "id": "msg_raw", "type": "message", "role": "assistant", "model": "raw", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": USAGE["input"], "output_tokens": 1},
    }  # fmt: skip
    yield _data({"type": "message_start", "message": message}, "message_start")
    yield _data({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start")
    for piece in PIECES:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        yield _data(delta, "content_block_delta")
    yield _data({"type": "content_block_stop", "index": 0}, "content_block_stop")
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": USAGE["output"]}}
    yield _data(delta, "message_delta")
    yield _data({"type": "message_stop"}, "message_stop")


def _gemini_events() -> Iterator[bytes]:
    for n, piece in enumerate(PIECES):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
        chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": "raw"}
        if n == len(PIECES) - 1:
            candidate["finishReason"] = "STOP"
            chunk["usageMetadata"] = {"promptTokenCount": USAGE["input"], "candidatesTokenCount": USAGE["output"], "totalTokenCount": 8}
        yield _data(chunk, crlf=True)
