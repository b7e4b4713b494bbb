"""aigw.factory:create_app, the app other ASGI servers host (bench/servers.sh): built from
AIGW_CONFIG as `aigw serve` builds it, started by ASGI lifespan, tuned as our server tunes it."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path

import pytest

from aigw.factory import create_app
from aigw.http.process import GC_THRESHOLDS

CONFIG = """\
endpoints:
  - name: chat
    task: chat
    destinations:
      - provider: openai_compatible
        model: m
        base_url: http://127.0.0.1:9/v1
        api_key: k
"""


@pytest.fixture
def restore_process_state():
    """create_app configures logging and start-up tunes the collector: both process-wide."""
    thresholds = gc.get_threshold()
    root, access = logging.getLogger("aigw"), logging.getLogger("aigw.access")
    saved = (list(root.handlers), root.level, root.propagate, access.disabled)
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers, root.level, root.propagate, access.disabled = saved


async def _request(app, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return messages.pop(0) if messages else await asyncio.Event().wait()  # then: nothing more

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "headers": [(b"host", b"x"), (b"content-type", b"application/json")]}  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_the_factory_builds_the_configured_gateway_and_lifespan_starts_it(tmp_path: Path, monkeypatch, restore_process_state):
    config = tmp_path / "aigw.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("AIGW_CONFIG", str(config))
    monkeypatch.setenv("AIGW_DATA_DIR", str(tmp_path / "data"))
    gc.set_threshold(700, 10, 10)
    app = create_app()
    assert [e.name for e in app.settings.endpoints] == ["chat"]

    lifespan_in: asyncio.Queue = asyncio.Queue()
    lifespan_out: asyncio.Queue = asyncio.Queue()
    lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_in.get, lifespan_out.put))
    await lifespan_in.put({"type": "lifespan.startup"})
    assert (await asyncio.wait_for(lifespan_out.get(), 10))["type"] == "lifespan.startup.complete"
    assert gc.get_threshold() == GC_THRESHOLDS  # what aigw's own server sets once the app has started

    # Routing needs what start-up builds: a chat call without a token is the surface's own 401.
    status, body = await _request(app, "POST", "/mlflow/v1/chat/completions", b'{"model":"chat","messages":[]}')
    assert status == 401 and "error" in json.loads(body)

    await lifespan_in.put({"type": "lifespan.shutdown"})
    assert (await asyncio.wait_for(lifespan_out.get(), 10))["type"] == "lifespan.shutdown.complete"
    await asyncio.wait_for(lifespan, 10)
