"""Rate-limit buckets: what a request draws from, and the two stores that keep them.

A bucket is one GCRA cell (see `aigw.policies.limits` for why GCRA): a single float, the bucket's
*theoretical arrival time* (TAT). A bucket holding `limit` units per `PERIOD` seconds spends
`unit = PERIOD / limit` seconds of TAT per unit (one request, or one token); a request is admitted
while `max(TAT, now) + cost - now <= PERIOD`, and then TAT moves on by its cost. So a full bucket
admits exactly `limit` units at once and refills continuously at `limit` per period; TAT past
`now + PERIOD` is debt (settled tokens beyond the estimate) that later requests wait out.

Stores (`LocalBuckets`: a dict in this process; `RedisBuckets`: shared by every gateway instance)
run the same check-and-consume over a request's `Plan` atomically, and apply token corrections with
`settle`, which never blocks.
"""

from aigw.policies.limit_store.buckets import (
    NO_ALTERNATIVE,
    NOT_COUNTED,
    PERIOD,
    Bucket,
    BucketStore,
    Plan,
    Refusal,
)
from aigw.policies.limit_store.local import LocalBuckets
from aigw.policies.limit_store.redis import RedisBuckets

__all__ = [
    "NO_ALTERNATIVE",
    "NOT_COUNTED",
    "PERIOD",
    "Bucket",
    "BucketStore",
    "LocalBuckets",
    "Plan",
    "RedisBuckets",
    "Refusal",
]
