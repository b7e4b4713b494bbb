"""HTTP/2 clients are refused in HTTP/2's own terms (GOAWAY HTTP_1_1_REQUIRED), cleartext prior
knowledge included; an h2c upgrade request is answered in HTTP/1.1, as if the header were absent."""

from __future__ import annotations

import socket
import struct

from tests.gateway_process import cleanup, start_gateway

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_http2_prior_knowledge_gets_goaway_http_1_1_required() -> None:
    gateway = start_gateway()
    try:
        port = int(gateway.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # + the client's SETTINGS
            answer = _read_all(sock)  # the server closes after it
        settings, goaway = answer[:9], answer[9:]
        assert settings == b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        length = struct.unpack(">I", b"\x00" + goaway[:3])[0]
        assert goaway[3] == 0x7 and len(goaway) == 9 + length
        last_stream, error = struct.unpack(">II", goaway[9:17])
        assert (last_stream, error) == (0, 0x0D)  # HTTP_1_1_REQUIRED
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        cleanup(gateway)
