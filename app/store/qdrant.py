"""The store: one collection per knowledge base, dense + sparse vectors per chunk.

The same code runs on every engine (``app.store.protocol.StoreClient``): Qdrant Edge in-process
(the default, ``app.store.edge``), a Qdrant server or cluster (``QDRANT_URL``), or qdrant-client's
local mode (``store.engine = "local"``); ``app.store.opening`` picks one. The collection's metadata records the embedding model
and dimension that filled it; opening it with another model is refused. Every write names the
tenant it writes for, and touches that tenant's chunks only (``app.store.tenants``).

On a server, the collection is created with the layout of ``store.cluster`` (``CollectionLayout``:
shards, replication, on-disk storage, HNSW, quantization). Several ``kb ingest --shard`` processes
may create it at once; the ones that lose that race take "already exists" as success and check
the model the winner recorded.

Searches go through a search path chosen with the engine (``app.store.protocol.SearchPath``):
on Edge ``app.store.edge_search`` (and its point cache), elsewhere ``app.store.client_search``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from qdrant_client import models

from app.errors import KBError, ModelMismatchError, StoreUnavailableError
from app.records import ChunkRecord, SearchHit, SparseTerms
from app.store.client_search import ClientSearch, point_sparse
from app.store.edge import EdgeClient
from app.store.edge_search import POINT_CACHE, EdgeSearch
from app.store.filters import path_prefixes
from app.store.names import DENSE, SPARSE
from app.store.protocol import SearchPath, StoreClient
from app.store.tenants import TENANT_FIELD, owned_by, untenanted

__all__ = ["DENSE", "POINT_CACHE", "SPARSE", "CollectionLayout", "DocumentState", "QdrantStore"]

_STATE_FIELDS = ["doc_id", "doc_hash", "chunk_count", "source", "source_name", "source_root"]
# Keyword indexes a server builds for the payload fields that filters and deletes match on; the
# tenant's is the multitenancy one (points of a tenant stored together, Qdrant 1.11+).
_INDEXES: dict[str, models.PayloadSchemaType | models.KeywordIndexParams] = {
    "doc_id": models.PayloadSchemaType.KEYWORD,
    "source": models.PayloadSchemaType.KEYWORD,
    "path_prefixes": models.PayloadSchemaType.KEYWORD,
    TENANT_FIELD: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
}
# Document ids per re-binding request: one filter condition each, kept to a modest size.
_SET_SOURCE_BATCH = 512


@dataclass(frozen=True, slots=True)
class CollectionLayout:
    """How a server lays out a collection it creates, and the quantization searches ask for.

    The default asks for nothing (the engine's own defaults): what the embedded engines get,
    which take none of these. ``app.store.opening`` builds a server's from ``store.cluster``.
    """

    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_payload: bool | None = None
    on_disk_vectors: bool | None = None
    hnsw: models.HnswConfigDiff | None = None
    quantization: models.ScalarQuantization | None = None
    search: models.QuantizationSearchParams | None = None
    """Query-time quantization parameters (rescoring, oversampling); with ``quantization`` only."""

    def create_options(self) -> dict[str, Any]:
        """The ``create_collection`` arguments beyond the vectors: only those that are set, so
        an engine that takes none of them (Edge) is called as before."""
        options: dict[str, Any] = {
            "shard_number": self.shard_number,
            "replication_factor": self.replication_factor,
            "write_consistency_factor": self.write_consistency_factor,
            "on_disk_payload": self.on_disk_payload,
            "hnsw_config": self.hnsw,
            "quantization_config": self.quantization,
        }
        return {name: value for name, value in options.items() if value is not None}


@dataclass(slots=True)
class DocumentState:
    """What the store holds of one document: points per content hash."""

    source: str
    """The document path (``docs/guide/install.md``)."""
    source_name: str | None = None
    """The named source it belongs to; None on chunks written before sources were recorded."""
    source_root: str | None = None
    """The folder that source stood for when it was written; None as for ``source_name``."""
    points: dict[str, int] = field(default_factory=dict)
    """doc_hash → number of points with that hash."""
    expected: dict[str, int] = field(default_factory=dict)
    """doc_hash → chunk_count recorded on those points."""

    def is_complete(self, doc_hash: str) -> bool:
        return doc_hash in self.points and self.points[doc_hash] == self.expected[doc_hash]

    def has_stale(self, doc_hash: str) -> bool:
        return any(h != doc_hash for h in self.points)


class QdrantStore:
    """Chunk storage and search on one Qdrant collection."""

    def __init__(
        self,
        client: StoreClient,
        collection: str,
        *,
        upsert_batch_size: int = 256,
        location: str = "",
        hnsw_ef: int | None = None,
        layout: CollectionLayout | None = None,
        point_cache: int = POINT_CACHE,
    ) -> None:
        """``hnsw_ef`` is the HNSW beam of searches (``store.hnsw_ef``); None leaves it to the
        engine. Exact (unindexed) segments ignore it. ``layout`` is how a server creates the
        collection (``store.cluster``); None asks for nothing beyond the vectors.
        ``point_cache``: on Qdrant Edge, how many points' search data (record, dense vector) the
        store keeps between writes, so that a point found again is not rebuilt; 0 keeps none."""
        self.client = client
        self.collection = collection
        self.location = location or collection
        self._upsert_batch_size = upsert_batch_size
        self.layout = layout or CollectionLayout()
        params = (
            models.SearchParams(hnsw_ef=hnsw_ef, quantization=self.layout.search)
            if hnsw_ef is not None or self.layout.search is not None
            else None
        )
        # The engine is known here, and does not change: its search path is chosen once.
        self._search_path: SearchPath = (
            EdgeSearch(client, collection, params=params, point_cache=point_cache)
            if isinstance(client, EdgeClient)
            else ClientSearch(client, collection, params=params)
        )

    # -- collection lifecycle -------------------------------------------------------------

    def exists(self) -> bool:
        try:
            return bool(self.client.collection_exists(self.collection))
        except Exception as exc:
            raise StoreUnavailableError(f"vector store unreachable ({self.location}): {exc}") from exc

    def ensure_collection(self, *, model_name: str, dimension: int, lexical_version: str = "") -> None:
        """Create the collection for this model, or check that it was filled by this model.

        ``lexical_version`` (the BM25 term extraction's version) is recorded for operators.
        """
        if self.exists():
            self.check_model(model_name=model_name, dimension=dimension)
            self.ensure_indexes()
            return
        dense = models.VectorParams(
            size=dimension, distance=models.Distance.COSINE, on_disk=self.layout.on_disk_vectors
        )
        try:
            self.client.create_collection(
                self.collection,
                vectors_config={DENSE: dense},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                metadata={"embedding_model": model_name, "dimension": dimension, "lexical": lexical_version},
                **self.layout.create_options(),
            )
        except Exception as exc:
            # Another process (``kb ingest --shard`` beside this one) created it between the check
            # above and this call: a server answers "already exists", which is success here, once
            # the collection is seen and was created for this model. The error is recognised by
            # looking again, not by its wording, which differs between engines and versions.
            if not self._created_by_another():
                if isinstance(exc, KBError):
                    raise
                raise StoreUnavailableError(
                    f"cannot create collection {self.collection!r} at {self.location}: {exc}"
                ) from exc
            self.check_model(model_name=model_name, dimension=dimension)
        self.ensure_indexes()

    def _created_by_another(self) -> bool:
        """Whether the collection exists after a failure to create it: another process made it."""
        try:
            return self.exists()
        except StoreUnavailableError:
            return False

    def ensure_indexes(self) -> None:
        """Create the payload indexes that are missing (a collection made by an older version
        lacks the newer ones; creating an existing index changes nothing)."""
        info = self.client.get_collection(self.collection)
        present = set(info.payload_schema or {})
        with warnings.catch_warnings():
            # The embedded store ignores payload indexes and warns so; a server builds them.
            warnings.simplefilter("ignore", UserWarning)
            for name, schema in _INDEXES.items():
                if name not in present:
                    self.client.create_payload_index(self.collection, field_name=name, field_schema=schema)

    def check_model(self, *, model_name: str, dimension: int) -> None:
        """Raise ``ModelMismatchError`` unless the collection was filled by this model."""
        info = self.client.get_collection(self.collection)
        meta = info.config.metadata or {}
        stored_model = meta.get("embedding_model")
        stored_dim = meta.get("dimension")
        if stored_model is None:
            vectors = info.config.params.vectors
            stored_dim = vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None
        if stored_model not in (None, model_name) or (stored_dim is not None and stored_dim != dimension):
            raise ModelMismatchError(
                f"collection {self.collection!r} at {self.location} was filled by embedding model "
                f"{stored_model!r} (dimension {stored_dim}); the configured model is {model_name!r} "
                f"(dimension {dimension}). Use the same model, or ingest into another collection "
                "(store.collection / KB_STORE__COLLECTION)."
            )

    def drop(self) -> None:
        if self.exists():
            self.client.delete_collection(self.collection)

    def count(self) -> int:
        if not self.exists():
            return 0
        return int(self.client.count(self.collection, exact=True).count)

    def optimize(self) -> bool:
        """Build the HNSW index where the engine leaves it to us (Edge); whether anything
        changed. A server indexes in the background by itself; local mode has no index."""
        if isinstance(self.client, EdgeClient) and self.exists():
            return self.client.optimize(self.collection)
        return False

    def close(self) -> None:
        # Closing a broken connection must not mask the real error.
        with contextlib.suppress(Exception):
            self.client.close()

    # -- writes ---------------------------------------------------------------------------

    def upsert(
        self,
        records: Sequence[ChunkRecord],
        dense: np.ndarray,
        sparse: Sequence[SparseTerms],
        *,
        tenant: str,
    ) -> None:
        """Write chunks of ``tenant``'s documents (their point ids already say whose they are)."""
        if not (len(records) == len(dense) == len(sparse)):
            raise ValueError("records, dense and sparse vectors must have the same length")
        step = self._upsert_batch_size
        for start in range(0, len(records), step):
            points = [
                models.PointStruct(
                    id=record.point_id,
                    vector={
                        DENSE: vector.tolist(),
                        SPARSE: models.SparseVector(indices=terms.indices, values=terms.values),
                    },
                    payload=_payload(record, tenant),
                )
                for record, vector, terms in zip(
                    records[start : start + step],
                    dense[start : start + step],
                    sparse[start : start + step],
                    strict=True,
                )
            ]
            self.client.upsert(self.collection, points=points, wait=True)

    def delete_document(self, doc_id: str, *, tenant: str, keep_hash: str | None = None) -> None:
        """Delete a document of ``tenant``: its points, or only those whose hash is not ``keep_hash``."""
        must: list[models.Condition] = [
            models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)),
            owned_by(tenant),
        ]
        must_not: list[models.Condition] = []
        if keep_hash is not None:
            must_not.append(models.FieldCondition(key="doc_hash", match=models.MatchValue(value=keep_hash)))
        self.client.delete(
            self.collection,
            points_selector=models.FilterSelector(filter=models.Filter(must=must, must_not=must_not or None)),
            wait=True,
        )

    def set_source(self, doc_ids: Sequence[str], *, name: str, root: str, tenant: str) -> None:
        """Record on every chunk of these documents of ``tenant`` that they belong to source
        ``name`` of folder ``root`` (a folder that moved, or documents written before sources
        were recorded)."""
        for start in range(0, len(doc_ids), _SET_SOURCE_BATCH):
            batch = list(doc_ids[start : start + _SET_SOURCE_BATCH])
            self.client.set_payload(
                self.collection,
                payload={"source_name": name, "source_root": root},
                points=models.FilterSelector(
                    filter=models.Filter(
                        must=[
                            models.FieldCondition(key="doc_id", match=models.MatchAny(any=batch)),
                            owned_by(tenant),
                        ]
                    )
                ),
                wait=True,
            )

    def claim_untenanted(self, tenant: str) -> int:
        """Assign the chunks written before tenants were recorded to ``tenant``; how many there
        were. Idempotent, and one count request once none are left."""
        if not self.exists():
            return 0
        legacy = models.Filter(must=[untenanted()])
        found = int(self.client.count(self.collection, count_filter=legacy, exact=True).count)
        if found:
            self.client.set_payload(
                self.collection,
                payload={TENANT_FIELD: tenant},
                points=models.FilterSelector(filter=legacy),
                wait=True,
            )
        return found

    # -- reads ----------------------------------------------------------------------------

    def document_states(self, *, tenant: str, include_untenanted: bool = False) -> dict[str, DocumentState]:
        """Every document of ``tenant`` (not the shared ones, unless ``tenant`` is the shared
        tenant) with its point counts per content hash, by document id. With
        ``include_untenanted``, chunks that carry no tenant yet count as ``tenant``'s (a dry run
        over a store not claimed yet, see ``claim_untenanted``)."""
        states: dict[str, DocumentState] = {}
        if not self.exists():
            return states
        whose: models.Filter = (
            models.Filter(should=[owned_by(tenant), untenanted()])
            if include_untenanted
            else models.Filter(must=[owned_by(tenant)])
        )
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection,
                scroll_filter=whose,
                limit=1024,
                offset=offset,
                with_payload=_STATE_FIELDS,
                with_vectors=False,
            )
            for point in points:
                payload = point.payload or {}
                state = states.setdefault(payload["doc_id"], DocumentState(source=payload["source"]))
                if state.source_root is None and payload.get("source_root") is not None:
                    state.source_name = str(payload.get("source_name", ""))
                    state.source_root = str(payload["source_root"])
                doc_hash = payload["doc_hash"]
                state.points[doc_hash] = state.points.get(doc_hash, 0) + 1
                state.expected[doc_hash] = int(payload["chunk_count"])
            if offset is None:
                return states

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
        """Dense and lexical candidates in one round trip: ``(dense_hits, lexical_hits)``.

        Every hit carries its dense vector; with ``with_sparse`` the dense hits carry their
        sparse vector too (only the best ``sparse_limit`` of them when it is given). Either query
        may be None (that retriever then returns nothing). ``known``: hits of the same points
        fetched already (by point id, e.g. a dense search's before the lexical one): a lexical
        hit among them takes their record and vector instead of fetching them again.
        """
        return self._search_path.search(
            dense=dense,
            sparse=sparse,
            limit=limit,
            query_filter=query_filter,
            with_sparse=with_sparse,
            sparse_limit=sparse_limit,
            known=known,
        )

    def sample_sparse(self, limit: int, *, query_filter: models.Filter | None = None) -> list[SparseTerms]:
        """The sparse vectors of up to ``limit`` points (no payloads) that pass ``query_filter``
        (a tenant's and the shared ones), for corpus statistics.

        Point ids are hashes, so the first ``limit`` in id order are an unbiased sample.
        """
        if not self.exists():
            return []
        points, _ = self.client.scroll(
            self.collection,
            scroll_filter=query_filter,
            limit=limit,
            with_payload=False,
            with_vectors=[SPARSE],
        )
        return [terms for point in points if (terms := point_sparse(point.vector)) is not None]


def _payload(record: ChunkRecord, tenant: str) -> dict[str, object]:
    payload: dict[str, object] = msgspec.to_builtins(record)
    # Every ancestor of the source path, so "everything under docs/guide" is an exact keyword
    # match (indexable on a server) instead of a substring scan. Not part of ChunkRecord.
    payload["path_prefixes"] = path_prefixes(record.source)
    # Whose chunk it is: what every query filters on. Not part of ChunkRecord either: a reader
    # only ever sees chunks of tenants it may see.
    payload[TENANT_FIELD] = tenant
    return payload
