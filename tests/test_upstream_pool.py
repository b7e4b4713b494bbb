"""The upstream pool against a raw-socket fake: bodies of any allowed size are read, a body still
flowing never times out but a whole exchange has a deadline, and heads, bodies and error bodies
are bounded (issue 11: the pool paused a whole-body read at 1 MiB and never resumed it, so a
1.3 MB embeddings batch came back as a false 504; an endless header section grew the process to 1 GB)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest

from aigw.errors import ErrorKind, GatewayError
from aigw.http.pool import ERROR_BODY_BYTES, PooledUpstreamClient
from aigw.http.upstream import UpstreamLimits, UpstreamRequest
from tests.fakes.raw_upstream import BIG_BYTES, RawUpstream

LIMITS = UpstreamLimits(timeout=0.5, total_timeout=5.0, max_body_bytes=256 << 20)


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    fake = RawUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
async def client() -> AsyncIterator[PooledUpstreamClient]:
    pool = PooledUpstreamClient()
    yield pool
    await pool.close()


def chat(raw: RawUpstream, fault: str, stream: bool = False) -> UpstreamRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": f"fault:{fault}"}], "stream": stream}
    return UpstreamRequest("POST", f"{raw.url}/v1/chat/completions", {"content-type": "application/json"}, orjson.dumps(body))


async def exchange(client: PooledUpstreamClient, request: UpstreamRequest, limits: UpstreamLimits = LIMITS) -> tuple[bytes, float]:
    started = time.monotonic()
    response = await client.send(request, limits=limits, destination="raw")
    body = await response.read()
    return body, time.monotonic() - started


async def failure(client: PooledUpstreamClient, request: UpstreamRequest, limits: UpstreamLimits = LIMITS) -> tuple[GatewayError, float]:
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await exchange(client, request, limits)
    return caught.value, time.monotonic() - started


async def test_a_whole_body_of_5_mb_is_read_at_once(raw: RawUpstream, client: PooledUpstreamClient) -> None:
    body, elapsed = await exchange(client, chat(raw, "big"))
    assert len(body) > BIG_BYTES
    assert orjson.loads(body)["choices"][0]["message"]["content"] == "x" * BIG_BYTES
    assert elapsed < 0.4  # was: no progress past 1 MiB, a 504 after the timeout
    body, _ = await exchange(client, chat(raw, "ok"))  # and the connection is fit for reuse
    assert orjson.loads(body)["object"] == "chat.completion"


async def test_a_body_that_drips_longer_than_the_timeout_still_succeeds(raw: RawUpstream, client: PooledUpstreamClient) -> None:
    body, elapsed = await exchange(client, chat(raw, "drip"))
    assert orjson.loads(body)["object"] == "chat.completion"
    assert elapsed > LIMITS.timeout * 2  # it flowed for longer than `timeout`: only gaps count


async def test_a_body_that_drips_forever_ends_at_the_total_timeout(raw: RawUpstream, client: PooledUpstreamClient) -> None:
    limits = LIMITS._replace(total_timeout=1.2)
    error, elapsed = await failure(client, chat(raw, "drip_forever"), limits)
    assert error.kind is ErrorKind.UPSTREAM_TIMEOUT and error.status == 504 and error.retryable
    assert "total_timeout" in error.message
    assert 1.1 < elapsed < 2.0


async def test_a_stream_is_not_bound_by_the_total_timeout(raw: RawUpstream, client: PooledUpstreamClient) -> None:
    limits = LIMITS._replace(total_timeout=0.3)
    response = await client.send(chat(raw, "drip", stream=True), limits=limits, destination="raw")
    received = b"".join([chunk async for chunk in response.iter_chunks()])
    assert received.endswith(b"data: [DONE]\n\n")


async def test_a_body_over_the_limit_is_refused_without_reading_it(raw: RawUpstream, client: PooledUpstreamClient) -> None:
    limits = LIMITS._replace(max_body_bytes=1 << 20)
    error, elapsed = await failure(client, chat(raw, "big"), limits)  # declared by its content-length
    assert error.status == 502 and error.code == "upstream_response_too_large"
    assert not error.retryable  # its size follows from the request: another try would pay for it again
    assert elapsed < 0.3
    limits = LIMITS._replace(max_body_bytes=200)
    error, _ = await failure(client, chat(raw, "ok", stream=True), limits)  # chunked: found while reading
    assert error.code == "upstream_response_too_large"


async def test_an_error_body_is_cut_short_not_refused(raw: RawUpstream, client: PooledUpstreamClient) -> None:
    response = await client.send(chat(raw, "big_error"), limits=LIMITS, destination="raw")
    assert response.status == 500
    body = await response.read()
    assert len(body) == ERROR_BODY_BYTES  # enough for its message; the rest is dropped with the connection


@pytest.mark.parametrize("fault", ["endless_head", "many_headers"])
async def test_an_unbounded_head_is_a_502(raw: RawUpstream, client: PooledUpstreamClient, fault: str) -> None:
    error, elapsed = await failure(client, chat(raw, fault))
    assert error.status == 502 and error.retryable
    assert "64 KiB" in error.message or "128 headers" in error.message
    assert elapsed < 0.4


async def test_a_reset_mid_body_is_a_retryable_502(raw: RawUpstream, client: PooledUpstreamClient) -> None:
    error, _ = await failure(client, chat(raw, "reset"))
    assert error.status == 502 and error.retryable


async def test_a_silent_upstream_is_a_504_after_the_timeout(raw: RawUpstream, client: PooledUpstreamClient) -> None:
    error, elapsed = await failure(client, chat(raw, "hang_head"))
    assert error.status == 504 and error.retryable
    assert LIMITS.timeout <= elapsed < LIMITS.timeout + 0.4


@pytest.mark.parametrize("field", ["total_timeout", "max_response_bytes", "max_event_bytes"])
def test_the_limits_must_be_positive(tmp_path, field: str) -> None:
    from aigw.config import ConfigError, load_settings

    path = tmp_path / "aigw.yaml"
    destination = {"provider": "openai_compatible", "model": "m", "base_url": "http://127.0.0.1:9/v1", field: 0}
    path.write_text(orjson.dumps({"endpoints": [{"name": "e", "destinations": [destination]}]}).decode())
    with pytest.raises(ConfigError, match=field):
        load_settings(path, environ={})


async def test_a_body_complete_before_it_is_read_is_held_to_the_limit_too(raw: RawUpstream, client: PooledUpstreamClient) -> None:
    # A chunked body (no declared length) already whole in the buffer when `read` starts.
    response = await client.send(chat(raw, "ok", stream=True), limits=LIMITS._replace(max_body_bytes=200), destination="raw")
    while not response._connection.complete:
        await asyncio.sleep(0.01)
    with pytest.raises(GatewayError) as caught:
        await response.read()
    assert caught.value.code == "upstream_response_too_large"
