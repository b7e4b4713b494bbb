"""The operator's surface: Prometheus metrics at /metrics, and the recorded usage and payloads and
the grants at /admin/v1 (admins only). Errors in OpenAI's shape, as for every path outside a vendor's prefix.
"""

from __future__ import annotations

from collections.abc import Iterable

from aigw.admin.access_api import grants_response
from aigw.admin.usage_api import payloads_response, usage_response
from aigw.errors import ErrorKind, GatewayError
from aigw.http.asgi import JSON_HEADERS, Request, Send, send_body
from aigw.surfaces.common import Handler, Surface, json_error
from aigw.wire import openai_chat

METRICS_HEADERS = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]


class AdminSurface(Surface):
    path_prefixes = ("/admin/",)

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        yield "GET", "/metrics", self.metrics
        yield "GET", "/admin/v1/usage", self.usage
        yield "GET", "/admin/v1/payloads", self.payloads
        yield "GET", "/admin/v1/grants", self.grants

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return json_error(openai_chat.error_status(error), openai_chat.encode_error(error), error)

    async def metrics(self, request: Request, send: Send) -> None:
        """Unauthenticated, as Prometheus scrapes: counts and latencies by endpoint, no payloads."""
        text = await self.gateway.render_metrics()
        await send_body(send, 200, text.encode(), METRICS_HEADERS)

    async def usage(self, request: Request, send: Send) -> None:
        await self._require_admin(request)
        await send_body(send, 200, await usage_response(self.gateway.store, request.query), JSON_HEADERS)

    async def payloads(self, request: Request, send: Send) -> None:
        await self._require_admin(request)
        await send_body(send, 200, await payloads_response(self.gateway.store, request.query), JSON_HEADERS)

    async def grants(self, request: Request, send: Send) -> None:
        await self._require_admin(request, "Only admins may read grants.")
        await send_body(send, 200, await grants_response(self.gateway.store, request.query), JSON_HEADERS)

    async def _require_admin(self, request: Request, refusal: str = "Only admins may read usage and payloads.") -> None:
        principal = await self.authenticate(request)
        if not principal.is_admin:
            raise GatewayError(ErrorKind.PERMISSION, refusal)
