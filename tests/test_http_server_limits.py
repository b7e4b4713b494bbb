"""The HTTP server's defences against hostile or broken clients: request bodies that trickle in,
more connections than it can hold, and request heads that are ambiguous. Raw sockets play the clients."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from aigw.http.cancel import BODY_TIMEOUT, CLIENT_GONE, SHUTTING_DOWN
from tests.test_http_server import Reader, Recorder, ServerThread, connect, read_body, request, respond


def limits_app(recorder: Recorder):
    """/echo reads the body and answers its length; /sleep?S reads it and answers after S seconds.
    Either records how the server cancelled it."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            body, _ = await read_body(receive)
            if scope["path"] == "/sleep":
                recorder.add("sleeping")
                await asyncio.sleep(float(scope["query_string"] or 30))
            await respond(send, 200, b'{"length":%d}' % len(body))
        except asyncio.CancelledError as exc:
            recorder.add("cancelled", exc.args[0] if exc.args else None)
            raise

    return app


def start(recorder: Recorder, **options) -> ServerThread:
    options.setdefault("keepalive_timeout", 5.0)
    options.setdefault("graceful_timeout", 1.0)
    return ServerThread(limits_app(recorder), **options).start()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder) -> Iterator[ServerThread]:
    running = start(recorder, request_body_read_timeout=0.5, request_body_timeout=1.5)
    yield running
    running.stop()


def head(path: str, length: int) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {length}\r\n\r\n".encode()


# --- request bodies that trickle in ---------------------------------------------------------------


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closes(server, recorder):
    with connect(server) as sock:
        sock.sendall(head("/echo", 100) + b"x" * 10)
        started = time.monotonic()
        reader = Reader(sock)
        response = reader.response()
        waited = time.monotonic() - started
        assert response.status == 408 and response.headers["connection"] == "close"
        assert reader.closed(timeout=2)
    assert 0.4 < waited < 2.0, waited
    assert recorder.wait_for("cancelled", timeout=1) == BODY_TIMEOUT  # the app stops waiting for it too


def test_a_body_that_keeps_trickling_is_cut_off_by_the_total_timeout(server, recorder):
    with connect(server) as sock:
        sock.sendall(head("/echo", 1000))
        started = time.monotonic()
        sock.settimeout(0.2)
        data = b""
        while time.monotonic() - started < 4 and not data:
            try:
                sock.sendall(b"x")  # every 0.2 s: never the 0.5 s gap the read timeout allows
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        waited = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert 1.4 < waited < 3.0, waited


def test_a_body_arriving_steadily_is_not_cut_off(server):
    with connect(server) as sock:
        sock.sendall(head("/echo", 5))
        for byte in b"hello":
            time.sleep(0.25)  # slower than nothing, quicker than the read timeout; 1.25 s in all
            sock.sendall(bytes([byte]))
        assert Reader(sock).response().json() == {"length": 5}


def test_time_the_app_takes_to_answer_is_not_the_clients(server):
    with connect(server) as sock:
        sock.sendall(head("/sleep?2", 2) + b"hi")  # the body is in: the app may take its time
        assert Reader(sock).response().json() == {"length": 2}


def test_a_client_waiting_for_100_continue_is_not_timed_out(recorder):
    async def late_reader(scope, receive, send):
        if scope["type"] != "http":
            return
        await asyncio.sleep(1.0)  # longer than the read timeout before it asks for the body
        body, _ = await read_body(receive)
        await respond(send, 200, body)

    running = ServerThread(late_reader, request_body_read_timeout=0.5, request_body_timeout=5).start()
    try:
        with connect(running) as sock:
            sock.sendall(f"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n".encode())
            reader = Reader(sock)
            assert reader.until(b"\r\n\r\n").startswith(b"HTTP/1.1 100 ")
            sock.sendall(b"ok")
            assert reader.response().body == b"ok"
    finally:
        running.stop()


# --- too many connections -------------------------------------------------------------------------


def test_past_max_connections_the_longest_idle_connection_is_closed_for_the_new_one(recorder):
    running = start(recorder, max_connections=2)
    try:
        with connect(running) as idle, connect(running) as busy:
            Reader(idle)  # never sends a request: idle
            busy.sendall(head("/sleep?1.5", 0))
            recorder.wait_for("sleeping", timeout=2)
            with connect(running) as newcomer:
                newcomer.sendall(head("/echo", 2) + b"hi")
                assert Reader(newcomer).response().json() == {"length": 2}
                assert Reader(idle).closed(timeout=1)
            assert Reader(busy).response().json() == {"length": 0}  # the busy one was left alone
    finally:
        running.stop()


def test_when_every_connection_is_busy_a_new_client_gets_503_with_retry_after(recorder):
    running = start(recorder, max_connections=1)
    try:
        with connect(running) as busy:
            busy.sendall(head("/sleep?1.5", 0))
            recorder.wait_for("sleeping", timeout=2)
            with connect(running) as refused:
                refused.sendall(head("/echo", 2) + b"hi")  # sent anyway: it must not cost the client the 503
                reader = Reader(refused)
                response = reader.response()
                assert response.status == 503 and response.headers["retry-after"] == "1"
                assert response.headers["connection"] == "close"
                assert reader.closed(timeout=2)
            assert Reader(busy).response().json() == {"length": 0}
        with connect(running) as later:  # the slot is free again
            later.sendall(head("/echo", 0))
            assert Reader(later).response().status == 200
    finally:
        running.stop()


# --- ambiguous request heads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"GET /echo HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer one\r\nauthorization: Bearer two\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nx-api-key: one\r\nX-Api-Key: two\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\nContent-Type: c/d\r\nContent-Length: 0\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nanthropic-version: 1\r\nanthropic-version: 2\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ],
)
def test_ambiguous_or_undecodable_requests_are_refused(server, raw, status):
    with connect(server) as sock:
        sock.sendall(raw)
        reader = Reader(sock)
        response = reader.response()
        assert response.status == status, response.raw_head
        assert response.headers["connection"] == "close" and response.headers["content-type"].startswith("text/plain")
        assert reader.closed(timeout=2)


def test_http10_without_host_and_repeatable_headers_are_accepted(server):
    with connect(server) as sock:
        sock.sendall(b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
        assert Reader(sock).response().json() == {"length": 2}
    with connect(server) as sock:
        sock.sendall(request("/echo", b"hi", headers="Accept: a/b\r\nAccept: c/d\r\nanthropic-beta: x\r\nanthropic-beta: y\r\n"))
        assert Reader(sock).response().json() == {"length": 2}


# --- cancellation by the server -------------------------------------------------------------------


def test_a_client_leaving_before_the_answer_cancels_the_app(server, recorder):
    sock = connect(server)
    sock.sendall(head("/sleep?30", 0))
    recorder.wait_for("sleeping", timeout=2)
    sock.close()
    assert recorder.wait_for("cancelled", timeout=1) == CLIENT_GONE


def test_a_client_leaving_mid_body_cancels_the_app(server, recorder):
    sock = connect(server)
    sock.sendall(head("/echo", 100) + b"x" * 10)
    time.sleep(0.1)
    sock.close()
    assert recorder.wait_for("cancelled", timeout=1) == CLIENT_GONE


def test_shutdown_cancels_what_still_runs_with_its_own_reason(recorder):
    running = start(recorder, graceful_timeout=0.2)
    with connect(running) as sock:
        sock.sendall(head("/sleep?30", 0))
        recorder.wait_for("sleeping", timeout=2)
        running.stop()
        assert Reader(sock).response().status == 503
    assert recorder.wait_for("cancelled", timeout=1) == SHUTTING_DOWN


# --- memory after large bodies --------------------------------------------------------------------

HEAP_SCRIPT = """
import sys
def rss():
    return next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmRSS:"))
if sys.argv[1] == "tuned":
    from aigw.http.process import HeapTrimmer
    HeapTrimmer()  # what the server sets up
big = bytearray(30 << 20); del big  # one large body seen and freed: glibc's threshold rises to 30 MiB
before = rss()
bodies = [bytes(bytearray(b"x" * (8 << 20))) for _ in range(20)]  # 160 MiB of later bodies
others = [bytes(100) for _ in range(10000)]  # what the requests allocated meanwhile
del bodies
print(before, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator, /proc")
def test_memory_of_large_bodies_goes_back_to_the_system():
    """20 slow 30 MB bodies through the gateway left RSS at 150-510 MB after the clients left (glibc
    serves large blocks from its heap once a large block was freed); with the server's tuning, 100
    MB, where it started. This pins the mechanism in a small process of its own."""

    def kept(mode: str) -> int:
        result = subprocess.run([sys.executable, "-c", HEAP_SCRIPT, mode], capture_output=True, text=True, timeout=30)
        before, after = map(int, result.stdout.split())
        return after - before

    if kept("untuned") < 100:
        pytest.skip("this allocator gives large freed blocks back by itself")
    assert kept("tuned") < 20
