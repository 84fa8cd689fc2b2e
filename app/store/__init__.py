"""The vector store: Qdrant, embedded (Qdrant Edge, the default) or a server/cluster (``QDRANT_URL``).

``open_store`` is the way in (``app.store.opening``: which engine); ``QdrantStore`` the store
over any engine (``app.store.protocol``: the seams); ``filter_for`` turns a caller's tenant
and request filters into store conditions (``app.store.tenants``: whose documents are whose).
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
from app.store.opening import LegacyStoreError, edge_path, open_store
from app.store.protocol import KnowledgeStore, SearchStore, StoreClient
from app.store.qdrant import DENSE, SPARSE, DocumentState, QdrantStore
from app.store.tenants import (
    DEFAULT_TENANT,
    SHARED_TENANT,
    TENANT_FIELD,
    TenantError,
    tenant_condition,
    valid_tenant,
    visible_tenants,
)

__all__ = [
    "DEFAULT_TENANT",
    "DENSE",
    "MAX_FILTER_PATH_CHARS",
    "MAX_FILTER_SOURCES",
    "SHARED_TENANT",
    "SPARSE",
    "TENANT_FIELD",
    "DocumentState",
    "KnowledgeStore",
    "LegacyStoreError",
    "QdrantStore",
    "RetrievalFilters",
    "SearchStore",
    "StoreClient",
    "TenantError",
    "edge_path",
    "filter_for",
    "normalise_prefix",
    "open_store",
    "path_prefixes",
    "tenant_condition",
    "valid_tenant",
    "visible_tenants",
]
