"""The unified embeddings and models API end to end, through the official `openai` SDK."""

from __future__ import annotations

import math

import openai
import pytest
import requests

from tests.conftest import EMBEDDING_PROVIDERS

PROVIDERS = [*EMBEDDING_PROVIDERS, "demo"]


@pytest.fixture
def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/mlflow/v1", api_key=gateway.admin_token, max_retries=0)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_embeddings_float_and_base64_agree(client, provider):
    texts = ["the quick brown fox", "jumps over"]
    as_float = client.embeddings.create(model=provider, input=texts, encoding_format="float")
    as_base64 = client.embeddings.create(model=provider, input=texts)  # the SDK asks for base64 by default
    assert [d.index for d in as_float.data] == [0, 1]
    for a, b in zip(as_float.data, as_base64.data):
        assert len(a.embedding) == len(b.embedding) > 0
        assert all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6) for x, y in zip(a.embedding, b.embedding))
    assert as_float.data[0].embedding != as_float.data[1].embedding
    assert as_float.usage.prompt_tokens > 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_embeddings_single_string_and_dimensions(client, provider):
    reply = client.embeddings.create(model=provider, input="one text", dimensions=4, encoding_format="float")
    assert len(reply.data) == 1 and len(reply.data[0].embedding) == 4


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_embeddings_async(gateway, provider):
    client = openai.AsyncOpenAI(base_url=gateway.url + "/mlflow/v1", api_key=gateway.admin_token, max_retries=0)
    reply = await client.embeddings.create(model=provider, input=["a", "b", "c"])
    assert len(reply.data) == 3


def test_embeddings_passthrough_sends_what_the_client_sent(client, fake_upstream):
    fake_upstream.clear()
    client.embeddings.create(model="openai", input=[[1, 2, 3]], encoding_format="float", extra_body={"custom": 1})
    sent = fake_upstream.requests[-1]["json"]
    assert sent == {"model": "gpt-4o-mini", "input": [[1, 2, 3]], "encoding_format": "float", "custom": 1}


def test_embeddings_errors(client, gateway):
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")
    response = requests.post(
        gateway.url + "/mlflow/v1/embeddings",
        headers={"Authorization": f"Bearer {gateway.admin_token}"},
        json={"model": "demo"},
        timeout=10,
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "input"
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="openai--error-429", input="x")


def test_models_lists_endpoints(client):
    ids = {m.id for m in client.models.list()}
    assert {"demo", "openai", "anthropic", "gemini", "compat", "azure"} <= ids
