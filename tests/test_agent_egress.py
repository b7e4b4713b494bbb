"""Inline MCP servers (`{"type": "mcp", "server_url": ...}`) cannot reach inside the gateway's network:
loopback, private, link-local (cloud metadata), multicast, unspecified and reserved addresses, in
any IPv6 form, and host names resolving to them, are refused unless `agent.inline_mcp_allowed_hosts`
names them; the check holds for the address actually connected to (no DNS rebinding); and a failure
is told in fixed words, so an internal service's answer, or which port is open, does not leak."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from aiohttp import web

from aigw.agent.egress import CheckedBackend, EgressPolicy, EgressRefused, is_public
from tests.fakes.mcp_server import free_port, start_http_server
from tests.gateway_process import GatewayProcess, cleanup, start_gateway

REFUSED = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:7f00:1::",
]  # fmt: skip
PUBLIC = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_internal_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    assert not EgressPolicy().allows_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert EgressPolicy().allows_address(ipaddress.ip_address(address))


def test_the_allow_list_takes_hosts_addresses_and_ranges() -> None:
    policy = EgressPolicy(["mcp.corp.example", "10.1.0.0/16", "127.0.0.1", "[::1]"])
    assert policy.allows_name("MCP.corp.example.") and not policy.allows_name("corp.example")
    assert policy.allows_address(ipaddress.ip_address("10.1.200.3"))
    assert not policy.allows_address(ipaddress.ip_address("10.2.0.1"))
    assert policy.allows_address(ipaddress.ip_address("127.0.0.1")) and policy.allows_address(ipaddress.ip_address("::1"))
    assert not policy.allows_address(ipaddress.ip_address("127.0.0.2"))
    with pytest.raises(ValueError):
        EgressPolicy(["10.0.0.0/33"])


class Recording(CheckedBackend):
    """A CheckedBackend recording where it connects, without connecting."""

    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(policy)
        self.connected: list[str] = []
        outer = self

        class Inner:
            async def connect_tcp(self, host: str, port: int, *args: Any) -> Any:
                outer.connected.append(host)
                return object()

        self._backend = Inner()  # type: ignore[assignment]


def test_a_name_resolving_to_an_internal_address_is_refused_and_the_checked_address_is_the_one_used() -> None:
    answers = [["8.8.8.8"], ["93.184.216.34", "10.0.0.7"], ["127.0.0.1"], ["::ffff:192.168.0.1"]]

    async def resolver(host: str, port: int) -> list[str]:
        return answers.pop(0)  # a rebinding DNS: a new answer each time

    backend = Recording(EgressPolicy(resolver=resolver))

    async def run() -> None:
        await backend.connect_tcp("rebind.example", 443)  # public: connects to that very address
        assert backend.connected == ["8.8.8.8"]
        for _ in range(3):  # one private address among public ones; only a private one; a mapped one
            with pytest.raises(EgressRefused):
                await backend.connect_tcp("rebind.example", 443)
        assert backend.connected == ["8.8.8.8"]
        with pytest.raises(EgressRefused):
            await backend.connect_unix_socket("/var/run/docker.sock")

    asyncio.run(run())


def test_a_real_name_for_loopback_is_refused() -> None:
    with pytest.raises(EgressRefused):
        asyncio.run(EgressPolicy().resolve("localhost", 80))
    assert asyncio.run(EgressPolicy(["127.0.0.0/8", "::1"]).resolve("localhost", 80))


# --- through the gateway ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mcp_port() -> Iterator[int]:
    port = free_port()
    process, _ = start_http_server(port)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def internal_port() -> Iterator[int]:
    """A non-MCP internal service with a secret to leak."""
    loop = asyncio.new_event_loop()

    async def secret(request: web.Request) -> web.Response:
        return web.Response(status=500, text="INTERNAL-SECRET-9931 admin console")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", secret)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@pytest.fixture(scope="module")
def agw() -> Iterator[GatewayProcess]:
    """Inline MCP allowed, with `localhost` (by name) allowed: 127.0.0.1 by address is not."""
    config = {"agent": {"allow_inline_mcp": True, "inline_mcp_allowed_hosts": ["localhost"]}}
    process = start_gateway(yaml.safe_dump(config))
    try:
        yield process
    finally:
        cleanup(process)


def inline(agw: GatewayProcess, url: str) -> tuple[requests.Response, float]:
    body = {"model": "demo", "input": "hi", "tools": [{"type": "mcp", "server_label": "s", "server_url": url, "require_approval": "never"}]}
    started = time.monotonic()
    answer = requests.post(agw.url + "/mlflow/v1/responses", json=body, headers={"Authorization": f"Bearer {agw.admin_token}"}, timeout=60)
    return answer, time.monotonic() - started


GENERIC = "Error retrieving tool list from MCP server 's'."


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "169.254.169.254", "10.255.255.1", "0.0.0.0", "[fe80::1]"],
)
def test_inline_mcp_to_an_internal_address_is_refused_with_a_generic_error(agw: GatewayProcess, mcp_port: int, host: str) -> None:
    answer, took = inline(agw, f"http://{host}:{mcp_port}/mcp")
    assert answer.status_code == 424, answer.text
    error = answer.json()["error"]
    assert error["message"] == GENERIC and error["param"] == "tools[0]"
    assert took < 10  # refused before any connection: nowhere near the connect timeout (a busy machine adds seconds)


def test_the_allow_list_lets_a_host_through(agw: GatewayProcess, mcp_port: int) -> None:
    answer, _ = inline(agw, f"http://localhost:{mcp_port}/mcp")
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"][0]["type"] == "mcp_list_tools"


def test_an_allowed_hosts_failure_does_not_echo_it(agw: GatewayProcess, internal_port: int) -> None:
    """An internal service's answer and a closed port read the same."""
    leaking, _ = inline(agw, f"http://localhost:{internal_port}/admin")
    closed, _ = inline(agw, f"http://localhost:{free_port()}/mcp")
    assert leaking.status_code == closed.status_code == 424
    assert leaking.json() == closed.json() and leaking.json()["error"]["message"] == GENERIC
    assert "SECRET" not in leaking.text
