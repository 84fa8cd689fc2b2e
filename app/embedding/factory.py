"""``build_embedder``: the embedder ``embedding.backend`` asks for, with its exports in the data folder."""

from __future__ import annotations

from pathlib import Path

from app.embedding.onnx import OnnxEmbedder
from app.embedding.protocol import Embedder
from app.embedding.sentence_transformers import SentenceTransformerEmbedder
from app.settings import Settings

__all__ = ["build_embedder", "models_path"]


def models_path(settings: Settings) -> Path:
    """Where the ONNX exports live: ``<data_dir>/models``."""
    return settings.data_path / "models"


def build_embedder(settings: Settings) -> Embedder:
    """The real embedder for ``settings.embedding`` (torch, or an ONNX export made on first use).

    Raises ``EmbeddingModelError`` when the model, its export or the device is not available.
    """
    if settings.embedding.backend == "torch":
        return SentenceTransformerEmbedder(settings.embedding)
    return OnnxEmbedder(settings.embedding, models_dir=models_path(settings))
