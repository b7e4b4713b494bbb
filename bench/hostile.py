#!/usr/bin/env python3
"""Hostile and odd clients against the gateway under each HTTP server, with each server's defaults:
what aigw's own server refuses or bounds (tests/test_http_server*.py), tried on granian and uvicorn.

    .venv/bin/python bench/hostile.py [--servers aigw,granian,uvicorn] [--cap 40]

Each server serves bench/aigw-bench.yaml (a temporary data directory) in front of a small upstream
in this script that answers after --upstream-delay seconds, so a client that leaves early shows
whether the server cancelled the upstream call. Slow probes wait at most --cap seconds. Prints one
markdown table, probe x server. Local only (127.0.0.1); every process it starts it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "bin"
CONFIG = ROOT / "bench" / "aigw-bench.yaml"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CANNED = json.dumps({
    "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()  # fmt: skip


def commands(port: int) -> dict[str, list[str]]:
    host = ["--host", "127.0.0.1", "--port", str(port)]
    return {
        "aigw": [str(VENV / "aigw"), "serve", "--config", str(CONFIG), *host],
        "granian": [str(VENV / "granian"), "--interface", "asgi", "--loop", "uvloop", "--factory", *host, "aigw.factory:create_app"],
        "uvicorn": [str(VENV / "uvicorn"), "--factory", "aigw.factory:create_app", "--loop", "uvloop", "--http", "httptools", *host],
        # the same with the options that bear on the probes set as tight as they go
        "granian-tight": [str(VENV / "granian"), "--interface", "asgi", "--loop", "uvloop", "--factory", *host, "--http", "1",
                          "--http1-buffer-size", "65536", "--http1-header-read-timeout", "5000", "aigw.factory:create_app"],
        "uvicorn-h11": [str(VENV / "uvicorn"), "--factory", "aigw.factory:create_app", "--loop", "uvloop", "--http", "h11",
                        "--h11-max-incomplete-event-size", "65536", *host],
    }  # fmt: skip


ORDER = [
    "header of 100 KiB", "header of 1 MiB", "10,000 small headers", "URL of 20 KiB", "chat body of 4 MiB", "slow head (a header line/s)",
    "body stalls after 10 bytes", "body trickles 1 byte/s", "two Host headers", "HTTP/1.1 without Host",
    "two Authorization (valid first)", "two Authorization (valid last)", "Content-Length + chunked", "two Content-Length",
    "Transfer-Encoding: gzip", "Expect: 100-continue", "3 pipelined requests", "client leaves before answer", "client leaves mid-stream",
    "access log of mock-stream calls", "HTTP/2 prior knowledge", "SIGTERM with a call in flight",
]  # fmt: skip


# --- the upstream: answers after a delay on /slow, at once elsewhere; notes callers that left ------


class Upstream:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.left_early = 0  # slow calls whose connection the gateway closed before the answer
        self.answered_slow = 0
        self.streams_left_early = 0  # slow streams the gateway closed before their end

    async def trickle_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A chat stream of one event every 0.2 s for `delay` * 5 events; notes a gateway that leaves."""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        eof = asyncio.ensure_future(reader.read(1))
        for _ in range(int(self.delay * 5)):
            event = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n'
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await asyncio.sleep(0.2)
            if eof.done():
                self.streams_left_early += 1
                return
        writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        eof.cancel()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int((re.search(rb"(?i)content-length:\s*(\d+)", head) or [b"", b"0"])[1])
                body = await reader.readexactly(length)
                if head.split(b" ", 2)[1].startswith(b"/slow") and b'"stream":true' in body.replace(b" ", b""):
                    await self.trickle_stream(reader, writer)
                    return
                if head.split(b" ", 2)[1].startswith(b"/slow"):
                    try:  # EOF while we wait means the gateway gave up on the call
                        if await asyncio.wait_for(reader.read(1), self.delay) == b"":
                            self.left_early += 1
                            return
                    except asyncio.TimeoutError:
                        self.answered_slow += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(CANNED), CANNED))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


# --- raw client helpers ---------------------------------------------------------------------------


async def exchange(port: int, data: bytes, *, wait: float = 5.0) -> tuple[bytes, bool]:
    """Send `data`, read until the server closes or `wait` passes: (what came back, closed?)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    got, closed = b"", False
    deadline = time.monotonic() + wait
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except asyncio.TimeoutError:
                break
            if not chunk:
                closed = True
                break
            got += chunk
    except ConnectionError:
        closed = True
    writer.close()
    return got, closed


def status_of(answer: bytes, closed: bool) -> str:
    statuses = re.findall(rb"HTTP/1\.[01] (\d{3})", answer)
    if not statuses:
        return "closed, no answer" if closed else "no answer"
    return "+".join(s.decode() for s in statuses) + (", closed" if closed else "")


def chat(token: str, model: str = "mock-json", extra: str = "", stream: bool = False, content: str = "hi") -> bytes:
    body = json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]}).encode()
    return (
        f"POST /mlflow/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def trickle(port: int, first: bytes, drip: bytes, cap: float) -> str:
    """Send `first`, then `drip` every second: when did the server answer or close?"""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(first)
    read = asyncio.ensure_future(reader.read(65536))
    try:
        while time.monotonic() - started < cap:
            done, _ = await asyncio.wait({read}, timeout=1.0)
            if done:
                try:
                    answer = read.result()
                except ConnectionError:
                    answer = b""
                return f"{status_of(answer, not answer)} after {time.monotonic() - started:.0f} s"
            if drip:
                writer.write(drip)
        return f"still open after {cap:.0f} s"
    except ConnectionError:
        return f"reset after {time.monotonic() - started:.0f} s"
    finally:
        read.cancel()
        writer.close()


# --- the probes -----------------------------------------------------------------------------------


async def probes(port: int, token: str, upstream: Upstream, cap: float) -> dict[str, str]:
    out: dict[str, str] = {}
    h = "GET /health HTTP/1.1\r\nHost: x\r\n"

    async def one(name: str, data: bytes, wait: float = 5.0) -> None:
        try:
            out[name] = status_of(*await exchange(port, data, wait=wait))
        except OSError as exc:
            out[name] = f"error {exc}"

    async def slow_head() -> None:  # slowloris: a header line a second, never the end of the head
        out["slow head (a header line/s)"] = await trickle(port, h.encode(), b"x-a: b\r\n", cap)

    async def stalled_body() -> None:  # a body announced and never sent
        data = chat(token)
        out["body stalls after 10 bytes"] = await trickle(port, data[: data.index(b"\r\n\r\n") + 14], b"", cap)

    async def trickled_body() -> None:  # a byte a second of a 100,000-byte body
        data = chat(token).replace(b"Content-Length: ", b"Content-Length: 100000\r\nX-Was: ")
        out["body trickles 1 byte/s"] = await trickle(port, data[: data.index(b"\r\n\r\n") + 4], b" ", cap)

    async def client_leaves() -> None:  # a non-streamed call to an upstream that answers late
        before = upstream.left_early
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(chat(token, "mock-stream"))
        await asyncio.sleep(0.5)
        writer.close()
        await asyncio.sleep(upstream.delay + 0.5)
        out["client leaves before answer"] = (
            "upstream call closed" if upstream.left_early > before else "upstream call ran to the end"
        )

    async def client_leaves_stream() -> None:  # a streamed call the client leaves after a second
        before = upstream.streams_left_early
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(chat(token, "mock-stream", stream=True))
        await asyncio.sleep(1.0)
        writer.close()
        await asyncio.sleep(upstream.delay + 0.5)
        out["client leaves mid-stream"] = (
            "upstream stream closed" if upstream.streams_left_early > before else "upstream stream ran to the end"
        )

    async def continue_100() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = chat(token, extra="Expect: 100-continue\r\n")
        cut = data.index(b"\r\n\r\n") + 4
        writer.write(data[:cut])
        try:
            first = await asyncio.wait_for(reader.read(4096), 3)
        except asyncio.TimeoutError:
            first = b""
        writer.write(data[cut:])
        try:
            rest = await asyncio.wait_for(reader.read(65536), 5)
        except asyncio.TimeoutError:
            rest = b""
        writer.close()
        out["Expect: 100-continue"] = ("100 first" if first.startswith(b"HTTP/1.1 100") else "no 100") + "; " + status_of(first + rest, False)

    async def http2() -> None:
        answer, closed = await exchange(port, PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", wait=3)
        if answer.startswith(b"HTTP/"):
            out["HTTP/2 prior knowledge"] = "HTTP/1.1 " + status_of(answer, closed)
        elif b"\x00\x00\x00\x00\x0d" in answer and closed:
            out["HTTP/2 prior knowledge"] = "GOAWAY HTTP_1_1_REQUIRED"
        elif len(answer) >= 4 and answer[3] == 4:
            out["HTTP/2 prior knowledge"] = "speaks HTTP/2 (SETTINGS)" + (", closed" if closed else "")
        else:
            out["HTTP/2 prior knowledge"] = f"{answer[:20]!r}{', closed' if closed else ''}"

    async def pipelined() -> None:
        answer, closed = await exchange(port, (h + "\r\n").encode() * 3, wait=2)
        out["3 pipelined requests"] = status_of(answer, closed)

    async def duplicate_auth() -> None:  # which credential counts, the first or the last?
        good, bad = f"Authorization: Bearer {token}\r\n".encode(), b"Authorization: Bearer sk-wrong\r\n"
        for order, both in (("valid first", good + bad), ("valid last", bad + good)):
            data = chat(token).replace(good, both)
            out[f"two Authorization ({order})"] = status_of(*await exchange(port, data, wait=3))

    await asyncio.gather(
        slow_head(), stalled_body(), trickled_body(), client_leaves(), client_leaves_stream(), continue_100(), http2(), pipelined(), duplicate_auth(),
        one("header of 100 KiB", (h + "x-big: " + "a" * 100_000 + "\r\n\r\n").encode()),
        one("header of 1 MiB", (h + "x-big: " + "a" * 1_048_576 + "\r\n\r\n").encode()),
        one("10,000 small headers", (h + "".join(f"x-h{i}: v\r\n" for i in range(10_000)) + "\r\n").encode()),
        one("URL of 20 KiB", ("GET /health?" + "a" * 20_000 + " HTTP/1.1\r\nHost: x\r\n\r\n").encode()),
        one("chat body of 4 MiB", chat(token, content="a" * (4 << 20)), wait=8),
        one("two Host headers", (h + "Host: y\r\n\r\n").encode(), wait=3),
        one("HTTP/1.1 without Host", b"GET /health HTTP/1.1\r\n\r\n", wait=3),
        one("Content-Length + chunked", (h.replace("GET", "POST") + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode(), wait=3),
        one("two Content-Length", (h.replace("GET", "POST") + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab").encode(), wait=3),
        one("Transfer-Encoding: gzip", (h.replace("GET", "POST") + "Transfer-Encoding: gzip\r\n\r\n").encode(), wait=3),
    )  # fmt: skip
    return out


async def graceful(proc: subprocess.Popen, port: int, token: str) -> str:
    """SIGTERM while a call waits on the slow upstream: is it answered, and do new clients get in?"""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(chat(token, "mock-stream"))
    await asyncio.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    try:
        answer = await asyncio.wait_for(reader.read(65536), 15)
    except (asyncio.TimeoutError, ConnectionError):
        answer = b""
    writer.close()
    return "in-flight call answered " + status_of(answer, False) if answer else "in-flight call dropped"


# --- one server at a time ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_server(name: str, env: dict, token: str, upstream: Upstream, cap: float) -> dict[str, str]:
    port = free_port()
    log = open(Path(env["AIGW_DATA_DIR"]) / f"{name}.log", "wb")
    proc = subprocess.Popen(commands(port)[name], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(100):
            try:
                if b" 200 " in (await exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", wait=0.5))[0]:
                    break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            return {"start": "did not start"}
        result = await probes(port, token, upstream, cap)
        result["SIGTERM with a call in flight"] = await graceful(proc, port, token)
    finally:
        try:  # the graceful probe has sent SIGTERM already: a second one would mean "hurry"
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    # The two clients that left: what the gateway's access log (and so its usage record) says of them.
    lines = (Path(env["AIGW_DATA_DIR"]) / f"{name}.log").read_text(errors="replace").splitlines()
    statuses = [m[1] for line in lines if "endpoint=mock-stream" in line and (m := re.search(r"status=(\d+)", line))]
    result["access log of mock-stream calls"] = ", ".join(statuses) or "none"
    return result


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="aigw,granian,uvicorn", help="of aigw, granian, uvicorn, granian-tight, uvicorn-h11")
    ap.add_argument("--cap", type=float, default=40.0, help="seconds a slow probe waits at most")
    ap.add_argument("--upstream-delay", type=float, default=3.0)
    ap.add_argument("--logs", default="", help="folder to keep each server's log in (default: not kept)")
    args = ap.parse_args()
    upstream = Upstream(args.upstream_delay)
    listener = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, AIGW_DATA_DIR=data, AIGW_CONFIG=str(CONFIG),
                   BENCH_UPSTREAM_JSON=base + "/fast/v1", BENCH_UPSTREAM_STREAM=base + "/slow/v1")  # fmt: skip
        aigw = str(VENV / "aigw")
        token = subprocess.run([aigw, "tokens", "create", "--name", "probe", "--create-principal"], env=env,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        for endpoint in ("mock-json", "mock-stream"):
            subprocess.run([aigw, "grants", "add", endpoint, "--user", "probe"], env=env, capture_output=True, check=True)
        names = args.servers.split(",")
        results = {}
        for name in names:
            print(f"# {name} ...", file=sys.stderr, flush=True)
            results[name] = await run_server(name, env, token, upstream, args.cap)
            if args.logs:
                Path(args.logs).mkdir(parents=True, exist_ok=True)
                shutil.copy(Path(data) / f"{name}.log", Path(args.logs) / f"{name}.log")
    listener.close()
    rows = sorted(dict.fromkeys(k for r in results.values() for k in r), key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))
    print("| probe | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in rows:
        print(f"| {row} | " + " | ".join(results[n].get(row, "") for n in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
