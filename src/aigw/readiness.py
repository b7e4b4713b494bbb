"""`GET /ready`: whether this instance should get traffic, for load balancers and Kubernetes.

`/health` only says the process answers. `/ready` also asks the store (`SELECT 1`) and, when rate
limits use it and `rate_limits_fail_open` is false, Redis (`PING`): without them this instance
would refuse requests, so a load balancer should send them elsewhere. A Redis that fails open only
degrades limits, so it is reported without making the instance unready.

Probes come often and from many balancers: one check runs at a time, its answer is reused for
`CACHE_SECONDS`, and each probe of a back end is bounded by `CHECK_TIMEOUT`, so a hung database
costs one worker thread, not one per probe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from sqlalchemy.engine import Engine

from aigw.store.errors import driver_message

log = logging.getLogger("aigw.readiness")
CACHE_SECONDS = 1.0
CHECK_TIMEOUT = 2.0
UNREACHABLE = "unreachable"  # the answer is public (no token needed): the cause goes to the log only


class Readiness:
    def __init__(self, engine: Engine, redis_ping: Callable[[], Awaitable[None]] | None, redis_required: bool) -> None:
        self._engine = engine
        self._redis_ping = redis_ping  # None: Redis is not used by this instance
        self._redis_required = redis_required
        self._answer: tuple[int, bytes] | None = None
        self._answered_at = 0.0
        self._checking: asyncio.Task[tuple[int, bytes]] | None = None
        self._failing: dict[str, str] = {}  # back end → cause last logged

    async def answer(self) -> tuple[int, bytes]:
        """(status, JSON body), fresh to within CACHE_SECONDS."""
        if self._answer is not None and time.monotonic() - self._answered_at < CACHE_SECONDS:
            return self._answer
        if self._checking is None:
            self._checking = asyncio.create_task(self._check())
        try:
            return await asyncio.shield(self._checking)
        finally:
            if self._checking is not None and self._checking.done():
                self._checking = None

    async def _check(self) -> tuple[int, bytes]:
        store, redis = await asyncio.gather(self._check_store(), self._check_redis())
        ready = store == "ok" and (redis in ("ok", "not used") or not self._redis_required)
        body = {"status": "ready" if ready else "not_ready", "checks": {"store": store, "redis": redis}}
        self._answer = (200 if ready else 503, orjson.dumps(body))
        self._answered_at = time.monotonic()
        return self._answer

    async def _check_store(self) -> str:
        def select_one() -> None:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")

        return await self._probe("store", lambda: asyncio.to_thread(select_one))

    async def _check_redis(self) -> str:
        if self._redis_ping is None:
            return "not used"
        return await self._probe("redis", self._redis_ping)

    async def _probe(self, name: str, probe: Callable[[], Awaitable[None]]) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await probe()
        except Exception as exc:  # noqa: BLE001 - any failure (a timeout included) means unreachable
            cause = f"no answer within {CHECK_TIMEOUT:g} s" if isinstance(exc, TimeoutError) else _first_line(exc)
            if self._failing.get(name) != cause:
                log.warning("readiness: %s unreachable: %s", name, cause)
            self._failing[name] = cause
            return UNREACHABLE
        if self._failing.pop(name, None) is not None:
            log.warning("readiness: %s reachable again", name)
        return "ok"


def _first_line(exc: BaseException) -> str:
    name = type(getattr(exc, "orig", None) or exc).__name__
    text = driver_message(exc)[:300]
    return f"{name}: {text}" if text else name
