"""`/ready`: 200 while the store (and a Redis that must not fail open) answer, 503 otherwise; the
answer names no address and is computed once per second however many probes come."""

from __future__ import annotations

import asyncio
import socket

import requests
import orjson
import pytest
from sqlalchemy import create_engine

from aigw.readiness import Readiness
from tests.gateway_process import cleanup, start_gateway


def test_ready_and_health_on_a_running_gateway() -> None:
    gateway = start_gateway()
    try:
        ready = requests.get(f"{gateway.url}/ready", timeout=10)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"store": "ok", "redis": "not used"}}
        assert requests.get(f"{gateway.url}/health", timeout=10).json() == {"status": "ok"}
    finally:
        cleanup(gateway)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_an_unreachable_store_makes_the_instance_unready(caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine(f"postgresql+psycopg://postgres:secret@127.0.0.1:{_closed_port()}/x?connect_timeout=1")
    status, body = await Readiness(engine, None, redis_required=False).answer()
    assert status == 503
    assert orjson.loads(body) == {"status": "not_ready", "checks": {"store": "unreachable", "redis": "not used"}}
    assert "secret" not in body.decode() and "127.0.0.1" not in body.decode()
    assert "readiness: store unreachable" in caplog.text


async def test_redis_counts_only_when_limits_must_not_fail_open() -> None:
    engine = create_engine("sqlite://")

    async def down() -> None:
        raise ConnectionError("refused")

    assert (await Readiness(engine, down, redis_required=True).answer())[0] == 503
    status, body = await Readiness(engine, down, redis_required=False).answer()
    assert status == 200 and orjson.loads(body)["checks"]["redis"] == "unreachable"


async def test_probes_share_one_check_per_second() -> None:
    engine = create_engine("sqlite://")
    calls = 0

    async def slow_ping() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)

    readiness = Readiness(engine, slow_ping, redis_required=True)
    answers = await asyncio.gather(*(readiness.answer() for _ in range(50)))
    assert {status for status, _ in answers} == {200} and calls == 1
    await readiness.answer()
    assert calls == 1  # cached


async def test_redis_ping_against_a_real_redis_and_a_closed_port() -> None:
    from aigw.policies.limit_store import RedisBuckets

    live = RedisBuckets("redis://127.0.0.1:6379/0")
    await live.start()
    try:
        await live.ping()  # raises unless Redis answers
    finally:
        await live.close()
    dead = RedisBuckets(f"redis://127.0.0.1:{_closed_port()}/0", connect_timeout=0.5)
    await dead.start()
    try:
        status, body = await Readiness(create_engine("sqlite://"), dead.ping, redis_required=True).answer()
        assert status == 503 and orjson.loads(body)["checks"]["redis"] == "unreachable"
    finally:
        await dead.close()


def test_a_store_that_fails_a_request_is_a_503_not_a_500(request: pytest.FixtureRequest) -> None:
    """A request the store fails (here: its schema is gone) gets 503 with Retry-After in the
    surface's shape, and /ready says the same; served requests that need no store go on."""
    import psycopg
    from sqlalchemy.engine import make_url

    from tests.store_fixtures import _fresh_schema_url

    url = _fresh_schema_url(request.config)
    gateway = start_gateway(env={"AIGW_DATABASE_URL": url})
    try:
        auth = {"authorization": f"Bearer {gateway.admin_token}"}
        made = requests.post(f"{gateway.url}/mlflow/v1/responses", json={"model": "demo", "input": "hi"}, headers=auth, timeout=10)
        assert made.status_code == 200, made.text
        schema = make_url(url).query["options"].removeprefix("-csearch_path=")
        admin = make_url(url).set(query={}, drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        lost = requests.get(f"{gateway.url}/mlflow/v1/responses/{made.json()['id']}", headers=auth, timeout=10)
        assert lost.status_code == 503 and lost.headers["retry-after"] == "1"
        assert lost.json()["error"]["message"] == "The gateway's store is unavailable; try again."
        chat = {"model": "demo", "messages": [{"role": "user", "content": "still here"}]}
        assert requests.post(f"{gateway.url}/mlflow/v1/chat/completions", json=chat, headers=auth, timeout=10).status_code == 200
        assert "store error on GET /mlflow/v1/responses/" in gateway.log()
    finally:
        cleanup(gateway)
