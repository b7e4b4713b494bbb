"""What the kinds that call out (judge, jailbreak, unsafe_content, topics, webhook) get from the
gateway: its own endpoints, called in-process (no HTTP to itself), and its pooled upstream client.

`aigw.routing.RouterServices` is the real one, built where the engines are built; the pure-library
kinds (pii, keywords, python) take none. `NO_SERVICES` stands in where engines are built only to
check a configuration: the policies are built (so their own checks run) but never called.
"""

from __future__ import annotations

from typing import Protocol

from aigw.http.upstream import UpstreamClient

from .verdicts import PolicyContext


class PolicyServices(Protocol):
    async def chat(self, endpoint: str, system: str, text: str, context: PolicyContext, policy: str) -> str:
        """The answer of chat endpoint `endpoint` to a system prompt and one user message."""
        ...

    async def embed(self, endpoint: str, texts: list[str], context: PolicyContext, policy: str) -> list[list[float]]:
        """One vector per text from embeddings endpoint `endpoint`."""
        ...

    @property
    def http(self) -> UpstreamClient: ...


class ServicesUnavailable(RuntimeError):
    pass


class _NoServices:
    async def chat(self, endpoint: str, system: str, text: str, context: PolicyContext, policy: str) -> str:
        raise ServicesUnavailable("no gateway services: this engine was built to check a configuration")

    async def embed(self, endpoint: str, texts: list[str], context: PolicyContext, policy: str) -> list[list[float]]:
        raise ServicesUnavailable("no gateway services: this engine was built to check a configuration")

    @property
    def http(self) -> UpstreamClient:
        raise ServicesUnavailable("no gateway services: this engine was built to check a configuration")


NO_SERVICES: PolicyServices = _NoServices()
