"""Compressed request bodies: `Content-Encoding: gzip`, `deflate` (zlib or raw) and `identity`.

The size limit applies to the decompressed body, checked as it grows, so a small "zip bomb" is
refused with 413 after inflating at most `limit` + 1 bytes. Other codings (br, zstd, ...) get 415.
Big bodies are inflated on a worker thread: inflating 32 MiB takes tens of milliseconds of CPU
that the serving loop must not spend.
"""

from __future__ import annotations

import asyncio
import zlib

from aigw.errors import ErrorKind, GatewayError

THREAD_ABOVE_BYTES = 64 * 1024  # compressed bodies smaller than this inflate inline (microseconds)
_WINDOW = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def codings(header: str) -> list[str]:
    """The codings of a Content-Encoding header, in the order they were applied."""
    return [c.strip().lower() for c in header.split(",") if c.strip() and c.strip().lower() != "identity"]


async def decode_body(body: bytes, header: str, limit: int, too_large: GatewayError) -> bytes:
    for coding in reversed(codings(header)):  # the last applied is undone first
        if coding not in _WINDOW:
            raise GatewayError(
                ErrorKind.INVALID_REQUEST, f"Unsupported Content-Encoding '{coding}': use gzip or deflate.",
                status=415, code="unsupported_content_encoding",
            )  # fmt: skip
        if len(body) > THREAD_ABOVE_BYTES:
            body = await asyncio.to_thread(_inflate, body, coding, limit, too_large)
        else:
            body = _inflate(body, coding, limit, too_large)
    return body


def _inflate(body: bytes, coding: str, limit: int, too_large: GatewayError) -> bytes:
    window = _WINDOW[coding]
    if coding == "deflate" and body[:1] and (body[0] & 0x0F) != 8:
        window = -zlib.MAX_WBITS  # raw deflate, as some clients send it under this name
    inflater = zlib.decompressobj(window)
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise too_large
        out += inflater.flush()
    except zlib.error:
        raise GatewayError(
            ErrorKind.INVALID_REQUEST, f"The request body is not valid {coding} data.", code="invalid_content_encoding"
        ) from None
    if len(out) > limit:
        raise too_large
    if not inflater.eof:
        raise GatewayError(ErrorKind.INVALID_REQUEST, f"The request body's {coding} data is truncated.", code="invalid_content_encoding")
    return out
