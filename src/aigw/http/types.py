"""The ASGI types the HTTP server and its lifespan share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]
ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
