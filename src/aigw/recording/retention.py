"""The retention job: every gateway instance purges records past `retention` once a while.

The purge runs in a worker thread (it is database work) shortly after start and then every
`retention.interval_hours`; a failure is logged and tried again next time, never raised into serving.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy.engine import Engine

from aigw.config import RetentionConfig
from aigw.store.retention import PurgeCutoffs, purge

log = logging.getLogger("aigw.retention")
FIRST_RUN_DELAY = 60.0  # seconds after start: let the instance warm up first


def cutoffs(retention: RetentionConfig, now: datetime) -> PurgeCutoffs:
    def before(days: float | None) -> datetime | None:
        return None if days is None else now - timedelta(days=days)

    return PurgeCutoffs(
        usage=before(retention.usage_days),
        payloads=before(retention.payload_days),
        responses=before(retention.responses_days),
    )


class RetentionJob:
    def __init__(self, retention: RetentionConfig, engine: Engine, first_delay: float = FIRST_RUN_DELAY) -> None:
        self._retention = retention
        self._engine = engine
        self._first_delay = first_delay
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        r = self._retention
        return any(days is not None for days in (r.usage_days, r.payload_days, r.responses_days))

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="aigw-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        await asyncio.sleep(self._first_delay)
        while True:
            await self.run_once()
            await asyncio.sleep(self._retention.interval_hours * 3600)

    async def run_once(self) -> None:
        try:
            counts = await asyncio.to_thread(purge, self._engine, cutoffs(self._retention, datetime.now(timezone.utc)))
        except Exception as exc:  # noqa: BLE001 - the database may be down; the next run tries again
            log.warning("retention purge failed (next try in %s h): %s", self._retention.interval_hours, exc)
            return
        if counts.total:
            log.info(
                "retention purge: %d usage records, %d payload logs, %d stored responses deleted",
                counts.usage, counts.payloads, counts.responses,
            )
