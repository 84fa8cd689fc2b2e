"""Dense embeddings with sentence-transformers.

``Embedder`` (``protocol``) is the contract the rest of the code depends on;
``SentenceTransformerEmbedder`` (``sentence_transformers``) the real adapter;
``QueryEmbeddingCache`` (``cache``) keeps the vectors of recent questions (an LRU per embedder,
hence per model) so that a repeated question skips the model.
"""

from __future__ import annotations

from app.embedding.cache import QueryEmbeddingCache
from app.embedding.protocol import Embedder
from app.embedding.sentence_transformers import SentenceTransformerEmbedder, resolve_model_location

__all__ = ["Embedder", "QueryEmbeddingCache", "SentenceTransformerEmbedder", "resolve_model_location"]
