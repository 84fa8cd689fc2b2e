"""The vector store: Qdrant, embedded (the default) or a server/cluster (``QDRANT_URL``).

``open_store`` is the way in; ``QdrantStore`` the adapter; ``filter_for`` turns request filters
into store conditions.
"""

from __future__ import annotations

from app.store.filters import RetrievalFilters, filter_for, normalise_prefix, path_prefixes
from app.store.qdrant import DENSE, SPARSE, DocumentState, QdrantStore, open_store

__all__ = [
    "DENSE",
    "SPARSE",
    "DocumentState",
    "QdrantStore",
    "RetrievalFilters",
    "filter_for",
    "normalise_prefix",
    "open_store",
    "path_prefixes",
]
