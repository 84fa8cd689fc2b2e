"""Small builders of domain records for tests, and the simplest real ``Embedder``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.records import ChunkRecord, SparseTerms


def chunk_record(
    point_id: str, *, text: str, title: str, source: str, heading_path: tuple[str, ...] = ()
) -> ChunkRecord:
    """A one-chunk document's record; the fields a test does not care about are fixed."""
    return ChunkRecord(
        point_id=point_id,
        doc_id=f"doc-{point_id}",
        source=source,
        title=title,
        heading_path=heading_path,
        chunk_index=0,
        chunk_count=1,
        text=text,
        doc_hash="h",
        text_hash=f"t-{point_id}",
        ingested_at="2024-01-01T00:00:00Z",
    )


class ConstantEmbedder:
    """An ``Embedder`` giving every text the same unit vector: for tests of what happens around
    the model (admission, timeouts), where the vectors do not matter."""

    model_name = "constant-test-vectors"
    dimension = 3
    max_tokens = 256

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.full((len(texts), 3), 3.0**-0.5, dtype=np.float32)

    def count(self, text: str) -> int:
        return len(text.split())

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def unit_vectors(n: int, dimension: int, *, seed: int) -> np.ndarray:
    """``n`` seeded random unit vectors (float32): dense vectors for store tests, no model."""
    found = np.random.default_rng(seed).normal(size=(n, dimension)).astype(np.float32)
    unit: np.ndarray = found / np.linalg.norm(found, axis=1, keepdims=True)
    return unit


def sparse_terms(n: int, *, seed: int, vocabulary: int, size: int) -> list[SparseTerms]:
    """``n`` seeded sparse vectors of ``size`` distinct terms below ``vocabulary``. Real-valued
    weights: BM25 scores of distinct chunks do not tie, so rankings compare as lists."""
    rng = np.random.default_rng(seed)
    return [
        SparseTerms(
            sorted(rng.choice(vocabulary, size=size, replace=False).tolist()),
            [float(v) for v in rng.uniform(0.5, 3.0, size=size)],
        )
        for _ in range(n)
    ]
