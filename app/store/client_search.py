"""The generic search path: one ``query_batch_points`` call of qdrant-client requests.

What ``QdrantStore.search`` runs on every engine but Qdrant Edge (a server or cluster, and
qdrant-client's local mode): the dense and the lexical request go in one batch, and every hit
comes back as a qdrant-client ``ScoredPoint`` with its payload and vectors. Nothing is kept
between searches: over the wire there is nothing to gain by it. Edge has a path of its own
(``app.store.edge_search``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import msgspec
import numpy as np
from qdrant_client import models

from app.records import ChunkRecord, SearchHit, SparseTerms
from app.store.names import DENSE, SPARSE
from app.store.protocol import StoreClient

__all__ = ["ClientSearch", "point_sparse"]


class ClientSearch:
    """``search`` through any ``StoreClient``, in qdrant-client's models."""

    def __init__(self, client: StoreClient, collection: str, *, params: models.SearchParams | None) -> None:
        """``params``: the search parameters of dense queries (HNSW beam, quantization), or
        None to leave them to the engine."""
        self.client = client
        self.collection = collection
        self._params = params

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
        """``QdrantStore.search``: ``(dense_hits, lexical_hits)``. ``known`` is not used: every
        hit comes with its data in the one call anyway."""
        requests = self._requests(
            dense,
            sparse,
            limit=limit,
            query_filter=query_filter,
            dense_vectors=[DENSE, SPARSE] if with_sparse else [DENSE],
        )
        if not requests:
            return [], []
        responses = self.client.query_batch_points(self.collection, requests=requests)
        results = [[_hit(point) for point in response.points] for response in responses]
        dense_hits = results.pop(0) if dense is not None else []
        lexical_hits = results.pop(0) if results else []
        if with_sparse and sparse_limit is not None:
            dense_hits = [
                hit if n < sparse_limit else dataclasses.replace(hit, sparse=None)
                for n, hit in enumerate(dense_hits)
            ]
        return dense_hits, lexical_hits

    def _requests(
        self,
        dense: np.ndarray | None,
        sparse: SparseTerms | None,
        *,
        limit: int,
        query_filter: models.Filter | None,
        dense_vectors: list[str],
    ) -> list[models.QueryRequest]:
        """The dense and the lexical request of one search, each left out without its query:
        dense hits carry their payload and ``dense_vectors``; lexical hits their payload and
        dense vector."""
        requests: list[models.QueryRequest] = []
        if dense is not None:
            requests.append(
                models.QueryRequest(
                    query=dense.tolist(),
                    using=DENSE,
                    limit=limit,
                    filter=query_filter,
                    params=self._params,
                    with_payload=True,
                    with_vector=dense_vectors,
                )
            )
        if sparse is not None and len(sparse):
            requests.append(
                models.QueryRequest(
                    query=models.SparseVector(indices=sparse.indices, values=sparse.values),
                    using=SPARSE,
                    limit=limit,
                    filter=query_filter,
                    with_payload=True,
                    with_vector=[DENSE],
                )
            )
        return requests


def point_sparse(vector: object) -> SparseTerms | None:
    """The sparse terms among a qdrant-client point's named vectors, None when it has none
    (also what ``QdrantStore.sample_sparse`` reads of the points it scrolls)."""
    if isinstance(vector, dict) and isinstance(found := vector.get(SPARSE), models.SparseVector):
        return SparseTerms(list(found.indices), list(found.values))
    return None


def _hit(point: models.ScoredPoint) -> SearchHit:
    vector = None
    if isinstance(point.vector, dict) and DENSE in point.vector:
        vector = np.asarray(point.vector[DENSE], dtype=np.float32)
    return SearchHit(
        record=msgspec.convert(point.payload, ChunkRecord),
        score=float(point.score),
        vector=vector,
        sparse=point_sparse(point.vector),
    )
