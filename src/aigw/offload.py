"""The CPU-heavy steps of a big request run on a worker thread, so that one big request cannot stall
the serving loop (and with it every other request and /health).

Parsing, validating and translating a request costs time in proportion to its size: a 13 MB chat
body of 400,000 tiny messages took seconds of pure-Python decoding and encoding, all of it on the
loop. Those steps (the body's parse and schema check, the decode to the canonical model, a
provider's request encoding, a whole answer's parse) go through `run_heavy`: inline for requests
under `OFFLOAD_ABOVE_BYTES` (a thread hop costs ~50-100 µs, more than the work), on the default
executor above it. The worker holds the GIL while it runs Python, but the interpreter hands it back
every 5 ms (sys.getswitchinterval), so the loop keeps serving meanwhile.

The size that decides is the request body's, noted once by the surface that read it; it is a
context variable, so each request (its own task) sees its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

OFFLOAD_ABOVE_BYTES = 256 * 1024
T = TypeVar("T")
_request_bytes: ContextVar[int] = ContextVar("aigw_request_bytes", default=0)


def note_request_size(size: int) -> None:
    """The size of the body of the request this task serves."""
    _request_bytes.set(size)


async def run_heavy(fn: Callable[..., T], *args: Any, size: int | None = None) -> T:
    """`fn(*args)`, on a worker thread when the input is big: `size` bytes, or else the request's."""
    if (_request_bytes.get() if size is None else size) < OFFLOAD_ABOVE_BYTES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)
