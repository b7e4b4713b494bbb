"""Shared fixtures: the fake upstream, and one real gateway process configured in front of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from tests.fakes.fixtures import fake_upstream  # noqa: F401  (a fixture)
from tests.gateway_process import GatewayProcess, cleanup, start_gateway

# Provider keys the gateway is given; tests check none of them ever reaches a client.
SECRETS = {
    "TEST_OPENAI_KEY": "sk-test-openai-SECRET-1234",
    "TEST_AZURE_KEY": "azure-SECRET-5678",
    "TEST_ANTHROPIC_KEY": "sk-ant-SECRET-9012",
    "TEST_GEMINI_KEY": "gemini-SECRET-3456",
}

# Endpoint name -> destination, for a fake upstream at {fake}. The upstream model picks the fake's
# scenario, so "<endpoint>--<scenario>" endpoints are generated from these.
PROVIDER_DESTINATIONS = {
    "openai": {"provider": "openai", "model": "gpt-4o-mini", "base_url": "{fake}/v1", "api_key": "${TEST_OPENAI_KEY}"},
    "compat": {"provider": "openai_compatible", "model": "llama-3.1-8b", "base_url": "{fake}/v1"},
    "azure": {"provider": "azure_openai", "model": "gpt-4o", "base_url": "{fake}", "api_key": "${TEST_AZURE_KEY}"},
    "anthropic": {"provider": "anthropic", "model": "claude-sonnet-4-5", "base_url": "{fake}", "api_key": "${TEST_ANTHROPIC_KEY}"},
    "gemini": {"provider": "gemini", "model": "gemini-2.5-flash", "base_url": "{fake}", "api_key": "${TEST_GEMINI_KEY}"},
}
EMBEDDING_PROVIDERS = ("openai", "compat", "azure", "gemini")
SCENARIOS = ("error-400", "error-401", "error-429", "error-500", "error-529", "hang", "drop", "slow-400", "stream-error")
MAX_REQUEST_BYTES = 1024 * 1024


def gateway_config(fake_url: str) -> str:
    endpoints = []
    for name, template in PROVIDER_DESTINATIONS.items():
        destination = {k: v.replace("{fake}", fake_url) for k, v in template.items()}
        tasks = ["chat", "embeddings"] if name in EMBEDDING_PROVIDERS else ["chat"]
        endpoints.append({"name": name, "task": tasks, "destinations": [destination]})
        for scenario in SCENARIOS:
            timeout = 1.5 if scenario == "hang" else 30
            endpoints.append(
                {"name": f"{name}--{scenario}", "task": tasks, "destinations": [{**destination, "model": scenario, "timeout": timeout}]}
            )
    endpoints.append(
        {
            "name": "unreachable",
            "destinations": [{"provider": "openai_compatible", "model": "m", "base_url": "http://127.0.0.1:9/v1", "timeout": 5}],
        }
    )
    config = {"server": {"max_request_bytes": MAX_REQUEST_BYTES, "token_refresh_seconds": 0.5}, "endpoints": endpoints}
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="session")
def gateway(fake_upstream) -> Iterator[GatewayProcess]:  # noqa: F811
    process = start_gateway(gateway_config(fake_upstream.url), env=SECRETS)
    try:
        yield process
    finally:
        cleanup(process)
