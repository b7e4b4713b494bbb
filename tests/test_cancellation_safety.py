"""A client that leaves before its answer stops the work done for it, and the request is still
accounted for: the upstream connection is closed (a real model would otherwise generate, and bill,
an answer nobody reads), the usage record is written with status 499, and the rate-limit charge
is settled. Raw sockets play the clients; a holding fake upstream never answers by itself and
reports when the gateway hangs up on it. One gateway process serves every test.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.gateway_process import GatewayProcess, cleanup, start_gateway

CHAT = "/mlflow/v1/chat/completions"


class HoldingUpstream:
    """An OpenAI-compatible upstream that reads each request and then holds it: whole answers never
    come; a stream gets its head and one event. It counts the connections the gateway still has open."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"
        self._lock = threading.Lock()
        self.held: dict[str, float | None] = {}  # the request's text -> when the gateway closed it
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(sock,), daemon=True).start()

    def _hold(self, sock: socket.socket) -> None:
        with sock:
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += sock.recv(65536)
            request = json.loads(body)
            text = request["messages"][-1]["content"]
            if request.get("stream"):
                event = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "partial"}}]}  # fmt: skip
                data = b"data: %s\n\n" % json.dumps(event).encode()
                sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(data), data))
            with self._lock:
                self.held[text] = None
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
            with self._lock:
                self.held[text] = time.monotonic()

    def wait_held(self, texts: list[str], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(text in self.held for text in texts):
            assert time.monotonic() < deadline, f"the upstream got {sorted(self.held)} of {texts}"
            time.sleep(0.02)

    def closed_at(self, text: str) -> float | None:
        return self.held.get(text)

    def stop(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[HoldingUpstream]:
    fake = HoldingUpstream()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(upstream: HoldingUpstream) -> Iterator[GatewayProcess]:
    destination = {"provider": "openai_compatible", "model": "m", "base_url": upstream.url, "api_key": "k", "timeout": 60}
    endpoints = [
        {"name": "held", "destinations": [destination]},
        # 1,000 tokens a minute: one request estimated at ~750 leaves room for no second one until settled.
        {"name": "limited", "destinations": [destination], "rate_limits": [{"key": "endpoint", "tokens": 1000}]},
    ]
    process = start_gateway(yaml.safe_dump({"server": {"graceful_timeout": 0.5}, "endpoints": endpoints}))
    yield process
    cleanup(process)


def post(gateway: GatewayProcess, body: dict) -> socket.socket:
    """Send a chat request on a raw socket and return it, unanswered."""
    data = json.dumps(body).encode()
    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {gateway.admin_token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data
    )
    return sock


def chat(endpoint: str, text: str, stream: bool = False) -> dict:
    return {"model": endpoint, "messages": [{"role": "user", "content": text}], "stream": stream}


def records_for(gateway: GatewayProcess, count: int, match, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in gateway.usage_records() if match(r)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_clients_leaving_close_their_upstream_calls_and_are_recorded_as_499(gateway, upstream):
    texts = [f"whole-{n}" for n in range(10)]
    socks = [post(gateway, chat("held", text)) for text in texts]
    upstream.wait_held(texts)
    left = time.monotonic()
    for sock in socks:
        sock.close()
    deadline = left + 2.0
    while time.monotonic() < deadline and any(upstream.closed_at(t) is None for t in texts):
        time.sleep(0.02)
    still_open = [t for t in texts if upstream.closed_at(t) is None]
    assert not still_open, f"{len(still_open)} of 10 upstream calls still open 2 s after their clients left"
    records = records_for(gateway, 10, lambda r: r["endpoint"] == "held" and not r["streamed"])
    assert [r["status"] for r in records] == [499] * 10
    # The record names the destination that was called (it may bill for what it generated).
    assert all(r["destination"] and [a["error"] for a in r["attempts"]] == ["cancelled"] for r in records), records[0]
    assert all(r["error"] == "The client closed the connection before the answer." for r in records)


def test_a_client_leaving_a_stream_closes_the_upstream_stream_and_is_recorded_as_499(gateway, upstream):
    sock = post(gateway, chat("held", "streamed", stream=True))
    received = b""
    while b"partial" not in received:
        received += sock.recv(65536)  # the stream has begun: the client has its first event
    sock.close()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and upstream.closed_at("streamed") is None:
        time.sleep(0.02)
    assert upstream.closed_at("streamed") is not None
    records = records_for(gateway, 1, lambda r: r["endpoint"] == "held" and r["streamed"])
    assert [r["status"] for r in records] == [499]


def test_a_client_leaving_mid_body_is_recorded_as_499(gateway):
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {gateway.admin_token}\r\n"
            f"Content-Length: 1000\r\n\r\n".encode() + b'{"model": "held", '
        )
        time.sleep(0.3)
    # Before the body is in, the request names no endpoint yet.
    records = records_for(gateway, 1, lambda r: r["endpoint"] == "")
    assert [(r["status"], r["surface"], r["error"]) for r in records] == [
        (499, "openai_chat", "The client closed the connection before the answer.")
    ]


def test_a_cancelled_call_gives_back_its_rate_limit_charge(gateway, upstream):
    padding = "x" * 3000  # ~750 tokens of the endpoint's 1,000 a minute
    sock = post(gateway, chat("limited", "first " + padding))
    upstream.wait_held(["first " + padding])
    sock.close()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and upstream.closed_at("first " + padding) is None:
        time.sleep(0.02)
    time.sleep(0.2)
    second = post(gateway, chat("limited", "second " + padding))
    try:
        upstream.wait_held(["second " + padding], timeout=3.0)  # admitted, not refused with 429
    except AssertionError:
        second.settimeout(2)
        raise AssertionError(f"the second call was not admitted: {second.recv(4096)[:300]!r}") from None
    finally:
        second.close()


def test_shutdown_answers_calls_still_running_with_503_and_records_them(gateway, upstream):
    """Last in the file: it stops the module's gateway (graceful_timeout: 0.5)."""
    sock = post(gateway, chat("held", "at-shutdown"))
    upstream.wait_held(["at-shutdown"])
    gateway.process.terminate()
    sock.settimeout(10)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"\r\nretry-after: 1\r\n" in head.lower(), head
    assert json.loads(body)["error"]["message"] == "The gateway is shutting down; try again."  # OpenAI's shape
    assert gateway.process.wait(timeout=10) == 0
    assert upstream.closed_at("at-shutdown") is not None
    assert [r["endpoint"] for r in gateway.usage_records() if r["status"] == 503] == ["held"]
