"""``QueryEmbeddingCache``: the vectors of recent questions, so a repeated question skips the model."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from app.embedding.protocol import Embedder

__all__ = ["QueryEmbeddingCache"]


class QueryEmbeddingCache:
    """An ``Embedder`` that remembers the vectors of the last ``size`` texts it embedded.

    For questions, not for ingestion (whose texts are seen once): the retriever gets it, the
    ingest runner the model itself. One instance wraps one model, so a vector is never served
    for another model. Under an ``EmbeddingBatcher`` (the retriever's) a batch's misses are
    embedded in one call. Thread-safe: the batcher and blocking callers embed on their own
    threads; the lock guards the dictionary only, never the model call.
    """

    def __init__(self, embedder: Embedder, size: int) -> None:
        if size < 1:
            raise ValueError(f"a query embedding cache holds at least one vector, not {size}")
        self.embedder = embedder
        self.size = size
        self.model_name = embedder.model_name
        self.dimension = embedder.dimension
        self.max_tokens = embedder.max_tokens
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._vectors)

    def cached(self, texts: Sequence[str]) -> np.ndarray | None:
        """The vectors of ``texts`` when the cache holds every one (counted as hits), else None
        (nothing counted): a caller that queues model calls (``EmbeddingBatcher``) answers a
        repeated question at once and queues only the rest."""
        with self._lock:
            vectors = [self._vectors.get(text) for text in texts]
            if not texts or any(vector is None for vector in vectors):
                return None
            for text in texts:
                self._vectors.move_to_end(text)
            self.hits += len(texts)
        return np.stack([vector for vector in vectors if vector is not None])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
            self.hits += sum(1 for text in texts if text in found)
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            fresh = self.embedder.embed(missing)
            with self._lock:
                self.misses += len(missing)
                for text, vector in zip(missing, fresh, strict=True):
                    # Read-only and a copy: a caller changing its array must not change the cache.
                    kept = np.array(vector, dtype=np.float32)
                    kept.flags.writeable = False
                    found[text] = self._vectors[text] = kept
                    self._vectors.move_to_end(text)
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[text] for text in texts])

    def count(self, text: str) -> int:
        return self.embedder.count(text)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self.embedder.offsets(text)
