"""Provider kinds by the name used in configuration. Adding a provider: one module, one line here."""

from __future__ import annotations

from aigw.providers.anthropic import AnthropicProvider
from aigw.providers.base import Provider
from aigw.providers.demo import DemoProvider
from aigw.providers.gemini import GeminiProvider
from aigw.providers.openai import AzureOpenAIProvider, OpenAICompatibleProvider, OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    provider.kind: provider
    for provider in (
        OpenAIProvider,
        AzureOpenAIProvider,
        OpenAICompatibleProvider,
        AnthropicProvider,
        GeminiProvider,
        DemoProvider,
    )
}
