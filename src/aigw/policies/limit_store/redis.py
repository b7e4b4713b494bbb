"""Buckets in Redis, shared by every gateway instance: one EVALSHA per request.

The admission script checks and charges every bucket a request touches (endpoint, principal or
groups; requests and tokens) atomically, in one round trip, on Redis's clock, so instances whose
clocks disagree still share one limit. Keys hold a TAT and expire when the bucket would be full
again, so idle principals leave nothing behind. Settlements are coalesced per key and sent as one
script call at a time, after the requests that produced them.

Redis unreachable (refused, broken, or no reply within `timeout`): `acquire` answers NOT_COUNTED at
once, without trying Redis per request, while a background task reconnects with backoff; the outage
and the recovery are logged once each. Whether NOT_COUNTED admits (fail open) is the Limiter's call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable

from aigw.policies.limit_store.buckets import NO_ALTERNATIVE, NOT_COUNTED, PERIOD, Bucket, Plan, Refusal
from aigw.policies.limit_store.resp import ReplyError, RedisUnavailable, RespConnection, parse_redis_url

logger = logging.getLogger(__name__)

# TAT is seconds since this instant, not since 1970: smaller numbers keep float sums exact to ~4 ns.
REDIS_EPOCH = 1_750_000_000

_NOW = f"""
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = (tonumber(t[1]) - {REDIS_EPOCH}) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
"""

# KEYS: every bucket, required first, then each alternative's.
# ARGV: now ('' = this server's clock), the request's tokens, required count, alternative count,
#       each alternative's size, then per bucket: unit (seconds of TAT), per token (1/0), tolerance.
#       Only the first two change per request: the rest is encoded once per plan.
# Returns {1, alternative drawn from (1-based; 0 = none)} or
#         {0, deciding bucket (1-based), wait µs, backlog µs}, charging nothing.
ADMIT_SCRIPT = (
    "if redis.replicate_commands then redis.replicate_commands() end"  # Redis < 5: TIME, then writes
    + _NOW
    + f"""
local period = {PERIOD!r}
local tokens = tonumber(ARGV[2])
local nreq, nalt = tonumber(ARGV[3]), tonumber(ARGV[4])
local base = 4 + nalt
local tats, costs = {{}}, {{}}
local function shortfall(first, last)
  local worst, worst_i
  for i = first, last do
    local tat = tonumber(redis.call('GET', KEYS[i])) or now
    if tat < now then tat = now end
    local cost = tonumber(ARGV[base + 3 * i - 2])
    if ARGV[base + 3 * i - 1] == '1' then cost = cost * tokens end
    tats[i], costs[i] = tat, cost
    local wait = tat + math.min(cost, period) - period - now
    if wait > tonumber(ARGV[base + 3 * i]) and (worst == nil or wait > worst) then
      worst, worst_i = wait, i
    end
  end
  return worst, worst_i
end
local function charge(first, last)
  for i = first, last do
    if costs[i] > 0 then
      local tat = tats[i] + costs[i]
      redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', math.max(1, math.ceil((tat - now) * 1000)))
    end
  end
end
local wait, decider = shortfall(1, nreq)
local chosen, first = 0, nreq + 1
if nalt > 0 then
  local soonest, soonest_i
  for a = 1, nalt do
    local size = tonumber(ARGV[4 + a])
    local w, i = shortfall(first, first + size - 1)
    if w == nil then
      chosen = a
      break
    end
    if soonest == nil or w < soonest then soonest, soonest_i = w, i end
    first = first + size
  end
  if chosen == 0 and (wait == nil or soonest > wait) then wait, decider = soonest, soonest_i end
end
if wait ~= nil then
  return {{0, decider, math.floor(wait * 1000000), math.floor((tats[decider] - now) * 1000000)}}
end
charge(1, nreq)
if chosen > 0 then charge(first, first + tonumber(ARGV[4 + chosen]) - 1) end
return {{1, chosen}}
"""
)

# KEYS: per-token buckets. ARGV: now ('' = this server's clock), then per key the seconds of TAT to
# add (negative: a refund). Debt may take TAT past now + period; a refund never below full.
SETTLE_SCRIPT = (
    "if redis.replicate_commands then redis.replicate_commands() end"
    + _NOW
    + """
for i, key in ipairs(KEYS) do
  local delta = tonumber(ARGV[i + 1])
  local tat = tonumber(redis.call('GET', key))
  if delta > 0 then
    if tat == nil or tat < now then tat = now end
    tat = tat + delta
  elseif tat ~= nil then
    tat = tat + delta
  end
  if tat ~= nil then
    if tat > now then
      redis.call('SET', key, string.format('%.17g', tat), 'PX', math.max(1, math.ceil((tat - now) * 1000)))
    else
      redis.call('DEL', key)
    end
  end
end
return #KEYS
"""
)

ADMIT_SHA = hashlib.sha1(ADMIT_SCRIPT.encode()).hexdigest()
SETTLE_SHA = hashlib.sha1(SETTLE_SCRIPT.encode()).hexdigest()


_EMPTY = b"$0\r\n\r\n"


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _encode_plan(plan: Plan) -> tuple[bytes, bytes]:
    """The admission command for `plan` in RESP, but for `now` and `tokens`: what goes before them
    and after. Packing floats costs ~7 µs a request in hiredis; this makes it two byte joins."""
    statics = [str(n) for n in plan.shape]
    for bucket in plan.buckets:
        statics += (repr(bucket.unit), "1" if bucket.per_token else "0", repr(bucket.tolerance))
    count = 3 + len(plan.keys) + 2 + len(statics)  # EVALSHA sha numkeys keys... now tokens statics...
    parts = ("EVALSHA", ADMIT_SHA, len(plan.keys), *plan.keys)
    head = b"*%d\r\n" % count + b"".join(_bulk(str(part).encode()) for part in parts)
    return head, b"".join(_bulk(part.encode()) for part in statics)


class RedisBuckets:
    """The shared store. `start()` connects (an unreachable Redis is logged, not raised: the
    gateway serves, and the store keeps trying); `close()` sends pending settlements first."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "aigw:rl:",
        fail_open: bool = True,
        timeout: float = 0.5,
        connect_timeout: float = 2.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.key_prefix = prefix
        self._address = parse_redis_url(url)
        self._fail_open = fail_open  # only for the log line: the Limiter applies it
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._clock = clock  # None: Redis's own clock (TIME), the one all instances share
        self._connection: RespConnection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._pending: dict[str, float] = {}  # key → seconds of TAT not yet settled
        self._settle_scheduled = False
        self._settling: asyncio.Future[object] | None = None
        self._closing = False

    @property
    def available(self) -> bool:
        return self._connection is not None and not self._connection.closed

    async def ping(self) -> None:
        """Raise RedisUnavailable unless Redis answers now (for readiness probes)."""
        connection = self._connection
        if connection is None or connection.closed:
            raise RedisUnavailable("not connected")
        await connection.execute("PING")

    async def start(self) -> None:
        try:
            self._connection = await self._connect()
        except (RedisUnavailable, ReplyError) as exc:
            self._went_down(exc)

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout * 2):
                await self.drain()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def drain(self) -> None:
        """Wait until every settlement so far has been sent and answered (or dropped)."""
        while self._settling is not None or self._pending:
            if self._settling is None:
                self._flush_settlements()
                if self._settling is None:
                    return  # unavailable: dropped
            await asyncio.wait([self._settling])
            await asyncio.sleep(0)  # let its done callback run

    # -- admission -----------------------------------------------------------------------------------

    async def acquire(self, plan: Plan, tokens: int) -> int | Refusal:
        connection = self._connection
        if connection is None or connection.closed:
            if connection is not None:  # it broke while idle (Redis restarted): reconnect
                self._went_down(RedisUnavailable("connection closed by Redis"))
            return NOT_COUNTED
        encoded = plan.store_cache
        if encoded is None:
            encoded = plan.store_cache = _encode_plan(plan)
        head, tail = encoded
        now = _EMPTY if self._clock is None else _bulk(repr(self._clock()).encode())
        command = b"".join((head, now, _bulk(b"%d" % tokens), tail))
        try:
            try:
                reply = await connection.execute_packed(command)
            except ReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                await self._load_scripts(connection)  # Redis restarted or SCRIPT FLUSH: once more
                reply = await connection.execute_packed(command)
        except (RedisUnavailable, ReplyError) as exc:
            self._went_down(exc)
            return NOT_COUNTED
        if reply[0] == 1:
            return reply[1] - 1 if reply[1] else NO_ALTERNATIVE
        return Refusal(plan.buckets[reply[1] - 1], reply[2] / 1e6, reply[3] / 1e6)

    # -- settlement ----------------------------------------------------------------------------------

    def settle(self, buckets: tuple[Bucket, ...], tokens: int) -> None:
        if not tokens or not self.available:
            return
        pending = self._pending
        for bucket in buckets:
            pending[bucket.key] = pending.get(bucket.key, 0.0) + bucket.unit * tokens
        if not self._settle_scheduled:
            self._settle_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_settlements)

    def _flush_settlements(self) -> None:
        """Send what is pending as one script call; one call in flight at a time, so settlements
        arriving meanwhile coalesce into the next."""
        self._settle_scheduled = False
        if self._settling is not None or not self._pending:
            return  # the call in flight sends the rest when it completes
        batch, self._pending = self._pending, {}
        connection = self._connection
        if connection is None or connection.closed:
            return  # unavailable: these corrections are lost, the buckets refill anyway
        now = "" if self._clock is None else self._clock()
        future = connection.execute("EVALSHA", SETTLE_SHA, len(batch), *batch, now, *batch.values())
        self._settling = future
        future.add_done_callback(lambda done: self._settled(done, batch))

    def _settled(self, future: asyncio.Future[object], batch: dict[str, float]) -> None:
        self._settling = None
        error = None if future.cancelled() else future.exception()
        if isinstance(error, ReplyError) and str(error).startswith("NOSCRIPT"):
            for key, seconds in batch.items():  # send again once the scripts are back
                self._pending[key] = self._pending.get(key, 0.0) + seconds
            if self._connection is not None:
                reload = asyncio.ensure_future(self._load_scripts(self._connection))
                reload.add_done_callback(lambda done: done.cancelled() or done.exception() or self._flush_settlements())
            return
        if error is not None:
            self._went_down(error)
        if self._pending and not self._settle_scheduled:
            self._settle_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_settlements)

    # -- connection ----------------------------------------------------------------------------------

    async def _connect(self) -> RespConnection:
        connection = await RespConnection.open(
            self._address, timeout=self._timeout, connect_timeout=self._connect_timeout
        )
        try:
            await self._load_scripts(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    @staticmethod
    async def _load_scripts(connection: RespConnection) -> None:
        await asyncio.gather(*(connection.execute("SCRIPT", "LOAD", script) for script in (ADMIT_SCRIPT, SETTLE_SCRIPT)))

    def _went_down(self, error: BaseException) -> None:
        """Log once, drop the connection, and reconnect in the background."""
        if self._reconnecting is not None or self._closing:
            return
        outcome = "requests are admitted without rate limits" if self._fail_open else "requests are refused (503)"
        logger.warning("rate limits: Redis at %s unavailable (%s); %s until it is back", self._address, error, outcome)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.25
        while True:
            await asyncio.sleep(delay)
            try:
                connection = await self._connect()
            except Exception:  # noqa: BLE001  (whatever it is, the outage was logged; keep trying)
                delay = min(delay * 2, 5.0)
                continue
            self._connection = connection
            self._reconnecting = None
            logger.warning("rate limits: Redis at %s is reachable again; limits enforced", self._address)
            return
