"""The HTTP/1.1 server (aigw.http.server) against a small ASGI app, in-process, over real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import uvloop

from aigw.http.asgi import run_cancellable
from aigw.http.server import StartupFailed, serve
from tests.gateway_process import free_port

# --- the app under the server ---------------------------------------------------------------------


class Recorder:
    """What the test app saw, for the tests to assert on (written from the server's thread)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.sent_bytes = 0
        self.go_on = threading.Event()

    def add(self, name: str, value: Any = None) -> None:
        self.events.append((name, value))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def wait_for(self, name: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event, value in self.events:
                if event == name:
                    return value
            time.sleep(0.01)
        raise AssertionError(f"the app did not record {name!r} within {timeout}s: {self.names()}")


async def read_body(receive) -> tuple[bytes, int]:
    parts, messages = [], 0
    while True:
        message = await receive()
        messages += 1
        assert message["type"] == "http.request", message
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts), messages


async def respond(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def make_app(recorder: Recorder, *, startup_fails: bool = False):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                recorder.add(message["type"])
                if message["type"] == "lifespan.startup":
                    if startup_fails:
                        await send({"type": "lifespan.startup.failed", "message": "no database"})
                        return
                    scope["state"]["greeting"] = "hello"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        handler = ROUTES[scope["path"]]
        await handler(recorder, scope, receive, send)

    return app


async def echo(recorder, scope, receive, send):
    body, messages = await read_body(receive)
    reply = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "body_length": len(body),
        "body_head": body[:20].decode("latin-1"),
        "messages": messages,
        "client_port": scope["client"][1],
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        "state": scope.get("state", {}).get("greeting"),
        "scheme": scope["scheme"],
    }
    await respond(send, 200, json.dumps(reply).encode())


async def slow(recorder, scope, receive, send):
    await read_body(receive)
    seconds = float(scope["query_string"].decode() or "0.5")
    recorder.add("slow-start")
    await asyncio.sleep(seconds)
    await respond(send, 200, b'{"slept":%g}' % seconds)
    recorder.add("slow-end")


async def stream(recorder, scope, receive, send):
    """Three chunks; the second waits until the test has seen the first (so it was not buffered)."""
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
    while not recorder.go_on.is_set():
        await asyncio.sleep(0.01)
    await send({"type": "http.response.body", "body": b"second\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": True})  # empty: must not end the stream
    await send({"type": "http.response.body", "body": b"third\n"})


async def endless(recorder, scope, receive, send):
    """Streams until the client leaves, watching for it the way the gateway does (run_cancellable)."""
    await read_body(receive)

    async def produce():
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        while True:
            await send({"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True})
            await asyncio.sleep(0.02)

    try:
        await run_cancellable(receive, produce())  # cancels this task when the client leaves
    finally:
        recorder.add("stream-ended", time.monotonic())


async def flood(recorder, scope, receive, send):
    """Sends 256 KiB chunks as fast as the server lets it."""
    await read_body(receive)
    chunk = b"x" * (256 * 1024)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]})
    for _ in range(400):  # 100 MiB at most
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        recorder.sent_bytes += len(chunk)
    await send({"type": "http.response.body", "body": b""})
    recorder.add("flood-done")


async def watch_disconnect(recorder, scope, receive, send):
    """Answers, then records when receive() reports the disconnect."""
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hi", "more_body": True})
    message = await receive()
    recorder.add("after-body", message["type"])


async def raise_before(recorder, scope, receive, send):
    raise RuntimeError("boom before the response")


async def raise_after(recorder, scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom mid-stream")


async def reject(recorder, scope, receive, send):
    """Answers 413 without reading the body, as the gateway does for a declared length over its limit."""
    await respond(send, 413, b'{"error":"too large"}')
    recorder.add("rejected")


async def close_after(recorder, scope, receive, send):
    await read_body(receive)
    await respond(send, 200, b"bye", [(b"content-type", b"text/plain"), (b"connection", b"close")])


async def slow_reader(recorder, scope, receive, send):
    """Reads a large body slowly, so the server must pause reading and resume without losing a byte."""
    total = 0
    while True:
        message = await receive()
        total += len(message.get("body", b""))
        await asyncio.sleep(0.005)
        if not message.get("more_body"):
            break
    await respond(send, 200, b'{"received":%d}' % total)


async def head_and_get(recorder, scope, receive, send):
    await read_body(receive)
    await respond(send, 200, b"0123456789", [(b"content-type", b"text/plain")])


async def no_response(recorder, scope, receive, send):
    await read_body(receive)


ROUTES = {
    "/echo": echo,
    "/slow": slow,
    "/stream": stream,
    "/endless": endless,
    "/flood": flood,
    "/watch": watch_disconnect,
    "/raise-before": raise_before,
    "/raise-after": raise_after,
    "/reject": reject,
    "/close": close_after,
    "/slow-reader": slow_reader,
    "/resource": head_and_get,
    "/nothing": no_response,
}


# --- running the server in a thread ---------------------------------------------------------------


class ServerThread:
    """`serve` on uvloop in a thread of its own, so the tests can use blocking clients."""

    def __init__(self, app, **options: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._app = app
        self._options = options
        self._started = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        assert self._started.wait(10), "the server did not start"
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        try:
            uvloop.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ready = asyncio.Event()

        async def signal_ready() -> None:
            await ready.wait()
            self._started.set()

        waiter = asyncio.get_running_loop().create_task(signal_ready())
        try:
            await serve(self._app, "127.0.0.1", self.port, ready=ready, stop=self._stop, **self._options)
        finally:
            waiter.cancel()

    def stop(self, wait: bool = True) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)  # type: ignore[union-attr]
        if wait:
            self.join()

    def join(self, timeout: float = 15) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the server did not stop"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder) -> Iterator[ServerThread]:
    running = ServerThread(make_app(recorder), keepalive_timeout=5.0, graceful_timeout=2.0).start()
    yield running
    running.stop()


# --- a raw HTTP/1.1 client ------------------------------------------------------------------------


def connect(server: ServerThread) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, raw_head: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_head = raw_head

    def json(self) -> Any:
        return json.loads(self.body)


class Reader:
    """Reads responses off a socket, keeping what arrives beyond one response for the next."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before {marker!r}; got {self.buffer[:200]!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("closed mid-body")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, head_request: bool = False) -> Response:
        raw_head = self.until(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if head_request or status in (204, 304) or status < 200:
            body = b""
        elif "content-length" in headers:
            body = self.exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = self.chunked()
        else:
            body = self.rest()
        return Response(status, headers, body, raw_head)

    def chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self.until(b"\r\n")[:-2], 16)
            if size == 0:
                self.until(b"\r\n")
                return b"".join(parts)
            parts.append(self.exactly(size))
            assert self.exactly(2) == b"\r\n"

    def rest(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def closed(self, timeout: float = 2.0) -> bool:
        """True when the server closes the connection (EOF or reset) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def request(path: str, body: bytes = b"", *, method: str = "POST", headers: str = "", version: str = "1.1") -> bytes:
    declared = "content-length" in headers.lower()
    length = f"Content-Length: {len(body)}\r\n" if (body or method == "POST") and not declared else ""
    return f"{method} {path} HTTP/{version}\r\nHost: test\r\n{headers}{length}\r\n".encode() + body


# --- tests ----------------------------------------------------------------------------------------


def test_keep_alive_serves_two_requests_on_one_connection(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/echo?a=1", b'{"n":1}'))
        first = reader.response()
        sock.sendall(request("/echo?a=2", b'{"n":2}'))
        second = reader.response()
    assert first.status == second.status == 200
    assert first.json()["query"] == "a=1" and second.json()["query"] == "a=2"
    assert first.json()["client_port"] == second.json()["client_port"]
    assert first.headers["content-length"] == str(len(first.body))
    assert first.headers["date"].endswith("GMT")
    assert "connection" not in first.headers


def test_scope_carries_method_path_query_headers_and_lifespan_state(server):
    reply = requests.post(server.url + "/echo?x=%20y", data=b"abc", headers={"X-Custom": "Value"}, timeout=5).json()
    assert reply["method"] == "POST" and reply["path"] == "/echo" and reply["query"] == "x=%20y"
    assert reply["headers"]["x-custom"] == "Value"  # names lower-cased, values as sent
    assert reply["body_length"] == 3 and reply["state"] == "hello" and reply["scheme"] == "http"


def test_pipelined_requests_are_answered_in_order(server, recorder):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/slow?0.3") + request("/echo?second", b"2") + request("/echo?third", b"3"))
        answers = [reader.response() for _ in range(3)]
    assert answers[0].json() == {"slept": 0.3}
    assert [a.json()["query"] for a in answers[1:]] == ["second", "third"]


def test_connection_close_from_the_client_closes_after_the_response(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/echo", b"x", headers="Connection: close\r\n"))
        response = reader.response()
        assert response.status == 200 and response.headers["connection"] == "close"
        assert reader.closed()


def test_connection_close_from_the_app_closes_after_the_response(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/close", b"x"))
        response = reader.response()
        assert response.body == b"bye" and response.headers["connection"] == "close"
        assert reader.closed()


def test_http10_closes_unless_keep_alive_is_asked(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/echo", b"x", version="1.0"))
        assert reader.response().status == 200
        assert reader.closed()
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/echo", b"x", version="1.0", headers="Connection: keep-alive\r\n"))
        response = reader.response()
        assert response.headers["connection"] == "keep-alive"
        sock.sendall(request("/echo", b"y", version="1.0", headers="Connection: keep-alive\r\n"))
        assert reader.response().json()["body_head"] == "y"


def test_http10_streamed_response_is_ended_by_closing(server, recorder):
    recorder.go_on.set()
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/stream", version="1.0", headers="Connection: keep-alive\r\n"))
        response = reader.response()
    assert "transfer-encoding" not in response.headers and response.headers["connection"] == "close"
    assert response.body == b"first\nsecond\nthird\n"


def test_chunked_request_body_is_decoded_and_delivered_as_it_arrives(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.1)
        sock.sendall(b"6\r\n world\r\n")
        time.sleep(0.1)
        sock.sendall(b"0\r\n\r\n")
        reply = reader.response().json()
    assert reply["body_length"] == 11 and reply["body_head"] == "hello world"
    assert reply["messages"] >= 2  # the body came to the app in pieces, not buffered whole


def test_large_body_read_slowly_arrives_whole(server):
    body = bytes(range(256)) * (5 * 4096)  # 5 MiB: reading pauses above 1 MiB unread
    reply = requests.post(server.url + "/slow-reader", data=body, timeout=30).json()
    assert reply == {"received": len(body)}


def test_expect_100_continue_with_curl(server):
    body = b"z" * 2048
    result = subprocess.run(
        ["curl", "-sv", "--data-binary", "@-", "-H", "Expect: 100-continue", "-H", "Content-Type: application/json", server.url + "/echo"],
        input=body,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert b"HTTP/1.1 100 Continue" in result.stderr
    assert json.loads(result.stdout)["body_length"] == 2048


def test_expect_100_continue_with_a_raw_socket(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/echo", headers="Expect: 100-continue\r\nContent-Length: 4\r\n", method="PUT"))
        assert reader.until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        response = reader.response()
        assert response.json()["body_length"] == 4 and response.json()["method"] == "PUT"
        sock.sendall(request("/echo", b"again"))  # still keep-alive
        assert reader.response().json()["body_head"] == "again"


def test_an_answer_before_the_body_is_read_is_sent_then_the_connection_ends(server, recorder):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/reject", headers="Expect: 100-continue\r\nContent-Length: 100000\r\n"))
        response = reader.response()
        assert response.status == 413 and response.headers["connection"] == "close"
        assert b"100 Continue" not in response.raw_head
        assert reader.closed()
    # a client that sends the body anyway still gets the answer in full
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/reject", b"b" * 3_000_000))
        assert reader.response().status == 413


def test_streamed_response_uses_chunked_framing_and_is_not_buffered(server, recorder):
    with requests.get(server.url + "/stream", stream=True, timeout=5) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        lines = response.iter_lines()
        assert next(lines) == b"first"  # arrives while the app waits: streamed, not buffered
        recorder.go_on.set()
        assert list(lines) == [b"second", b"third"]


def test_head_gets_headers_and_no_body(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/resource", method="HEAD"))
        response = reader.response(head_request=True)
        assert response.status == 200 and response.headers["content-length"] == "10"
        sock.sendall(request("/resource", method="GET"))  # had a body followed the HEAD answer, this would break
        assert reader.response().body == b"0123456789"


def test_malformed_request_gets_400_and_close(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        response = reader.response()
        assert response.status == 400 and response.headers["connection"] == "close"
        assert reader.closed()


def test_malformed_request_after_a_good_one_is_answered_in_turn(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/slow?0.2") + b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        assert reader.response().json() == {"slept": 0.2}
        assert reader.response().status == 400
        assert reader.closed()


def test_oversized_headers_get_431(server):
    with connect(server) as sock:
        reader = Reader(sock)
        filler = "".join(f"X-Filler-{i}: {'v' * 1000}\r\n" for i in range(70))  # ~70 KiB
        sock.sendall(request("/echo", b"x", headers=filler))
        assert reader.response().status == 431
        assert reader.closed()


def test_one_huge_header_sent_slowly_gets_431(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Huge: ")
        status = None
        for _ in range(40):  # 80 KiB of one header value, 2 KiB at a time
            try:
                sock.sendall(b"v" * 2048)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.002)
        status = reader.response().status
        assert status == 431


def test_overlong_url_gets_414(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/echo?" + "q" * 20000))
        assert reader.response().status == 414


def test_exception_before_the_response_gives_500_json(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/raise-before", b"x"))
        response = reader.response()
        assert response.status == 500 and response.headers["content-type"] == "application/json"
        assert "error" in response.json()
        sock.sendall(request("/echo", b"x"))  # the connection survives
        assert reader.response().status == 200


def test_an_app_that_never_answers_gives_500(server):
    response = requests.post(server.url + "/nothing", data=b"x", timeout=5)
    assert response.status_code == 500


def test_exception_after_the_response_started_closes_the_connection(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/raise-after", b"x"))
        head = reader.until(b"\r\n\r\n")
        assert b"200 OK" in head and b"transfer-encoding: chunked" in head
        rest = reader.rest()  # until the server closes
    assert rest == b"7\r\npartial\r\n"  # no terminating chunk: the client knows the body is cut short


def test_client_leaving_mid_stream_makes_receive_return_disconnect(server, recorder):
    sock = connect(server)
    sock.sendall(request("/endless"))
    Reader(sock).until(b"data: tick\n\n")
    left = time.monotonic()
    sock.close()
    ended = recorder.wait_for("stream-ended", timeout=1.0)
    assert ended - left < 1.0


def test_receive_after_the_response_reports_disconnect_once_the_client_leaves(server, recorder):
    with connect(server) as sock:
        sock.sendall(request("/watch"))
        Reader(sock).until(b"hi")
    assert recorder.wait_for("after-body", timeout=1.0) == "http.disconnect"


def test_slow_reader_makes_send_wait(server, recorder):
    with connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(request("/flood"))
        time.sleep(1.0)
        sent_early = recorder.sent_bytes
        time.sleep(0.5)
        sent_later = recorder.sent_bytes
        # socket buffers hold a few MiB at most; without flow control the app would have sent all 100 MiB
        assert sent_early < 24 * 1024 * 1024, sent_early
        assert sent_later == sent_early  # the app is parked in send()
        reader = Reader(sock)
        sock.settimeout(30)
        response = reader.response()
    assert len(response.body) == 400 * 256 * 1024
    recorder.wait_for("flood-done", timeout=2)


def test_idle_keep_alive_connections_are_closed_after_the_timeout(recorder):
    running = ServerThread(make_app(recorder), keepalive_timeout=0.3).start()
    try:
        with connect(running) as sock:
            reader = Reader(sock)
            sock.sendall(request("/slow?0.8"))  # busy longer than the timeout: not idle, not closed
            assert reader.response().json() == {"slept": 0.8}
            started = time.monotonic()
            assert reader.closed(timeout=3)
            assert 0.2 < time.monotonic() - started < 1.5
        with connect(running) as sock:  # a connection that never sends a request is closed too
            assert Reader(sock).closed(timeout=3)
    finally:
        running.stop()


def test_graceful_shutdown_finishes_the_request_in_flight(recorder):
    running = ServerThread(make_app(recorder), graceful_timeout=5.0).start()
    with connect(running) as busy, connect(running) as idle:
        busy.sendall(request("/slow?0.5"))
        recorder.wait_for("slow-start", timeout=2)
        running.stop(wait=False)
        assert Reader(idle).closed(timeout=2)  # idle connections close at once
        response = Reader(busy).response()
        assert response.json() == {"slept": 0.5} and response.headers["connection"] == "close"
        running.join()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", running.port), timeout=1)
    assert recorder.names()[-1] == "lifespan.shutdown"
    assert recorder.names().index("slow-end") < recorder.names().index("lifespan.shutdown")


def test_graceful_shutdown_gives_up_after_its_timeout(recorder):
    running = ServerThread(make_app(recorder), graceful_timeout=0.3).start()
    with connect(running) as busy:
        busy.sendall(request("/slow?30"))
        recorder.wait_for("slow-start", timeout=2)
        started = time.monotonic()
        running.stop()
        assert time.monotonic() - started < 5
        reader = Reader(busy)
        response = reader.response()  # cancelled unanswered: the server answers 503 where it still can
        assert response.status == 503 and response.headers["connection"] == "close"
        assert reader.closed(timeout=2)
    assert "slow-end" not in recorder.names() and recorder.names()[-1] == "lifespan.shutdown"


def test_failed_startup_stops_the_start(recorder):
    running = ServerThread(make_app(recorder, startup_fails=True))
    with pytest.raises(StartupFailed, match="no database"):
        running.start()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", running.port), timeout=1)


def test_an_app_without_lifespan_support_is_served(recorder):
    async def plain(scope, receive, send):
        assert scope["type"] == "http"
        await respond(send, 200, b"ok")

    running = ServerThread(plain).start()
    try:
        assert requests.get(running.url + "/", timeout=5).text == "ok"
    finally:
        running.stop()


RUN_SCRIPT = """
import asyncio, sys
from aigw.http.server import run

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    await asyncio.sleep(float(scope["query_string"] or 0))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})

run(app, "127.0.0.1", int(sys.argv[1]), graceful_timeout=5)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_run_stops_gracefully_on_a_signal(signal_name):
    import signal
    import sys

    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(port)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                assert requests.get(f"http://127.0.0.1:{port}/", timeout=2).text == "done"
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, "the server did not start"
                time.sleep(0.05)
        result: dict[str, Any] = {}
        client = threading.Thread(target=lambda: result.update(r=requests.get(f"http://127.0.0.1:{port}/?0.5", timeout=10)))
        client.start()
        time.sleep(0.2)
        process.send_signal(getattr(signal, signal_name))
        client.join()
        assert result["r"].status_code == 200 and result["r"].text == "done"
        assert process.wait(timeout=10) == 0
        assert process.stderr.read() == b""  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_upgrade_requests_are_served_as_plain_http(server):
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(request("/echo", b"payload", headers="Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"))
        reply = reader.response().json()
        assert reply["body_head"] == "payload" and "upgrade" not in reply["headers"]
        sock.sendall(request("/echo", b"next"))
        assert reader.response().json()["body_head"] == "next"


def test_tls(recorder, tmp_path: Path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    running = ServerThread(make_app(recorder), ssl_context=context).start()
    try:
        reply = requests.post(f"https://127.0.0.1:{running.port}/echo", data=b"secret", verify=str(cert), timeout=5)
    finally:
        running.stop()
    assert reply.json()["scheme"] == "https" and reply.json()["body_length"] == 6
