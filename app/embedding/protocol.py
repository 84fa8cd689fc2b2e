"""The embedder contract the rest of the code depends on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from app.text.tokens import Tokenizer

__all__ = ["Embedder"]


class Embedder(Tokenizer, Protocol):
    """Turns texts into L2-normalised vectors."""

    model_name: str
    dimension: int
    max_tokens: int
    """Longest input the model reads, special tokens excluded; longer input is cut by the model."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of shape ``(len(texts), dimension)``, float32, unit length."""
        ...
