"""What the rest of kb needs of a store, and what a store needs of its engine.

``SearchStore`` is the read side retrieval uses; ``KnowledgeStore`` adds what ingestion writes
and checks. ``QdrantStore`` (an open store) implements both, and ``StoreConnection`` (one opened
on demand) the read side. Below them, ``StoreClient`` is the engine seam: the calls
``QdrantStore`` makes, in qdrant-client's models. Two adapters satisfy it: ``QdrantClient`` itself
(a server or cluster by ``QDRANT_URL``, or qdrant-client's local mode) and ``EdgeClient``
(``app.store.edge``: Qdrant Edge in-process, the embedded default). One contract suite runs the
store over both (tests/integration/test_store_contract.py). Beside them, ``SearchPath`` is how
``QdrantStore`` searches, chosen once per engine: ``EdgeSearch`` (``app.store.edge_search``) on
Edge, ``ClientSearch`` (``app.store.client_search``) on every other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from qdrant_client import models
from qdrant_client.http import models as rest

from app.records import ChunkRecord, SearchHit, SparseTerms

if TYPE_CHECKING:
    from app.store.qdrant import DocumentState

__all__ = ["KnowledgeStore", "SearchPath", "SearchStore", "StoreClient"]


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
        sparse_limit: int | None = None,
        known: Mapping[str, SearchHit] | None = None,
    ) -> tuple[list[SearchHit], list[SearchHit]]:
        """Dense and lexical candidates in one round trip: ``(dense_hits, lexical_hits)``. With
        ``with_sparse`` the dense hits carry their sparse vectors (the best ``sparse_limit`` of
        them, when given); ``known`` hits (by point id) need not be fetched again."""
        ...

    def sample_sparse(self, limit: int, *, query_filter: models.Filter | None = None) -> list[SparseTerms]:
        """The sparse vectors of up to ``limit`` points that pass ``query_filter``, for corpus
        statistics."""
        ...

    def close(self) -> None: ...


class KnowledgeStore(SearchStore, Protocol):
    """A collection ingestion writes: the model check, tenants' documents, their states."""

    @property
    def location(self) -> str:
        """Where the store is, for messages (a folder or a server URL)."""
        ...

    def ensure_collection(self, *, model_name: str, dimension: int, lexical_version: str = "") -> None: ...

    def check_model(self, *, model_name: str, dimension: int) -> None: ...

    def count(self) -> int: ...

    def upsert(
        self, records: Sequence[ChunkRecord], dense: np.ndarray, sparse: Sequence[SparseTerms], *, tenant: str
    ) -> None: ...

    def delete_document(self, doc_id: str, *, tenant: str, keep_hash: str | None = None) -> None: ...

    def set_source(self, doc_ids: Sequence[str], *, name: str, root: str, tenant: str) -> None: ...

    def claim_untenanted(self, tenant: str) -> int: ...

    def document_states(
        self, *, tenant: str, include_untenanted: bool = False
    ) -> dict[str, DocumentState]: ...


class SearchPath(Protocol):
    """How ``QdrantStore.search`` reaches its engine: one implementation per kind of engine,
    given its client, collection and search parameters when the store is made."""

    def search(
        self,
        *,
        dense: np.ndarray | None,
        sparse: SparseTerms | None,
        limit: int,
        query_filter: models.Filter | None = None,
        with_sparse: bool = False,
        sparse_limit: int | None = None,
        known: Mapping[str, SearchHit] | None = None,
    ) -> tuple[list[SearchHit], list[SearchHit]]:
        """``SearchStore.search``, with the same arguments and the same hits on every engine."""
        ...


class StoreClient(Protocol):
    """The engine calls ``QdrantStore`` makes, as ``QdrantClient`` spells them.

    Parameters are the ones the store passes; results are qdrant-client models. Writes return
    an acknowledgement nobody reads (``UpdateResult`` from a client).
    """

    def collection_exists(self, collection_name: str) -> bool: ...

    def create_collection(
        self,
        collection_name: str,
        *,
        vectors_config: Any = None,
        sparse_vectors_config: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> bool: ...

    def delete_collection(self, collection_name: str) -> bool: ...

    def get_collection(self, collection_name: str) -> models.CollectionInfo: ...

    def create_payload_index(
        self, collection_name: str, *, field_name: str, field_schema: Any = None
    ) -> object: ...

    def upsert(
        self, collection_name: str, *, points: Sequence[models.PointStruct], wait: bool = True
    ) -> object: ...

    def delete(self, collection_name: str, *, points_selector: Any, wait: bool = True) -> object: ...

    def set_payload(
        self,
        collection_name: str,
        *,
        payload: dict[str, Any],
        points: Any,
        key: str | None = None,
        wait: bool = True,
    ) -> object: ...

    def count(
        self, collection_name: str, *, count_filter: models.Filter | None = None, exact: bool = True
    ) -> models.CountResult: ...

    def scroll(
        self,
        collection_name: str,
        *,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        offset: Any = None,
        with_payload: Any = True,
        with_vectors: Any = False,
    ) -> tuple[list[models.Record], Any]: ...

    def query_batch_points(
        self, collection_name: str, *, requests: Sequence[models.QueryRequest]
    ) -> list[rest.QueryResponse]: ...

    def close(self) -> None: ...
