"""The provider contract: one abstract method, ``stream``.

A provider turns a built ``Prompt`` into a stream of ``TextDelta`` items, and may yield one
``Usage`` item (usually last). It raises ``ProviderError`` with a code and ``retryable`` flag on
failure. When the consumer stops iterating (client gone), the provider's generator is closed or
cancelled and it must release the upstream call at once (``async with`` around the upstream
stream does that).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import ClassVar, Literal

import msgspec

from app.records import ScoredChunk

__all__ = ["Message", "ModelProvider", "Prompt", "RetrievalStatus", "TextDelta", "Usage"]

RetrievalStatus = Literal["ok", "empty", "timeout", "error"]


class Message(msgspec.Struct, frozen=True):
    role: Literal["user", "assistant"]
    content: str


class Prompt(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered prompt plus the structured inputs it was rendered from."""

    version: str
    """Template version that produced it, e.g. "v1"."""

    system: str
    messages: tuple[Message, ...]
    question: str
    retrieval_status: RetrievalStatus
    context: tuple[ScoredChunk, ...] = ()
    """Chunks in the prompt, in order; source number n is ``context[n - 1]``."""


class TextDelta(msgspec.Struct, frozen=True):
    text: str


class Usage(msgspec.Struct, frozen=True):
    input_tokens: int
    output_tokens: int


class ModelProvider(ABC):
    """Base class of model providers. Subclasses set ``name`` and implement ``stream``."""

    name: ClassVar[str]
    model: str

    @abstractmethod
    def stream(self, prompt: Prompt) -> AsyncIterator[TextDelta | Usage]:
        """Stream the answer to ``prompt``."""

    async def aclose(self) -> None:
        """Release clients and connections (called at app shutdown)."""
