"""One aiohttp app serving fake OpenAI, Anthropic and Gemini upstreams.

Standalone:  python -m tests.fakes.server --port 8999   (prints "READY <port>")
In-process:  FakeUpstream().start() ... .stop()          (see tests/fakes/fixtures.py)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from typing import Any

from aiohttp import web

from . import anthropic_fake, gemini_fake, openai_fake
from .wire import RECORDER, Recorder, fault_middleware, record_middleware


def _vendor_of(request: web.Request) -> str:
    """Who a request to a path shared by vendors (GET /v1/models) is meant for."""
    if "anthropic-version" in request.headers:
        return "anthropic"
    if "x-goog-api-key" in request.headers or "key" in request.query:
        return "gemini"
    return "openai"


async def _models(request: web.Request) -> web.StreamResponse:
    vendor = _vendor_of(request)
    if vendor == "anthropic":
        return await anthropic_fake.list_models(request)
    if vendor == "gemini":
        return await gemini_fake.list_models(request)
    return await openai_fake.list_models(request)


async def _model(request: web.Request) -> web.StreamResponse:
    if _vendor_of(request) == "gemini":
        return await gemini_fake.get_model(request)
    return await openai_fake.get_model(request)


async def _get_requests(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[RECORDER].snapshot())


async def _clear_requests(request: web.Request) -> web.StreamResponse:
    request.app[RECORDER].clear()
    return web.json_response({"cleared": True})


def build_app(recorder: Recorder | None = None) -> web.Application:
    app = web.Application(middlewares=[record_middleware, fault_middleware], client_max_size=64 * 1024**2)
    app[RECORDER] = recorder or Recorder()
    app.router.add_get("/_fake/requests", _get_requests)
    app.router.add_delete("/_fake/requests", _clear_requests)
    openai_fake.add_routes(app)
    anthropic_fake.add_routes(app)
    gemini_fake.add_routes(app)
    app.router.add_get("/v1/models", _models)
    # OpenAI model ids and Gemini names share this route; Gemini requests carry their API key.
    app.router.add_get("/v1/models/{spec}", _model)
    return app


def _make_runner(app: web.Application) -> web.AppRunner:
    # handler_cancellation: a client giving up on "hang" frees its handler;
    # shutdown_timeout: stop() does not wait an hour for hanging handlers.
    return web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)


class FakeUpstream:
    """The fake upstream served on its own event loop in a daemon thread.

    >>> fake = FakeUpstream().start()
    >>> fake.url            # 'http://127.0.0.1:PORT'
    >>> fake.requests       # [{'method', 'path', 'query', 'headers', 'json'}, ...]
    >>> fake.clear(); fake.stop()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.recorder = Recorder()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle

    def start(self, timeout: float = 10.0) -> "FakeUpstream":
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("fake upstream did not start in time")
        if failure:
            self._thread = None
            raise RuntimeError("fake upstream failed to start") from failure[0]
        return self

    async def _serve(self) -> None:
        self._runner = _make_runner(build_app(self.recorder))
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            try:
                fut.result(timeout)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- inspection

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of the recorded requests, oldest first."""
        return self.recorder.snapshot()

    def clear(self) -> None:
        self.recorder.clear()

    def last(self, path_contains: str = "") -> dict[str, Any]:
        """The most recent recorded request whose path contains ``path_contains``."""
        for item in reversed(self.recorder.snapshot()):
            if path_contains in item["path"]:
                return item
        raise LookupError(f"no recorded request with path containing {path_contains!r}")


async def _main(host: str, port: int) -> None:
    runner = _make_runner(build_app())
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"READY {runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic/Gemini upstream for aigw tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the READY line)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
