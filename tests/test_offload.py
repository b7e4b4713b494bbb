"""One big request does not stall the serving loop: its parse, validation and translation run on a
worker thread (aigw.offload), so /health keeps answering while a 10 MB request of 300,000 messages
is decoded, translated and answered."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
import requests

from aigw.offload import OFFLOAD_ABOVE_BYTES, note_request_size, run_heavy
from tests.gateway_process import cleanup, start_gateway


async def test_small_inputs_run_inline_big_ones_on_a_thread() -> None:
    here = threading.get_ident()
    assert await run_heavy(threading.get_ident) == here  # no request size noted: small
    assert await run_heavy(threading.get_ident, size=OFFLOAD_ABOVE_BYTES) != here
    note_request_size(OFFLOAD_ABOVE_BYTES * 4)
    assert await run_heavy(threading.get_ident) != here
    assert await run_heavy(threading.get_ident, size=10) == here  # an explicit size wins


@pytest.mark.parametrize("path, body", [
    ("/mlflow/v1/chat/completions", {"model": "demo", "messages": [{"role": "user", "content": "x"}] * 300_000}),
    ("/mlflow/v1/responses", {"model": "demo", "input": [{"role": "user", "content": "x"}] * 300_000}),
    ("/gemini/v1beta/models/demo:generateContent", {"contents": [{"role": "user", "parts": [{"text": "x"}]}] * 300_000}),
])  # fmt: skip
def test_health_answers_while_a_big_request_is_worked_on(gateway, path: str, body: dict) -> None:  # type: ignore[no-untyped-def]
    data = orjson.dumps(body)
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            requests.get(f"{gateway.url}/health", timeout=60)
            latencies.append(time.monotonic() - started)
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        headers = {"authorization": f"Bearer {gateway.admin_token}", "content-type": "application/json"}
        started = time.monotonic()
        answer = requests.post(gateway.url + path, data=data, headers=headers, timeout=120)
        took = time.monotonic() - started
    finally:
        done.set()
        prober.join()
    assert answer.status_code == 200, answer.text[:300]
    # Without the offload the loop was blocked for the whole request (seconds); with it, a probe
    # waits at most for a GIL hand-over or a C call such as the JSON parse (up to ~1 s when other
    # processes share the cores: the bound leaves room for that, and none for a blocked loop).
    assert max(latencies) < max(1.5, took / 2), f"/health took up to {max(latencies):.2f}s during a {took:.2f}s request"


@pytest.fixture(scope="module")
def gateway():  # type: ignore[no-untyped-def]
    process = start_gateway()
    yield process
    cleanup(process)
