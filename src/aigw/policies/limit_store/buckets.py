"""The types every bucket store shares: buckets, plans, refusals, and the GCRA wait."""

from __future__ import annotations

from typing import Any, Protocol

PERIOD = 60.0  # seconds: renewal_period "minute" is the only one
# Admission compares sums of floats; this much slack absorbs their rounding. Half a unit at most, so
# it can never admit a unit more; 0.1 ms at most, so it never admits noticeably early.
MAX_TOLERANCE = 1e-4

NO_ALTERNATIVE = -1  # acquire's answer when admitted on a plan without alternatives
NOT_COUNTED = -2  # acquire's answer when the store was unavailable and failed open


class Bucket:
    """One counter a request draws from: a metric (requests or tokens) of one limit for one scope.
    Immutable by convention: built once per configuration (and principal) and shared."""

    __slots__ = ("key", "limit", "per_token", "label", "unit", "tolerance")

    def __init__(self, key: str, limit: int, per_token: bool, label: str) -> None:
        self.key = key  # unique per (endpoint, metric, scope), the store's prefix included
        self.limit = limit  # units per period
        self.per_token = per_token  # a TPM bucket: a request costs its tokens, not one unit
        self.label = label  # "60 requests per minute for user 'alice'"
        self.unit = PERIOD / limit  # seconds of TAT one unit spends
        self.tolerance = min(self.unit / 2, MAX_TOLERANCE)

    def __repr__(self) -> str:
        return f"Bucket({self.key!r}, {self.limit})"


class Plan:
    """The buckets one request draws from: all of `required`, and all of the first of
    `alternatives` that has room (a user's limited groups, in configuration order). A request is
    refused when a required bucket is short, or when every alternative is. Built once per
    (endpoint, principal) and cached, so everything a store needs per request is precomputed."""

    __slots__ = ("required", "alternatives", "buckets", "keys", "shape", "charged", "store_cache")

    def __init__(self, required: tuple[Bucket, ...], alternatives: tuple[tuple[Bucket, ...], ...] = ()) -> None:
        self.required = required
        self.alternatives = alternatives
        # Every bucket in the order stores walk them: required first, then each alternative's.
        self.buckets: tuple[Bucket, ...] = required + tuple(b for group in alternatives for b in group)
        self.keys: tuple[str, ...] = tuple(b.key for b in self.buckets)
        # How the Redis script reads KEYS: how many required buckets, how many alternatives, sizes.
        self.shape: tuple[int, ...] = (len(required), len(alternatives), *(len(g) for g in alternatives))
        # The per-token buckets a request charged, by the alternative it drew from (-1: none).
        self.charged: dict[int, tuple[Bucket, ...]] = {
            NO_ALTERNATIVE: tuple(b for b in required if b.per_token),
            **{i: tuple(b for b in required + group if b.per_token) for i, group in enumerate(alternatives)},
        }
        self.store_cache: Any = None  # the store's own per-plan data (RedisBuckets: the encoded command)


class Refusal:
    """Why a request was refused: the bucket that decided it (the longest wait among the required
    buckets, or the soonest-free alternative, whichever is longer), and two durations in seconds."""

    __slots__ = ("bucket", "retry_after", "backlog")

    def __init__(self, bucket: Bucket, retry_after: float, backlog: float) -> None:
        self.bucket = bucket
        self.retry_after = retry_after  # until this request would be admitted
        self.backlog = backlog  # until the bucket is full again (TAT - now)

    def __repr__(self) -> str:
        return f"Refusal({self.bucket!r}, retry_after={self.retry_after:.3f}, backlog={self.backlog:.3f})"


class BucketStore(Protocol):
    key_prefix: str  # the Limiter puts it in front of every bucket key

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def acquire(self, plan: Plan, tokens: int) -> int | Refusal:
        """Check and charge every bucket of `plan` atomically: the index of the alternative drawn
        from (NO_ALTERNATIVE when the plan has none; NOT_COUNTED when the store is unavailable and
        fails open), or the Refusal (nothing charged)."""
        ...

    def settle(self, buckets: tuple[Bucket, ...], tokens: int) -> None:
        """Charge `tokens` more (negative: refund) to these per-token buckets. Never blocks."""
        ...

