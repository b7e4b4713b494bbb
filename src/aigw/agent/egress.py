"""Where an inline MCP server (a request's `{"type": "mcp", "server_url": ...}`) may be: not inside
the gateway's network unless the operator says so.

An inline server is a URL the client chose, fetched from the gateway's network position, and its
answer (or failure) reaches the client: without a check it reads internal services and cloud
metadata, and maps ports by timing. So every connection an inline MCP client opens goes through
`CheckedBackend`: it resolves the host itself, refuses the connection if any resolved address is
not a public one (loopback, private, link-local (cloud metadata included), multicast, unspecified,
reserved, shared/CGNAT, IPv4-mapped or NAT64 forms of those), and connects to the very address it
checked, so a DNS answer that changes between check and connect (rebinding) gains nothing.

`agent.inline_mcp_allowed_hosts` lists what is allowed anyway: host names (matched exactly, case
aside), IP addresses and CIDR ranges.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore2
import httpx2
from httpcore2._backends.auto import AutoBackend
from httpcore2._backends.base import AsyncNetworkBackend, AsyncNetworkStream

log = logging.getLogger("aigw.agent")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]  # host, port -> its addresses
# Translation prefixes that embed an IPv4 address: judged by the address inside.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class EgressRefused(httpcore2.ConnectError):
    """A connection to a host the policy refuses (an httpcore ConnectError, so clients see a
    connection failure, like an unreachable host)."""


class EgressPolicy:
    """Which hosts an inline MCP client may connect to."""

    def __init__(self, allowed: Iterable[str] = (), resolver: Resolver | None = None) -> None:
        self._resolver = resolver or _getaddrinfo
        self._hosts: set[str] = set()
        self._networks: list[Network] = []
        for entry in allowed:
            entry = entry.strip()
            try:
                self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if "/" in entry or not entry:
                    raise ValueError(f"agent.inline_mcp_allowed_hosts: {entry!r} is not a host name, an IP address or a CIDR range") from None
                self._hosts.add(entry.lower().rstrip("."))

    def allows_name(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._hosts

    def allows_address(self, address: Address) -> bool:
        if any(address in network for network in self._networks if network.version == address.version):
            return True
        return is_public(address)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`, each checked; EgressRefused if any is refused
        (a name with one private address among public ones is refused: the client picks which)."""
        try:
            addresses = await self._resolver(host.strip("[]"), port)
        except (OSError, UnicodeError) as error:
            raise httpcore2.ConnectError(f"cannot resolve {host!r}") from error
        for text in addresses:
            if not self.allows_address(ipaddress.ip_address(text)):
                log.info("inline MCP: refused a connection to %s (%s)", host, text)
                raise EgressRefused(f"connection to {host!r} refused by the gateway's egress policy")
        if not addresses:
            raise httpcore2.ConnectError(f"cannot resolve {host!r}")
        return addresses


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).partition("%")[0] for info in infos))  # no IPv6 zone


def is_public(address: Address) -> bool:
    """A globally routable unicast address: none of loopback, private, link-local, multicast,
    unspecified, reserved or shared space, in any IPv6 form that embeds an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


class CheckedBackend(AsyncNetworkBackend):
    """httpcore's network backend with the policy applied at every connect (see the module doc)."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._backend = AutoBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options: Any = None
    ) -> AsyncNetworkStream:
        if self._policy.allows_name(host):
            return await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        last: Exception | None = None
        for address in await self._policy.resolve(host, port):
            try:
                return await self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as error:
                last = error
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> AsyncNetworkStream:
        raise EgressRefused("unix sockets are not allowed for inline MCP servers")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def checked_transport(policy: EgressPolicy) -> httpx2.AsyncHTTPTransport:
    """An httpx transport whose connections go through `CheckedBackend`. It ignores proxy settings
    from the environment (a proxy would connect on our behalf, unchecked). httpx builds its
    connection pool without a network-backend option, so it is set on the pool it built."""
    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    transport._pool._network_backend = CheckedBackend(policy)  # type: ignore[union-attr]
    return transport
