"""Rate limits: the levels and their override rules, QPM and TPM, settlement with debt, refill, the
429, configuration errors, and the Redis store against a real Redis (two limiters sharing it)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aigw.config import ConfigError, Settings, load_settings
from aigw.errors import ErrorKind, GatewayError
from aigw.policies.limit_store import NOT_COUNTED, Bucket, LocalBuckets, Plan, RedisBuckets
from aigw.policies.limit_store.resp import RedisUnavailable, RespConnection, parse_redis_url
from aigw.policies.limits import Admission, Limiter

REDIS_URL = os.environ.get("AIGW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NOBODY = frozenset[str]()


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings_with(tmp_path: Path, limits: list[dict[str, Any]], **top: Any) -> Settings:
    document = {
        "endpoints": [{"name": "chat", "destinations": [{"provider": "demo", "model": "demo"}], "rate_limits": limits}],
        **top,
    }
    path = tmp_path / "aigw.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_settings(path, environ={})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_limiter(tmp_path: Path, clock: Clock):
    def make(*limits: dict[str, Any]) -> Limiter:
        return Limiter(settings_with(tmp_path, list(limits)), store=LocalBuckets(clock=clock))

    return make


async def admit(limiter: Limiter, name: str = "alice", kind: str = "user", groups: frozenset[str] = NOBODY, tokens: int = 1):
    return await limiter.admit("chat", name, kind, groups, tokens)


async def count_admitted(limiter: Limiter, attempts: int, **who: Any) -> int:
    admitted = 0
    for _ in range(attempts):
        try:
            await admit(limiter, **who)
        except GatewayError as exc:
            assert exc.kind is ErrorKind.RATE_LIMIT
        else:
            admitted += 1
    return admitted


async def refusal(limiter: Limiter, **who: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await admit(limiter, **who)
    return caught.value


# -- levels and override rules ------------------------------------------------------------------------


async def test_endpoint_limit_is_shared_by_everyone(make_limiter):
    limiter = make_limiter({"key": "endpoint", "calls": 3})
    await admit(limiter, "alice")
    await admit(limiter, "bob")
    await admit(limiter, "bot", "service_principal")
    error = await refusal(limiter, name="carol")
    assert error.status == 429
    assert error.message == "Rate limit exceeded for endpoint 'chat': 3 requests per minute for all callers together."


async def test_user_default_is_a_bucket_per_principal(make_limiter):
    limiter = make_limiter({"key": "user", "calls": 2})
    assert await count_admitted(limiter, 5, name="alice") == 2
    assert await count_admitted(limiter, 5, name="bob") == 2
    assert await count_admitted(limiter, 5, name="bot", kind="service_principal") == 2
    error = await refusal(limiter, name="alice")
    assert error.message == "Rate limit exceeded for endpoint 'chat': 2 requests per minute for user 'alice'."


async def test_custom_user_and_service_principal_limits(make_limiter):
    limiter = make_limiter(
        {"key": "user", "calls": 1},
        {"key": "user", "principal": "alice", "calls": 4},
        {"key": "service_principal", "principal": "bot", "calls": 3},
    )
    assert await count_admitted(limiter, 10, name="alice") == 4
    assert await count_admitted(limiter, 10, name="bot", kind="service_principal") == 3
    assert await count_admitted(limiter, 10, name="bot") == 1  # a user called "bot" is someone else
    assert await count_admitted(limiter, 10, name="carol") == 1
    error = await refusal(limiter, name="bot", kind="service_principal")
    assert error.message.endswith("3 requests per minute for service principal 'bot'.")


async def test_a_group_shares_one_bucket_and_overrides_the_user_default(make_limiter):
    limiter = make_limiter({"key": "user", "calls": 1}, {"key": "user_group", "principal": "eng", "calls": 3})
    eng = frozenset({"eng", "everyone"})
    assert await count_admitted(limiter, 2, name="alice", groups=eng) == 2
    assert await count_admitted(limiter, 2, name="bob", groups=eng) == 1  # the group's third
    error = await refusal(limiter, name="carol", groups=eng)
    assert error.message == "Rate limit exceeded for endpoint 'chat': 3 requests per minute for group 'eng'."
    assert await count_admitted(limiter, 3, name="dave", groups=frozenset({"sales"})) == 1  # user default


async def test_own_limit_overrides_the_groups(make_limiter):
    limiter = make_limiter(
        {"key": "user_group", "principal": "eng", "calls": 1},
        {"key": "user", "principal": "alice", "calls": 3},
    )
    assert await count_admitted(limiter, 5, name="alice", groups=frozenset({"eng"})) == 3
    assert await count_admitted(limiter, 5, name="bob", groups=frozenset({"eng"})) == 1


async def test_several_groups_refuse_only_when_all_are_exhausted(make_limiter):
    limiter = make_limiter(
        {"key": "user_group", "principal": "eng", "calls": 2},
        {"key": "user_group", "principal": "ops", "calls": 1},
    )
    both = frozenset({"ops", "eng"})
    assert await count_admitted(limiter, 3, name="alice", groups=both) == 3
    error = await refusal(limiter, name="alice", groups=both)
    assert "for group 'eng'" in error.message or "for group 'ops'" in error.message
    assert "every limited group of user 'alice' is at its limit" in error.message
    assert error.headers["X-RateLimit-Limit"] in ("1", "2")


async def test_a_member_of_several_groups_draws_from_the_first_with_room(make_limiter):
    limiter = make_limiter(
        {"key": "user_group", "principal": "eng", "calls": 2},
        {"key": "user_group", "principal": "ops", "calls": 2},
    )
    await admit(limiter, "alice", groups=frozenset({"eng", "ops"}))  # from eng, the first configured
    assert await count_admitted(limiter, 5, name="bob", groups=frozenset({"eng"})) == 1
    assert await count_admitted(limiter, 5, name="carol", groups=frozenset({"ops"})) == 2
    assert await count_admitted(limiter, 5, name="alice", groups=frozenset({"eng", "ops"})) == 0


async def test_the_endpoint_limit_applies_on_top_of_the_principal_level(make_limiter):
    limiter = make_limiter({"key": "endpoint", "calls": 3}, {"key": "user", "calls": 2})
    assert await count_admitted(limiter, 5, name="alice") == 2
    assert await count_admitted(limiter, 5, name="bob") == 1
    error = await refusal(limiter, name="carol")
    assert "for all callers together" in error.message


async def test_a_refused_request_charges_nothing(make_limiter):
    limiter = make_limiter({"key": "endpoint", "calls": 5}, {"key": "user", "calls": 1})
    assert await count_admitted(limiter, 10, name="alice") == 1  # nine refusals by the user limit
    assert await count_admitted(limiter, 10, name="bob") == 1
    assert await count_admitted(limiter, 10, name="carol") == 1  # the endpoint still had room


async def test_no_limits_means_no_admission_object(make_limiter):
    limiter = make_limiter({"key": "user", "principal": "alice", "calls": 1})
    assert await admit(limiter, "bob") is None  # no limit applies to bob
    assert await limiter.admit("other-endpoint", "alice", "user", NOBODY, 10) is None
    limiter.settle(None, 100)
    calls_only = await admit(limiter, "alice")
    assert calls_only is None  # nothing to settle without a TPM bucket


# -- QPM and TPM -------------------------------------------------------------------------------------


async def test_calls_and_tokens_the_stricter_wins(make_limiter):
    limiter = make_limiter({"key": "user", "calls": 10, "tokens": 100})
    assert await count_admitted(limiter, 5, name="alice", tokens=40) == 2  # tokens bind: 80 of 100
    error = await refusal(limiter, name="alice", tokens=40)
    assert "100 tokens per minute for user 'alice'" in error.message
    assert error.headers["X-RateLimit-Limit"] == "100"
    assert error.headers["X-RateLimit-Remaining"] == "20"
    assert await count_admitted(limiter, 20, name="bob", tokens=1) == 10  # calls bind
    error = await refusal(limiter, name="bob", tokens=1)
    assert "10 requests per minute" in error.message


async def test_settle_charges_real_tokens_and_debt_delays_admissions(make_limiter, clock):
    limiter = make_limiter({"key": "user", "tokens": 100})
    admission = await admit(limiter, tokens=10)
    assert isinstance(admission, Admission)
    limiter.settle(admission, 250)  # 240 more than estimated: 150 tokens of debt
    error = await refusal(limiter, tokens=10)
    # TAT is now + 250 tokens (150 s); 10 more fit once it is back to 90 tokens: in 96 s.
    assert error.headers["Retry-After"] == "96"
    assert error.headers["X-RateLimit-Remaining"] == "0"
    assert error.headers["X-RateLimit-Reset"] == "150"
    clock.advance(95)
    await refusal(limiter, tokens=10)
    clock.advance(1)
    await admit(limiter, tokens=10)
    limiter.settle(admission, 10_000)  # settled once only
    await refusal(limiter, tokens=1)
    clock.advance(0.6)
    await admit(limiter, tokens=1)


async def test_settle_refunds_an_overestimate(make_limiter):
    limiter = make_limiter({"key": "user", "tokens": 100})
    first = await admit(limiter, tokens=80)
    await refusal(limiter, tokens=80)
    limiter.settle(first, 20)
    second = await admit(limiter, tokens=80)
    limiter.settle(second, 80)  # exact: nothing to do
    await refusal(limiter, tokens=1)


async def test_a_request_estimated_above_the_limit_is_admitted_on_a_full_bucket(make_limiter, clock):
    limiter = make_limiter({"key": "user", "tokens": 100})
    await admit(limiter, tokens=500)  # would never fit otherwise; leaves 400 tokens of debt
    error = await refusal(limiter, tokens=1)
    assert error.headers["Retry-After"] == "241"  # 500 tokens = 300 s of TAT; 1 token fits at 240.6 s
    clock.advance(241)
    await admit(limiter, tokens=1)


# -- refill and exactness ------------------------------------------------------------------------------


async def test_a_burst_admits_exactly_n_and_capacity_comes_back_over_the_minute(make_limiter, clock):
    limiter = make_limiter({"key": "endpoint", "calls": 60})
    assert await count_admitted(limiter, 75) == 60
    clock.advance(1)  # one request's worth
    assert await count_admitted(limiter, 5) == 1
    clock.advance(30)
    assert await count_admitted(limiter, 75) == 30
    clock.advance(120)  # more than a minute: full, never more than full
    assert await count_admitted(limiter, 75) == 60


@pytest.mark.parametrize("n", [1, 7, 60, 1000, 10_000])
async def test_exactly_n_for_awkward_limits(make_limiter, n):
    limiter = make_limiter({"key": "endpoint", "calls": n})
    assert await count_admitted(limiter, n + 3) == n


async def test_the_429_headers(make_limiter, clock):
    limiter = make_limiter({"key": "user", "calls": 60})
    await count_admitted(limiter, 60)
    clock.advance(0.25)
    error = await refusal(limiter)
    assert error.kind is ErrorKind.RATE_LIMIT and error.status == 429
    assert error.headers == {
        "Retry-After": "1",  # 0.75 s, rounded up
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "60",  # 59.75 s until full
    }
    clock.advance(10)  # ten requests' worth, back
    assert await count_admitted(limiter, 12) == 10
    clock.advance(0.5)
    assert (await refusal(limiter)).headers["Retry-After"] == "1"  # 0.25 s


async def test_idle_buckets_are_forgotten(tmp_path, clock):
    store = LocalBuckets(clock=clock)
    limiter = Limiter(settings_with(tmp_path, [{"key": "user", "calls": 10, "tokens": 1000}]), store=store)
    for i in range(50):
        await admit(limiter, f"user{i}", tokens=10)
    assert len(store) == 100
    clock.advance(61)
    await admit(limiter, "alice")
    assert len(store) == 2


# -- configuration -------------------------------------------------------------------------------------


def _config_error(tmp_path: Path, limits: Any, **top: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, limits, **top)
    return str(caught.value)


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ([{"key": "user_group", "calls": 5}], "endpoints[0].rate_limits[0].principal: required with key 'user_group'"),
        ([{"key": "service_principal", "calls": 5}], "rate_limits[0].principal: required with key 'service_principal'"),
        ([{"key": "endpoint", "principal": "x", "calls": 5}], "rate_limits[0].principal: not allowed with key 'endpoint'"),
        ([{"key": "user", "principal": " ", "calls": 5}], "rate_limits[0].principal: must not be empty"),
        ([{"key": "user"}], "endpoints[0].rate_limits[0]: set calls, tokens or both"),
        ([{"key": "user", "calls": 0}], "rate_limits[0].calls: must be positive"),
        ([{"key": "user", "tokens": -5}], "rate_limits[0].tokens: must be positive"),
        (
            [{"key": "user", "calls": 5}, {"key": "user", "principal": "a", "calls": 5}, {"key": "user", "tokens": 5}],
            "endpoints[0].rate_limits[2]: duplicate limit for key 'user'",
        ),
        (
            [{"key": "user_group", "principal": "eng", "calls": 5}, {"key": "user_group", "principal": "eng", "tokens": 9}],
            "rate_limits[1]: duplicate limit for key 'user_group' principal 'eng'",
        ),
        ([{"key": "group", "calls": 5}], "endpoints[0].rate_limits[0].key"),
        ([{"key": "user", "calls": 5, "renewal_period": "hour"}], "endpoints[0].rate_limits[0].renewal_period"),
        ([{"key": "user", "calls": "many"}], "endpoints[0].rate_limits[0].calls"),
        ([{"key": "user", "calls": 5, "per": "minute"}], "unknown field `per`"),
    ],
)
def test_config_errors_name_the_key(tmp_path, limits, expected):
    assert expected in _config_error(tmp_path, limits)


def test_at_most_twenty_limits_per_endpoint(tmp_path):
    limits = [{"key": "user_group", "principal": f"g{i}", "calls": 5} for i in range(21)]
    assert "endpoints[0].rate_limits: at most 20 limits per endpoint, got 21" in _config_error(tmp_path, limits)
    settings = settings_with(tmp_path, limits[:20])
    assert len(settings.endpoints[0].rate_limits) == 20


def test_the_databricks_shaped_config_and_the_redis_settings(tmp_path):
    settings = settings_with(
        tmp_path,
        [{"key": "endpoint", "calls": 100, "renewal_period": "minute"}, {"key": "user", "tokens": 5000}],
        redis_url="redis://cache:6379/1",
    )
    limit = settings.endpoints[0].rate_limits[0]
    assert (limit.key, limit.principal, limit.calls, limit.tokens, limit.renewal_period) == ("endpoint", None, 100, None, "minute")
    assert settings.redis_url == "redis://cache:6379/1" and settings.rate_limits_fail_open is True
    path = tmp_path / "aigw.yaml"
    overridden = load_settings(path, environ={"AIGW_REDIS_URL": "redis://other:6380/0"})
    assert overridden.redis_url == "redis://other:6380/0"
    assert load_settings(None, environ={}).redis_url is None


def test_a_bad_redis_url_is_a_config_error(tmp_path):
    message = _config_error(tmp_path, [], redis_url="http://cache:6379")
    assert "redis_url: must start with redis://, rediss:// or unix://" in message


def test_redis_urls():
    address = parse_redis_url("rediss://user:p%40ss@cache.internal:6380/2")
    assert (address.host, address.port, address.db, address.username, address.password, address.tls) == (
        "cache.internal", 6380, 2, "user", "p@ss", True,
    )
    assert "p@ss" not in str(address)
    assert parse_redis_url("redis://127.0.0.1").db == 0
    assert parse_redis_url("unix:///run/redis.sock?db=3").path == "/run/redis.sock"
    with pytest.raises(ValueError):
        parse_redis_url("http://127.0.0.1:6379")


# -- Redis ---------------------------------------------------------------------------------------------


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards. Redis unreachable: skip,
    except under CI=true: fail."""
    try:
        connection = await RespConnection.open(parse_redis_url(REDIS_URL), timeout=2, connect_timeout=2)
    except RedisUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required when CI=true but unreachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc}")
    prefix = f"aigw-test:{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        cursor = b"0"
        while True:
            cursor, keys = await connection.execute("SCAN", cursor, "MATCH", f"{prefix}*", "COUNT", 1000)
            if keys:
                await connection.execute("DEL", *keys)
            if cursor == b"0":
                break
        connection.close()


@pytest.fixture
async def redis_limiters(tmp_path, redis_prefix) -> AsyncIterator[Any]:
    """make(limits, clock=None) → a started Limiter on Redis under this test's prefix."""
    made: list[Limiter] = []

    async def make(*limits: dict[str, Any], clock: Clock | None = None, **store_options: Any) -> Limiter:
        settings = settings_with(tmp_path, list(limits), redis_url=REDIS_URL)
        store = RedisBuckets(REDIS_URL, prefix=redis_prefix, clock=clock, **store_options)
        limiter = Limiter(settings, store=store)
        await limiter.start()
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


async def redis_get(key: str) -> Any:
    connection = await RespConnection.open(parse_redis_url(REDIS_URL), timeout=2, connect_timeout=2)
    try:
        return await connection.execute("GET", key), await connection.execute("PTTL", key)
    finally:
        connection.close()


async def test_redis_levels_groups_and_tokens(redis_limiters, clock):
    limiter = await redis_limiters(
        {"key": "endpoint", "calls": 100},
        {"key": "user", "calls": 2},
        {"key": "user", "principal": "alice", "calls": 3, "tokens": 1000},
        {"key": "user_group", "principal": "eng", "calls": 2},
        {"key": "user_group", "principal": "ops", "calls": 1},
        clock=clock,
    )
    assert await count_admitted(limiter, 5, name="alice", groups=frozenset({"eng"})) == 3
    assert await count_admitted(limiter, 5, name="bob") == 2
    both = frozenset({"eng", "ops"})
    assert await count_admitted(limiter, 2, name="carol", groups=both) == 2  # eng first
    assert await count_admitted(limiter, 5, name="dave", groups=frozenset({"eng"})) == 0
    assert await count_admitted(limiter, 5, name="erin", groups=both) == 1  # then ops
    error = await refusal(limiter, name="erin", groups=both)
    assert "every limited group of user 'erin' is at its limit" in error.message
    assert error.headers["Retry-After"] == "30"  # eng frees a request in 30 s, ops in 60 s
    assert error.headers["X-RateLimit-Limit"] == "2"
    clock.advance(30)
    assert await count_admitted(limiter, 5, name="erin", groups=both) == 1


async def test_redis_tokens_settle_with_debt(redis_limiters, clock, redis_prefix):
    limiter = await redis_limiters({"key": "user", "tokens": 100}, clock=clock)
    admission = await admit(limiter, tokens=10)
    limiter.settle(admission, 250)
    await limiter.store.drain()  # settlement is fire-and-forget
    error = await refusal(limiter, tokens=10)
    assert error.headers["Retry-After"] == "96"
    assert error.headers["X-RateLimit-Reset"] == "150"
    clock.advance(96)
    second = await admit(limiter, tokens=10)  # exactly fits: TAT now + 54 s + 6 s
    limiter.settle(second, 5)  # a refund of 5 tokens (3 s)
    await limiter.store.drain()
    tat, pttl = await redis_get(f"{redis_prefix}chat|t|default:user:alice")
    assert float(tat) == pytest.approx(clock.now + 57)
    assert 0 < pttl <= 60_000


async def test_redis_settlements_coalesce(redis_limiters, clock, redis_prefix, monkeypatch):
    limiter = await redis_limiters({"key": "endpoint", "tokens": 1_000_000}, clock=clock)
    admissions = [await admit(limiter, tokens=100) for _ in range(50)]
    connection = limiter.store._connection
    sent: list[tuple[Any, ...]] = []
    execute = connection.execute
    monkeypatch.setattr(connection, "execute", lambda *args: sent.append(args) or execute(*args))
    for admission in admissions:
        limiter.settle(admission, 110)
    await limiter.store.drain()
    assert len(sent) == 1  # fifty settlements, one script call
    tat, pttl = await redis_get(f"{redis_prefix}chat|t|endpoint")
    assert float(tat) == pytest.approx(clock.now + 50 * 110 * 60 / 1_000_000)


async def test_redis_keys_expire_when_the_bucket_would_be_full(redis_limiters, redis_prefix):
    limiter = await redis_limiters({"key": "user", "calls": 60})  # Redis's own clock
    await admit(limiter)
    await admit(limiter)
    _, pttl = await redis_get(f"{redis_prefix}chat|q|default:user:alice")
    assert 1000 < pttl <= 2001  # two requests' worth: 2 s


async def test_two_limiters_sharing_redis_admit_exactly_n(redis_limiters):
    limits = ({"key": "endpoint", "calls": 20}, {"key": "user", "calls": 1000})
    first, second = await redis_limiters(*limits), await redis_limiters(*limits)

    async def attempt(limiter: Limiter, i: int) -> bool:
        try:
            await limiter.admit("chat", f"user{i % 7}", "user", NOBODY, 5)
        except GatewayError as exc:
            assert exc.status == 429 and "20 requests per minute for all callers together" in exc.message
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(first if i % 2 else second, i) for i in range(35)))
    assert sum(outcomes) == 20
    assert first.store.available and second.store.available


async def test_redis_script_flush_is_survived(redis_limiters):
    limiter = await redis_limiters({"key": "user", "calls": 5})
    await admit(limiter)
    connection = await RespConnection.open(parse_redis_url(REDIS_URL), timeout=2, connect_timeout=2)
    await connection.execute("SCRIPT", "FLUSH")  # what a Redis restart does
    connection.close()
    assert await count_admitted(limiter, 6) == 4
    assert limiter.store.available


async def test_a_connection_killed_while_idle_is_replaced(redis_limiters):
    limiter = await redis_limiters({"key": "user", "calls": 3})
    await admit(limiter)
    client_id = await limiter.store._connection.execute("CLIENT", "ID")
    connection = await RespConnection.open(parse_redis_url(REDIS_URL), timeout=2, connect_timeout=2)
    await connection.execute("CLIENT", "KILL", "ID", client_id)
    connection.close()
    await asyncio.sleep(0.05)
    assert await admit(limiter) is None  # not counted: failed open while reconnecting
    for _ in range(100):
        if limiter.store.available:
            break
        await asyncio.sleep(0.05)
    assert await count_admitted(limiter, 5) == 2  # the count survived in Redis


async def test_redis_unreachable_fails_open_and_logs_once(tmp_path, caplog):
    settings = settings_with(tmp_path, [{"key": "user", "calls": 1}], redis_url="redis://127.0.0.1:1/0")
    limiter = Limiter(settings)
    assert isinstance(limiter.store, RedisBuckets)
    with caplog.at_level(logging.WARNING, logger="aigw.policies.limit_store.redis"):
        await limiter.start()
        started = time.perf_counter()
        for _ in range(20):
            assert await admit(limiter) is None
        assert time.perf_counter() - started < 0.2  # no connection attempt per request
    await limiter.close()
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "admitted without rate limits" in warnings[0].getMessage()


async def test_redis_unreachable_fails_closed_when_configured(tmp_path):
    settings = settings_with(
        tmp_path, [{"key": "user", "calls": 1}], redis_url="redis://127.0.0.1:1/0", rate_limits_fail_open=False
    )
    limiter = Limiter(settings)
    await limiter.start()
    with pytest.raises(GatewayError) as caught:
        await admit(limiter)
    assert caught.value.status == 503 and caught.value.kind is ErrorKind.INTERNAL
    await limiter.close()


async def test_a_hung_redis_times_out_and_the_store_reconnects_when_it_is_back(tmp_path, redis_prefix):
    """A proxy in front of the real Redis: first it swallows everything, then it forwards."""
    address = parse_redis_url(REDIS_URL)
    forwarding = False

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not forwarding:
            await reader.read()  # never answer
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(address.host, address.port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        store_url = f"redis://127.0.0.1:{port}/{address.db}"
        limiter = Limiter(
            settings_with(tmp_path, [{"key": "user", "calls": 2}], redis_url=store_url),
            store=RedisBuckets(store_url, prefix=redis_prefix, timeout=0.2, connect_timeout=0.3),
        )
        await limiter.start()  # the connection hangs at SCRIPT LOAD: down, reconnecting
        assert not limiter.store.available
        started = time.perf_counter()
        assert await admit(limiter) is None  # fails open at once
        assert time.perf_counter() - started < 0.15  # less than the timeout
        forwarding = True
        for _ in range(100):
            if limiter.store.available:
                break
            await asyncio.sleep(0.05)
        assert limiter.store.available
        assert await count_admitted(limiter, 4) == 2
        await limiter.close()
    finally:
        server.close()


async def test_store_answers_not_counted_while_down():
    store = RedisBuckets("redis://127.0.0.1:1/0", connect_timeout=0.2)
    await store.start()
    assert await store.acquire(Plan((Bucket("k", 1, False, "x"),)), 1) == NOT_COUNTED
    store.settle((Bucket("k", 1, True, "x"),), 5)  # dropped, no error
    await store.close()
