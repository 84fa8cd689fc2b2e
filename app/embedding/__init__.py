"""Dense embeddings with sentence-transformers.

``Embedder`` (``protocol``) is the contract the rest of the code depends on;
``SentenceTransformerEmbedder`` (``sentence_transformers``) the real adapter on torch, and
``OnnxEmbedder`` (``onnx``) the same model exported to ONNX (``export``); ``build_embedder``
(``factory``) picks one by ``embedding.backend``;
``QueryEmbeddingCache`` (``cache``) keeps the vectors of recent questions (an LRU per embedder,
hence per model) so that a repeated question skips the model; ``EmbeddingBatcher``
(``batching``) gathers questions that arrive together into one model call, and its
``background`` lane (``BackgroundEmbedder``) queues other work on the model behind them.
"""

from __future__ import annotations

from app.embedding.batching import BackgroundEmbedder, EmbeddingBatcher, EmbeddingExpired
from app.embedding.cache import QueryEmbeddingCache
from app.embedding.factory import build_embedder
from app.embedding.onnx import OnnxEmbedder
from app.embedding.protocol import Embedder
from app.embedding.sentence_transformers import SentenceTransformerEmbedder, resolve_model_location

__all__ = [
    "BackgroundEmbedder",
    "Embedder",
    "EmbeddingBatcher",
    "EmbeddingExpired",
    "OnnxEmbedder",
    "QueryEmbeddingCache",
    "SentenceTransformerEmbedder",
    "build_embedder",
    "resolve_model_location",
]
