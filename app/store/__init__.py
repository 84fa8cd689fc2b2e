"""The vector store: Qdrant, embedded (the default) or a server/cluster (``QDRANT_URL``).

``open_store`` is the way in; ``QdrantStore`` the adapter; ``filter_for`` turns request filters
into store conditions.
"""

from __future__ import annotations

from app.store.filters import (
    MAX_FILTER_PATH_CHARS,
    MAX_FILTER_SOURCES,
    RetrievalFilters,
    filter_for,
    normalise_prefix,
    path_prefixes,
)
from app.store.protocol import SearchStore
from app.store.qdrant import DENSE, SPARSE, DocumentState, QdrantStore, open_store

__all__ = [
    "DENSE",
    "MAX_FILTER_PATH_CHARS",
    "MAX_FILTER_SOURCES",
    "SPARSE",
    "DocumentState",
    "QdrantStore",
    "RetrievalFilters",
    "SearchStore",
    "filter_for",
    "normalise_prefix",
    "open_store",
    "path_prefixes",
]
