"""Shared fixtures. The real embedding model is loaded once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest

from app.embedding import SentenceTransformerEmbedder
from app.settings import EmbeddingSettings


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real default model (all-MiniLM-L6-v2 from the offline package)."""
    return SentenceTransformerEmbedder(EmbeddingSettings())
