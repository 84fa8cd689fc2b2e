"""What retrieval needs of a store: the read side, as a protocol both adapters satisfy.

``QdrantStore`` (an open store) and ``StoreConnection`` (one opened on demand) implement it, and
so will any other engine's adapter.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from qdrant_client import models

from app.records import SearchHit, SparseTerms

__all__ = ["SearchStore"]


class SearchStore(Protocol):
    """Searching one collection of chunks with dense and sparse vectors."""

    def exists(self) -> bool:
        """Whether the collection exists. Raises ``StoreUnavailableError`` when unreachable."""
        ...

    def search(
        self,
        *,
        dense: np.ndarray | None,
        sparse: SparseTerms | None,
        limit: int,
        query_filter: models.Filter | None = None,
        with_sparse: bool = False,
    ) -> tuple[list[SearchHit], list[SearchHit]]:
        """Dense and lexical candidates in one round trip: ``(dense_hits, lexical_hits)``."""
        ...

    def sample_sparse(self, limit: int) -> list[SparseTerms]:
        """The sparse vectors of up to ``limit`` points, for corpus statistics."""
        ...

    def close(self) -> None: ...
