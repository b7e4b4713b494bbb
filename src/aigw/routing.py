"""Endpoints and their destinations: the name a client puts in `model`, resolved to providers.

Built once at start from the settings; lookups on the hot path are a dict access.
"""

from __future__ import annotations

from aigw.config import DestinationConfig, EndpointConfig, Settings
from aigw.errors import ErrorKind, GatewayError
from aigw.http.upstream import UpstreamClient
from aigw.providers.base import Provider
from aigw.providers.registry import PROVIDERS

DEMO_ENDPOINT = EndpointConfig(
    name="demo",
    task=["chat", "embeddings"],
    destinations=[DestinationConfig(provider="demo", model="aigw-demo-1")],
)


class Endpoint:
    __slots__ = ("name", "tasks", "destinations")

    def __init__(self, config: EndpointConfig, client: UpstreamClient) -> None:
        self.name = config.name
        self.tasks = config.tasks
        self.destinations: list[Provider] = [PROVIDERS[d.provider](d, client) for d in config.destinations]

    def destination(self) -> Provider:
        return self.destinations[0]


class Router:
    def __init__(self, settings: Settings, client: UpstreamClient) -> None:
        configs = list(settings.endpoints)
        if settings.demo_endpoint and not any(e.name == DEMO_ENDPOINT.name for e in configs):
            configs.append(DEMO_ENDPOINT)
        self.endpoints: dict[str, Endpoint] = {c.name: Endpoint(c, client) for c in configs}

    def names_for(self, task: str | None = None) -> list[str]:
        """The endpoint names (sorted) that serve `task`, or all of them."""
        return sorted(name for name, e in self.endpoints.items() if task is None or task in e.tasks)

    def endpoint(self, name: str, task: str) -> Endpoint:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise GatewayError(ErrorKind.NOT_FOUND, f"The endpoint '{name}' does not exist.", param="model")
        if task not in endpoint.tasks:
            raise GatewayError(
                ErrorKind.INVALID_REQUEST,
                f"The endpoint '{name}' does not serve {task} (it serves: {', '.join(sorted(endpoint.tasks))}).",
                param="model",
            )
        return endpoint
