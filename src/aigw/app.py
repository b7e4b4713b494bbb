"""The gateway as an ASGI application: routes, start-up and shut-down, error rendering.

`Gateway` owns the long-lived parts (settings, store, authenticator, permissions, router, upstream
client) and is passed to the surfaces; nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from aigw.agent.runtime import AgentRuntime
from aigw.call import Call
from aigw.config import ConfigError, Settings
from aigw.errors import ErrorKind, GatewayError
from aigw.http.asgi import ClientDisconnected, Receive, Request, Scope, Send, send_body
from aigw.http.cancel import CLIENT_CLOSED_REQUEST, cancel_status
from aigw.http.cors import CORSPolicy
from aigw.http.pool import PooledUpstreamClient
from aigw.http.upstream import UpstreamClient
from aigw.logs import ACCESS, log_access
from aigw.policies.auth import Authenticator
from aigw.policies.limits import Limiter
from aigw.policies.permissions import Permissions, public_endpoints
from aigw.readiness import Readiness
from aigw.recording.metrics import UsageMetrics
from aigw.recording.records import Record
from aigw.recording.retention import RetentionJob
from aigw.recording.shared_metrics import SharedMetrics
from aigw.recording.writer import RecordWriter
from aigw.reload import ReloadSource, effective, one_line, unshared_limits
from aigw.routing import DEMO_ENDPOINT, Router
from aigw.store import Store
from aigw.store.errors import driver_message
from aigw.store.recording import RecordingStore
from aigw.surfaces.admin import AdminSurface
from aigw.surfaces.agent import AgentSurface
from aigw.surfaces.anthropic import AnthropicSurface
from aigw.surfaces.common import ErrorRenderer, Handler
from aigw.surfaces.gemini import GeminiSurface
from aigw.surfaces.openai import OpenAISurface, unknown_route
from aigw.surfaces.responses import ResponsesSurface

log = logging.getLogger("aigw")
_SLASHES = re.compile(r"/{2,}")

# What the record of a request the server cancelled says (see aigw.http.cancel).
_CANCELLED_MESSAGES = {
    CLIENT_CLOSED_REQUEST: "The client closed the connection before the answer.",
    408: "The request body did not arrive in time.",
    503: "The gateway is shutting down; try again.",
}


class Gateway:
    def __init__(
        self, settings: Settings, store: Store, client: UpstreamClient | None = None, *, reload_from: ReloadSource | None = None
    ) -> None:
        self.settings = settings
        self._reload_from = reload_from
        self._reload_lock = asyncio.Lock()
        self.store = store
        self._client = client
        # Grants are loaded and refreshed with the tokens: the authenticator swaps them in.
        self.permissions = Permissions(public=public_endpoints(settings, DEMO_ENDPOINT.name))
        self.auth = Authenticator(
            store, refresh_seconds=settings.server.token_refresh_seconds, permissions=self.permissions
        )
        self.limiter = Limiter(settings)
        self.metrics = UsageMetrics(is_endpoint=self._is_endpoint)
        self.records_durable = settings.recording.durable
        self.records = RecordWriter(
            RecordingStore(store.engine), settings.data_path() / "spill", observe=self.metrics.observe,
            durable=self.records_durable,
        )
        self.shared_metrics: SharedMetrics | None = None  # one worker of several: see share_metrics
        self._publishing: asyncio.Task | None = None
        self.agent = AgentRuntime(settings, store.engine)
        self.retention = RetentionJob(settings.retention, store.engine)
        self.cors, self.readiness = self._per_configuration(settings, self.limiter)
        self.router: Router | None = None
        self.routes: dict[tuple[str, str], tuple[Handler, ErrorRenderer]] = {}
        self.prefix_routes: list[tuple[str, str, Handler, ErrorRenderer]] = []  # (method, prefix, ...)
        surfaces = [
            OpenAISurface(self), AnthropicSurface(self), GeminiSurface(self), ResponsesSurface(self), AgentSurface(self), AdminSurface(self),
        ]  # fmt: skip
        for surface in surfaces:
            for method, path, handler in surface.routes():
                if path.endswith("/*"):
                    self.prefix_routes.append((method, path[:-1], handler, surface.error_response))
                else:
                    self.routes[(method, path)] = (handler, surface.error_response)
        # Unknown paths: the shape of the surface whose prefix they carry, else OpenAI's.
        self._unknown_path_renderers = [(p, s.error_response) for s in surfaces for p in s.path_prefixes]
        self._fallback_renderer: ErrorRenderer = surfaces[0].error_response

    def share_metrics(self, directory: Path, worker: int) -> None:
        """As worker `worker` of `serve --workers N`: /metrics answers for every worker (see
        aigw.recording.shared_metrics)."""
        self.shared_metrics = SharedMetrics(directory, worker, self.metrics, self.records.stats)

    async def render_metrics(self) -> str:
        if self.shared_metrics is not None:
            return await self.shared_metrics.render()
        return self.metrics.render(self.records.stats())

    def _is_endpoint(self, name: str) -> bool:
        return self.router is not None and name in self.router.endpoints

    # --- lifecycle ---------------------------------------------------------------------------------

    async def startup(self) -> None:
        if self._client is None:
            self._client = PooledUpstreamClient()
        self.router = Router(self.settings, self._client, self.records.submit)
        await self.auth.start()
        await self.limiter.start()
        await self.records.start()
        self.retention.start()
        if self.shared_metrics is not None:
            self._publishing = asyncio.create_task(self.shared_metrics.run())

    async def reload(self) -> bool:
        """Re-read the configuration (SIGHUP; see aigw.reload). A bad file is refused and the running
        configuration stays; a good one applies to requests that start from now on, while requests
        under way finish with the parts they started with. True if the new configuration applies."""
        if self._reload_from is None:
            log.warning("reload requested, but this gateway was not started from a configuration it can re-read")
            return False
        async with self._reload_lock:
            try:
                loaded = await asyncio.to_thread(self._reload_from.load)
            except ConfigError as exc:
                log.error("reload refused: configuration error: %s; the running configuration stays", one_line(exc))
                return False
            settings, restart_only = effective(self.settings, loaded)
            problem = unshared_limits(settings, self._reload_from.workers)
            if problem is not None:
                log.error("reload refused: %s; the running configuration stays", problem)
                return False
            try:  # build everything before changing anything
                router = Router(settings, self._client, self.records.submit) if self._client is not None else None
                limiter = self.limiter.reconfigured(settings)
                agent = self.agent.prepare(settings)
            except Exception as exc:
                log.error("reload refused: %s; the running configuration stays", exc)
                return False
            await limiter.start()  # connects to Redis if limits appear for the first time
            # The swap: no await from here on, so no request sees half of it.
            self.settings, self.router, self.limiter = settings, router or self.router, limiter
            self.permissions.set_public(public_endpoints(settings, DEMO_ENDPOINT.name))
            self.agent.swap(agent)
            self.cors, self.readiness = self._per_configuration(settings, limiter)
            if self._reload_from.log_level:
                logging.getLogger("aigw").setLevel(settings.logging.level.upper())
            if restart_only:
                log.warning(
                    "reload: %s changed in the file but take effect only at a restart; the running values stay",
                    ", ".join(restart_only),
                )
            endpoints = ",".join(sorted(self.router.endpoints)) if self.router is not None else "-"
            log.info("configuration reloaded", extra={"fields": {"endpoints": endpoints}})
            return True

    def _per_configuration(self, settings: Settings, limiter: Limiter) -> tuple[CORSPolicy | None, Readiness]:
        """The CORS policy and the readiness probe of `settings` (at start and at each reload)."""
        cors = settings.server.cors_origins
        policy = CORSPolicy(cors, settings.server.cors_max_age) if cors else None
        return policy, Readiness(self.store.engine, limiter.redis_ping, redis_required=not limiter.fail_open)

    async def shutdown(self) -> None:
        """After the server stopped taking requests: every record is flushed (or spilled to disk),
        background agent runs included (they end as failed and record themselves first)."""
        await self.retention.stop()
        await self.agent.close()
        await self.records.close()
        if self._publishing is not None:
            self._publishing.cancel()  # publishes the final counts as it ends
            await asyncio.gather(self._publishing, return_exceptions=True)
        await self.limiter.close()
        await self.auth.stop()
        if self._client is not None:
            await self._client.close()
        await asyncio.to_thread(self.store.close)

    # --- ASGI --------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if "//" in request.path:  # clients that join a base URL ending in "/" with "/v1/...": one route
            request.path = _SLASHES.sub("/", request.path)
        path = request.path
        started = time.perf_counter()
        if self.cors is not None and (origin := request.headers.get("origin")):
            if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
                headers = self.cors.preflight_headers(origin, request.headers.get("access-control-request-headers"))
                await send_body(send, 204, b"", headers)
                return
            if self.cors.allows(origin):
                send = self.cors.wrap(send, origin)
        if path == "/health":
            await send_body(send, 200, b'{"status":"ok"}')
            return
        if path == "/ready":
            await send_body(send, *await self.readiness.answer())
            return
        method = "GET" if request.method == "HEAD" else request.method  # the server sends HEAD's head only
        route = self.routes.get((method, path.rstrip("/") or "/")) or self._prefix_route(method, path)
        access_logged = ACCESS.isEnabledFor(logging.INFO)  # health and readiness probes are not logged
        if route is None:
            renderer = next((r for p, r in self._unknown_path_renderers if path.startswith(p)), self._fallback_renderer)
            status = await self._send_error(send, renderer, unknown_route(request), None)
            if access_logged:
                log_access(request.method, path, status, started, None)
            return
        handler, render_error = route
        if self.records_durable:
            send = self._writing_ahead(request, send)
        status, message = 200, None
        try:
            await handler(request, send)
        except GatewayError as error:
            status, message = await self._send_error(send, render_error, error, request.call), error.message
        except ClientDisconnected:
            status, message = CLIENT_CLOSED_REQUEST, _CANCELLED_MESSAGES[CLIENT_CLOSED_REQUEST]
        except asyncio.CancelledError as cancelled:
            # The server stopped this request (aigw.http.cancel): record why; a shutdown still answers.
            status = cancel_status(cancelled)
            message = _CANCELLED_MESSAGES.get(status)
            if status == 503:
                error = GatewayError(ErrorKind.OVERLOADED, message or "", status=503, headers={"retry-after": "1"})
                await self._send_error(send, render_error, error, request.call)
            raise
        except SQLAlchemyError as exc:  # the store failed this request (down, or a dropped connection)
            log.warning("store error on %s %s: %s", request.method, path, driver_message(exc)[:300])
            error = GatewayError(
                ErrorKind.OVERLOADED, "The gateway's store is unavailable; try again.", status=503, headers={"retry-after": "1"}
            )  # fmt: skip
            status, message = await self._send_error(send, render_error, error, request.call), error.message
        except Exception:
            log.exception("unhandled error on %s %s", request.method, path)
            error = GatewayError(ErrorKind.INTERNAL, "Internal gateway error.")
            status, message = await self._send_error(send, render_error, error, request.call), error.message
        finally:
            if request.call is not None and not request.call.closed:
                self.finish_call(request.call, status, message)
            if access_logged:
                log_access(request.method, path, status, started, request.call)

    def finish_call(self, call: Call, status: int, error: str | None) -> None:
        """The request is over: record it and settle its rate-limit charge with the real tokens."""
        for record in self._close_call(call, status, error):
            self.records.submit(record)

    def _close_call(self, call: Call, status: int, error: str | None) -> list[Record]:
        call.closed = True
        record = call.usage_record(status, error)
        if call.admission is not None:
            self.limiter.settle(call.admission, record.total_tokens or 0)
        payload = call.payload_record(record)
        return [record] if payload is None else [record, payload]

    def _writing_ahead(self, request: Request, send: Send) -> Send:
        """Durable recording: the answer's last byte waits until the request's records are on disk."""
        status = 200

        async def send_after_records(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body") and request.call is not None and not request.call.closed:
                await self.records.write_ahead(self._close_call(request.call, status, request.call.error))
            await send(message)

        return send_after_records

    def _prefix_route(self, method: str, path: str) -> tuple[Handler, ErrorRenderer] | None:
        for route_method, prefix, handler, render in self.prefix_routes:
            if route_method == method and path.startswith(prefix):
                return handler, render
        return None

    @staticmethod
    async def _send_error(send: Send, render: ErrorRenderer, error: GatewayError, call: Call | None) -> int:
        """Send `error` in the surface's shape; the status the client got."""
        if call is not None:
            call.error = error.message
        status, body, headers = render(error)
        try:
            await send_body(send, status, body, headers)
        except Exception:  # the response had already started: nothing more can be said
            pass
        return status

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

