"""The agent loop over a pass-through (`openai`) destination whose answer is malformed: a stream
event without a type or not JSON, a stream that ends before `response.completed`, a whole answer
that is not a Response object, usage counts that are not counts. Each must end the response as
failed (streamed: an `error` event then `response.failed` and `[DONE]`; whole: a 502 in OpenAI's
shape), stored so that a GET finds it failed, never a 500 or a stream cut without its end.

A scripted aiohttp upstream answers /v1/responses; the model name picks the script."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from aiohttp import web

from aigw.wire.openai_responses import decode_usage
from tests.gateway_process import GatewayProcess, cleanup, start_gateway

CREATED = {"type": "response.created", "response": {"id": "resp_up", "status": "in_progress", "output": []}}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": "hi", "annotations": []}]}  # fmt: skip


def completed(usage: Any = None, output: Any = None) -> dict[str, Any]:
    response = {"id": "resp_up", "status": "completed", "model": "m", "output": [MESSAGE] if output is None else output}
    if usage is not None:
        response["usage"] = usage
    return {"type": "response.completed", "response": response}


def frame(data: Any) -> bytes:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return b"data: " + body + b"\n\n"


# Streams: the frames the upstream sends (then it closes the connection). Each malformed one first
# sends a good item, so the client's stream has started when the fault comes.
ITEM = [
    frame({"type": "response.output_item.added", "output_index": 0, "item": {**MESSAGE, "status": "in_progress", "content": []}}),
    frame({"type": "response.output_item.done", "output_index": 0, "item": MESSAGE}),
]
STREAMS: dict[str, list[bytes]] = {
    "no-type": [frame(CREATED), *ITEM, frame({"output_index": 1, "item": MESSAGE}), frame(completed())],
    "not-json": [frame(CREATED), *ITEM, frame(b"{not json"), frame(completed())],
    "no-completed": [frame(CREATED), *ITEM],
    "item-not-object": [frame(CREATED), *ITEM, frame({"type": "response.output_item.done", "output_index": 1, "item": "x"}), frame(completed())],
    "bad-index": [frame(CREATED), *ITEM, frame({"type": "response.output_item.done", "output_index": "0", "item": MESSAGE}), frame(completed())],
    "response-not-object": [frame(CREATED), *ITEM, frame({"type": "response.completed", "response": [1]})],
    "bad-usage": [frame(CREATED), *ITEM, frame(completed(usage={"input_tokens": "12", "output_tokens": -5, "input_tokens_details": 3}))],
    "ok": [frame(CREATED), *ITEM, frame(completed(usage={"input_tokens": 3, "output_tokens": 2}))],
    "early-not-json": [frame(CREATED), frame(b"{not json")],
}
# Whole answers: the JSON body of a 200.
WHOLE: dict[str, Any] = {
    "output-not-list": {"id": "r", "status": "completed", "output": {"a": 1}},
    "item-not-object": {"id": "r", "status": "completed", "output": ["x"]},
    "item-no-type": {"id": "r", "status": "completed", "output": [{"role": "assistant"}]},
    "name-not-string": {"id": "r", "status": "completed", "output": [{"type": "function_call", "name": ["x"], "arguments": "{}", "call_id": "c"}]},
    "content-not-list": {"id": "r", "status": "completed", "output": [{**MESSAGE, "content": "hi"}]},
    "bad-usage": {"id": "r", "status": "completed", "model": "m", "output": [MESSAGE], "usage": {"input_tokens": 1.5, "output_tokens": True}},
}
MALFORMED_STREAMS = [name for name in STREAMS if name not in ("ok", "bad-usage", "early-not-json")]
MALFORMED_WHOLE = [name for name in WHOLE if name != "bad-usage"]


async def responses(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = body["model"]
    if not body.get("stream"):
        return web.Response(body=json.dumps(WHOLE[model]).encode(), content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for data in STREAMS[model]:
        await response.write(data)
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/responses", responses)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@pytest.fixture(scope="module")
def agw(upstream: str) -> Iterator[GatewayProcess]:
    models = set(STREAMS) | set(WHOLE)
    endpoints = [
        {"name": m, "destinations": [{"provider": "openai", "model": m, "base_url": upstream + "/v1", "api_key": "k"}]} for m in sorted(models)
    ]
    process = start_gateway(yaml.safe_dump({"endpoints": endpoints}))
    try:
        yield process
    finally:
        cleanup(process)


def post(agw: GatewayProcess, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {agw.admin_token}"}
    return requests.post(agw.url + "/mlflow/v1/responses", json=body, headers=headers, timeout=30, **kwargs)


def get(agw: GatewayProcess, id: str) -> dict[str, Any]:
    answer = requests.get(f"{agw.url}/mlflow/v1/responses/{id}", headers={"Authorization": f"Bearer {agw.admin_token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def stream_events(response: requests.Response) -> tuple[list[dict[str, Any]], bool]:
    """(events, whether the stream ended with [DONE])."""
    events, done = [], False
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            if line == b"data: [DONE]":
                done = True
            else:
                events.append(json.loads(line[6:]))
    return events, done


@pytest.mark.parametrize("model", MALFORMED_STREAMS)
def test_a_malformed_stream_ends_failed_and_is_stored(agw: GatewayProcess, model: str) -> None:
    answer = post(agw, {"model": model, "input": "hello", "stream": True}, stream=True)
    assert answer.status_code == 200
    events, done = stream_events(answer)
    kinds = [e["type"] for e in events]
    assert done and kinds[0] == "response.created" and kinds[-2:] == ["error", "response.failed"], kinds
    assert "response.completed" not in kinds
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert "malformed" in events[-2]["message"] or "before the response was completed" in events[-2]["message"]
    stored = get(agw, failed["id"])
    assert stored["status"] == "failed" and stored["error"] == failed["error"]


@pytest.mark.parametrize("model", MALFORMED_WHOLE + ["early-not-json"])
def test_a_malformed_answer_before_the_stream_starts_is_a_502(agw: GatewayProcess, model: str) -> None:
    """Unstreamed, or streamed with nothing said yet: a plain 502 in OpenAI's shape."""
    stream = model == "early-not-json"
    answer = post(agw, {"model": model, "input": "hello", "stream": stream})
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and "malformed" in error["message"]


def test_a_malformed_whole_answer_in_the_background_is_stored_failed(agw: GatewayProcess) -> None:
    answer = post(agw, {"model": "item-not-object", "input": "hello", "background": True})
    assert answer.status_code == 200, answer.text
    id = answer.json()["id"]
    for _ in range(100):
        stored = get(agw, id)
        if stored["status"] not in ("queued", "in_progress"):
            break
        time.sleep(0.05)
    assert stored["status"] == "failed" and "malformed" in stored["error"]["message"]


@pytest.mark.parametrize("stream", [True, False])
def test_usage_that_is_not_counts_is_ignored(agw: GatewayProcess, stream: bool) -> None:
    answer = post(agw, {"model": "bad-usage", "input": "hello", "stream": stream}, stream=stream)
    assert answer.status_code == 200, answer.text
    if stream:
        events, done = stream_events(answer)
        assert done and events[-1]["type"] == "response.completed", events
        response = events[-1]["response"]
    else:
        response = answer.json()
    assert response["status"] == "completed"
    assert response["usage"]["input_tokens"] == 0 and response["usage"]["output_tokens"] == 0


def test_a_well_formed_stream_still_completes(agw: GatewayProcess) -> None:
    events, done = stream_events(post(agw, {"model": "ok", "input": "hello", "stream": True}, stream=True))
    assert done and events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["input_tokens"] == 3


@pytest.mark.parametrize(
    "usage, expected",
    [
        ({"input_tokens": 5, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1}}, (5, 2, 1, None)),
        ({"input_tokens": "5", "output_tokens": -2, "output_tokens_details": {"reasoning_tokens": 1.5}}, (0, 0, None, None)),
        ({"input_tokens": True, "output_tokens": 2**40, "input_tokens_details": "x", "output_tokens_details": []}, (0, 0, None, None)),
        ({"input_tokens": None, "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 2}}, (0, 3, None, 2)),
    ],
)
def test_the_usage_reader_takes_only_counts(usage: dict[str, Any], expected: tuple) -> None:
    read = decode_usage(usage)
    assert read is not None
    assert (read.input_tokens, read.output_tokens, read.cached_input_tokens, read.reasoning_tokens) == expected
