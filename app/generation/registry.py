"""Choosing a provider by name. A new provider is one class plus one line here."""

from __future__ import annotations

from collections.abc import Callable

from app.errors import ConfigError
from app.generation.anthropic import AnthropicProvider
from app.generation.base import ModelProvider
from app.generation.extractive import ExtractiveProvider, SentenceEmbedder
from app.generation.openai import OpenAIProvider
from app.settings import Settings

__all__ = ["PROVIDERS", "build_provider"]

PROVIDERS: dict[str, Callable[[Settings, SentenceEmbedder | None], ModelProvider]] = {
    "anthropic": lambda s, _embedder: AnthropicProvider(s.generation, api_key=_require_key(s)),
    "extractive": lambda s, embedder: ExtractiveProvider(s.generation, embedder=embedder),
    "openai": lambda s, _embedder: OpenAIProvider(s.generation, api_key=s.secrets.openai_api_key),
}
"""name -> factory of (settings, the loaded embedding model or None)."""


def _require_key(settings: Settings) -> str:
    if not settings.secrets.anthropic_api_key:
        raise ConfigError("generation.provider = 'anthropic' needs ANTHROPIC_API_KEY in the environment")
    return settings.secrets.anthropic_api_key


def build_provider(settings: Settings, *, embedder: SentenceEmbedder | None = None) -> ModelProvider:
    """``auto`` picks Anthropic when an API key is present, else the offline extractive answerer.

    ``embedder`` is the service's loaded model: the extractive answerer scores sentences by
    meaning with it (by words alone without it).
    """
    name = settings.generation.provider
    if name == "auto":
        name = "anthropic" if settings.secrets.anthropic_api_key else "extractive"
    try:
        factory = PROVIDERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown generation.provider {name!r}; known: {', '.join(sorted(PROVIDERS))}"
        ) from None
    return factory(settings, embedder)
