"""Choosing a provider by name. A new provider is one class plus one line here."""

from __future__ import annotations

from collections.abc import Callable

from app.errors import ConfigError
from app.generation.anthropic import AnthropicProvider
from app.generation.base import ModelProvider
from app.generation.extractive import ExtractiveProvider
from app.generation.openai import OpenAIProvider
from app.settings import Settings

__all__ = ["PROVIDERS", "build_provider"]

PROVIDERS: dict[str, Callable[[Settings], ModelProvider]] = {
    "anthropic": lambda s: AnthropicProvider(s.generation, api_key=_require_key(s)),
    "extractive": lambda s: ExtractiveProvider(s.generation),
    "openai": lambda s: OpenAIProvider(s.generation, api_key=s.secrets.openai_api_key),
}


def _require_key(settings: Settings) -> str:
    if not settings.secrets.anthropic_api_key:
        raise ConfigError("generation.provider = 'anthropic' needs ANTHROPIC_API_KEY in the environment")
    return settings.secrets.anthropic_api_key


def build_provider(settings: Settings) -> ModelProvider:
    """``auto`` picks Anthropic when an API key is present, else the offline extractive answerer."""
    name = settings.generation.provider
    if name == "auto":
        name = "anthropic" if settings.secrets.anthropic_api_key else "extractive"
    try:
        factory = PROVIDERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown generation.provider {name!r}; known: {', '.join(sorted(PROVIDERS))}"
        ) from None
    return factory(settings)
