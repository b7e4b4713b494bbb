"""CORS for browser apps (`server.cors_origins`), off by default.

An allowed origin's preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered 204 by
the gateway itself, before authentication (browsers send no credentials on a preflight); its other
requests get `Access-Control-Allow-Origin` and the headers a client reads (`Retry-After`, rate-limit
headers) exposed. The gateway authenticates with tokens in headers, never cookies, so credentials
mode is not offered and `*` is safe to allow. A preflight from an origin not on the list gets 204
without CORS headers, which the browser treats as a refusal.
"""

from __future__ import annotations

from aigw.http.asgi import Send

_EXPOSED = b"retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, x-request-id"
_DEFAULT_HEADERS = b"authorization, content-type, x-api-key, x-goog-api-key, api-key, anthropic-version, anthropic-beta"
_MAX_REQUESTED_HEADERS = 4096  # a preflight's header list, echoed back only up to this size


class CORSPolicy:
    def __init__(self, origins: list[str], max_age: int) -> None:
        self._any = "*" in origins
        self._origins = frozenset(o.rstrip("/").lower() for o in origins if o != "*")
        self._max_age = str(max_age).encode()

    def allows(self, origin: str) -> bool:
        return self._any or origin.lower() in self._origins

    def _origin_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        if self._any:
            return [(b"access-control-allow-origin", b"*")]
        return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"origin")]

    def preflight_headers(self, origin: str, requested_headers: str | None) -> list[tuple[bytes, bytes]]:
        if not self.allows(origin):
            return [(b"vary", b"origin")]
        allowed = requested_headers.encode("latin-1") if requested_headers and len(requested_headers) <= _MAX_REQUESTED_HEADERS else _DEFAULT_HEADERS
        return self._origin_headers(origin) + [
            (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
            (b"access-control-allow-headers", allowed),
            (b"access-control-max-age", self._max_age),
        ]

    def wrap(self, send: Send, origin: str) -> Send:
        """`send` adding the CORS headers to the response head (the body passes untouched)."""
        extra = self._origin_headers(origin) + [(b"access-control-expose-headers", _EXPOSED)]

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        return send_with_cors
