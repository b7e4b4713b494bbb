"""Refusing HTTP/2 cleanly. The server speaks HTTP/1.1 only; over TLS, ALPN settles clients on it
(aigw.http.tls). A cleartext client with "prior knowledge" opens with the HTTP/2 preface instead:
an HTTP/1.1 400 would be gibberish to it, so it gets what RFC 9113 has for this case, its own
connection preface (an empty SETTINGS frame) and a GOAWAY with HTTP_1_1_REQUIRED, then the close.
"""

from __future__ import annotations

import struct

PREFACE_START = b"PRI * HTTP/2.0"
_HTTP_1_1_REQUIRED = 0x0D
_DEBUG = b"this server speaks HTTP/1.1"


def _frame(kind: int, payload: bytes) -> bytes:
    # 24-bit length, 8-bit type, 8-bit flags, 31-bit stream id (0: the connection)
    return struct.pack(">I", len(payload))[1:] + bytes([kind, 0]) + struct.pack(">I", 0) + payload


HTTP2_REFUSAL = _frame(0x4, b"") + _frame(0x7, struct.pack(">II", 0, _HTTP_1_1_REQUIRED) + _DEBUG)
