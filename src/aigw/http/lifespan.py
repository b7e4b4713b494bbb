"""ASGI lifespan and stop signals for the HTTP server: the app's start-up and shut-down protocol,
run in a task of its own, and SIGTERM/SIGINT turned into a graceful stop (a second one hurries it)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aigw.http.types import ASGI_VERSION, ASGIApp

log = logging.getLogger("aigw.http.server")


class StartupFailed(Exception):
    """The application's lifespan start-up reported a failure (or crashed)."""


class Lifespan:
    """Runs the app's lifespan protocol in a task of its own. An app that raises before it reads the
    start-up message, or returns without answering, does not speak lifespan: serving goes on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()
        self._read_any = False
        self._failure: str | None = None
        self._task: asyncio.Task | None = None

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._inbox.put({"type": "lifespan.startup"})
        await self._started.wait()
        if self._failure is not None:
            raise StartupFailed(self._failure)

    async def shutdown(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._stopped.wait()
        if self._failure is not None:
            log.error("application shutdown failed: %s", self._failure)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as exc:
            if self._read_any:
                log.error("exception in the ASGI lifespan", exc_info=exc)
                self._failure = self._failure or f"{type(exc).__name__}: {exc}"
            else:
                log.info("the ASGI app does not support lifespan (%r)", exc)
        finally:
            self._started.set()
            self._stopped.set()

    async def _receive(self) -> dict[str, Any]:
        self._read_any = True
        return await self._inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            self._failure = message.get("message") or kind
        if kind.startswith("lifespan.startup."):
            self._started.set()
        elif kind.startswith("lifespan.shutdown."):
            self._stopped.set()


# A stop signal this soon after the first is the same request reaching the process twice (a
# terminal's Ctrl-C or systemd's stop reach every process of the group, and aigw.http.workers'
# supervisor forwards it too), not an operator asking to hurry.
SAME_SIGNAL_SECONDS = 1.0


class StopSignals:
    """SIGTERM or SIGINT starts a graceful shutdown; a second one (a second or more later) hurries
    it (no more waiting).
    SIGHUP calls `reload` (the app's, see `serve`), one at a time; without one it is ignored
    (its default action would end the process)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reload: Callable[[], Awaitable[Any]] | None = None) -> None:
        self.loop = loop
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()
        self._reload = reload
        self._stopped_at = 0.0
        self._reloading: asyncio.Task | None = None
        self._installed: list[int] = []
        for sig, handler in ((signal.SIGTERM, self._received), (signal.SIGINT, self._received), (signal.SIGHUP, self._hangup)):
            try:
                loop.add_signal_handler(sig, handler)
                self._installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
                pass

    def _hangup(self) -> None:
        if self._reload is None:
            log.warning("SIGHUP ignored: this application cannot reload its configuration")
        elif self.stop.is_set():
            log.warning("SIGHUP ignored: shutting down")
        else:
            previous = self._reloading
            self._reloading = self.loop.create_task(self._reload_after(previous), name="aigw-reload")

    async def _reload_after(self, previous: asyncio.Task | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            await self._reload()  # type: ignore[misc]
        except Exception:
            log.exception("configuration reload failed; the running configuration stays")

    def _received(self) -> None:
        now = self.loop.time()
        if self.stop.is_set():
            if now - self._stopped_at < SAME_SIGNAL_SECONDS:
                return  # one request delivered twice: to the process group and forwarded by a supervisor
            log.warning("second signal: shutting down without waiting for requests in flight")
            self.hurry.set()
        self._stopped_at = now
        self.stop.set()

    def remove(self) -> None:
        for sig in self._installed:
            self.loop.remove_signal_handler(sig)
