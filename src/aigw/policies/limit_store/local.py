"""Buckets in this process: a dict of key → TAT. One event loop touches it, so no locks; each
check-and-charge runs without an await in the middle, which makes it atomic."""

from __future__ import annotations

import time
from collections.abc import Callable

from aigw.policies.limit_store.buckets import NO_ALTERNATIVE, PERIOD, Bucket, Plan, Refusal

# A refusal in the making: (wait seconds, bucket, its TAT).
_Shortfall = tuple[float, Bucket, float]


class LocalBuckets:
    """The default store: exact for one gateway instance, a few µs a request."""

    key_prefix = ""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._next_sweep = clock() + PERIOD

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def acquire(self, plan: Plan, tokens: int) -> int | Refusal:
        return self.take(plan, tokens)

    def take(self, plan: Plan, tokens: int) -> int | Refusal:
        """`acquire` without the coroutine."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        tats = self._tats
        shortfall = _shortfall(tats, plan.required, tokens, now)
        chosen = NO_ALTERNATIVE
        if plan.alternatives:
            soonest: _Shortfall | None = None
            for index, group in enumerate(plan.alternatives):
                short = _shortfall(tats, group, tokens, now)
                if short is None:
                    chosen = index
                    break
                if soonest is None or short[0] < soonest[0]:
                    soonest = short
            else:  # every alternative is short: the one that frees first decides, unless required waits longer
                if shortfall is None or soonest[0] > shortfall[0]:  # type: ignore[index]
                    shortfall = soonest
        if shortfall is not None:
            wait, bucket, tat = shortfall
            return Refusal(bucket, wait, tat - now)
        _charge(tats, plan.required, tokens, now)
        if chosen != NO_ALTERNATIVE:
            _charge(tats, plan.alternatives[chosen], tokens, now)
        return chosen

    def settle(self, buckets: tuple[Bucket, ...], tokens: int) -> None:
        if not tokens:
            return
        now = self._clock()
        tats = self._tats
        for bucket in buckets:
            delta = bucket.unit * tokens
            tat = tats.get(bucket.key)
            if delta > 0:  # debt may take TAT past now + PERIOD: later requests wait it out
                tats[bucket.key] = (tat if tat is not None and tat > now else now) + delta
            elif tat is not None:  # a refund below `now` just leaves the bucket full
                tats[bucket.key] = tat + delta

    def tat(self, key: str) -> float | None:
        """The stored TAT of a bucket (tests, diagnostics)."""
        return self._tats.get(key)

    def __len__(self) -> int:
        return len(self._tats)

    def _sweep(self, now: float) -> None:
        """Forget full buckets (TAT in the past), so idle principals cost no memory."""
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._next_sweep = now + PERIOD


def _shortfall(tats: dict[str, float], buckets: tuple[Bucket, ...], tokens: int, now: float) -> _Shortfall | None:
    """The longest wait among `buckets` for this request, or None when all have room."""
    worst: _Shortfall | None = None
    for bucket in buckets:
        tat = tats.get(bucket.key, now)
        if tat < now:
            tat = now
        cost = bucket.unit * tokens if bucket.per_token else bucket.unit
        # A cost beyond the period fits a full bucket and leaves it in debt: otherwise a request
        # estimated above a whole TPM limit could never be admitted.
        wait = tat + (cost if cost < PERIOD else PERIOD) - PERIOD - now
        if wait > bucket.tolerance and (worst is None or wait > worst[0]):
            worst = (wait, bucket, tat)
    return worst


def _charge(tats: dict[str, float], buckets: tuple[Bucket, ...], tokens: int, now: float) -> None:
    for bucket in buckets:
        tat = tats.get(bucket.key, now)
        tats[bucket.key] = (tat if tat > now else now) + (bucket.unit * tokens if bucket.per_token else bucket.unit)
