"""Records and `kill -9`: with `recording.durable`, every request the gateway answered has its usage
record even when the process is killed right after the answers (the records were on disk before the
last byte left, and the next start stores them). Without it, about the last second of records is
lost: shown here too, so the durable test is known to be able to fail."""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import yaml

from tests.gateway_process import GatewayProcess, cleanup, start_gateway

REQUESTS = 120


def _answer_then_kill(gateway: GatewayProcess, run: str) -> int:
    """Send REQUESTS chat requests (16 at a time), then SIGKILL the gateway at once; how many were answered."""
    headers = {"authorization": f"Bearer {gateway.admin_token}", "x-aigw-request-tags": json.dumps({"run": run})}
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}

    def one(_: int) -> bool:
        response = requests.post(f"{gateway.url}/mlflow/v1/chat/completions", json=body, headers=headers, timeout=20)
        return response.status_code == 200

    with ThreadPoolExecutor(max_workers=16) as pool:
        answered = sum(pool.map(one, range(REQUESTS)))
    gateway.process.kill()
    gateway.process.wait()
    return answered


def _records_after_restart(gateway: GatewayProcess, config: str, run: str, expected: int, wait: float) -> int:
    restarted = start_gateway(config, data_dir=gateway.data_dir)
    try:
        deadline = time.monotonic() + wait
        while True:
            count = sum(1 for r in restarted.usage_records() if r["tags"].get("run") == run)
            if count >= expected or time.monotonic() > deadline:
                return count
            time.sleep(0.2)
    finally:
        restarted.stop()


def _config(durable: bool) -> str:
    return yaml.safe_dump({"recording": {"durable": durable}})


def test_durable_mode_loses_no_record_of_an_answered_request_to_kill_9():
    config = _config(durable=True)
    gateway = start_gateway(config)
    try:
        run = secrets.token_hex(4)
        answered = _answer_then_kill(gateway, run)
        assert answered == REQUESTS
        assert _records_after_restart(gateway, config, run, answered, wait=15) == answered
    finally:
        cleanup(gateway)


def test_without_durable_mode_kill_9_loses_the_last_records():
    config = _config(durable=False)
    gateway = start_gateway(config)
    try:
        run = secrets.token_hex(4)
        answered = _answer_then_kill(gateway, run)
        # Nothing is left to replay: what is not stored by the time the restart is up, never will be.
        stored = _records_after_restart(gateway, config, run, answered, wait=1.5)
        assert stored < answered, "the records held in memory were expected to be lost with the process"
    finally:
        cleanup(gateway)
