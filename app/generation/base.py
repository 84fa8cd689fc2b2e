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
from typing import ClassVar

import msgspec

from app.prompting import Prompt

__all__ = ["ModelProvider", "TextDelta", "Usage"]


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

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release clients and connections (called at app shutdown)."""
