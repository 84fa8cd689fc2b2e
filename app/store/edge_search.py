"""The Edge search path: ids and scores from the engine, point data built once and kept.

What ``QdrantStore.search`` runs on Qdrant Edge (``app.store.edge``). Searches read the engine's
own points and keep what they built of each (record, dense vector, sparse terms) until the next
write through the same client: a process holds the folder lock, so no other writer can make that
stale. Building those Python objects, not the search, is what a search costs in process, and
questions keep finding the same chunks. Every other engine goes through
``app.store.client_search``; both return the same hits, bit for bit
(tests/integration/test_store_edge_fast.py).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import TypeVar

import msgspec
import numpy as np
from qdrant_client import models

from app.records import ChunkRecord, SearchHit, SparseTerms
from app.store.edge import EdgeClient, Nearest
from app.store.edge_models import dense_array
from app.store.names import DENSE, SPARSE

__all__ = ["POINT_CACHE", "EdgeSearch", "PointCache"]

# Points whose search data an Edge store keeps (``QdrantStore`` ``point_cache``): the chunks
# that questions keep finding, at the memory of a record and a dense vector each.
POINT_CACHE = 4096

_PointData = tuple[ChunkRecord, np.ndarray | None]
_PointId = int | uuid.UUID | str  # as Edge returns them
_K = TypeVar("_K")
_V = TypeVar("_V")


class PointCache:
    """What Edge searches built of their points (record and dense vector, and the sparse vector
    where one was asked for), by Edge point id, for one ``EdgeClient.write_epoch``: a write
    empties it, and nothing is kept while one is under way. Bounded: past ``capacity`` points,
    the oldest are dropped. Thread-safe (the store's search workers share it)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._epoch: int | None = None
        self._points: OrderedDict[_PointId, _PointData] = OrderedDict()
        self._terms: OrderedDict[_PointId, SparseTerms | None] = OrderedDict()
        self._guard = threading.Lock()

    def at(self, epoch: int | None) -> tuple[dict[_PointId, _PointData], dict[_PointId, SparseTerms | None]]:
        """The cached points of ``epoch`` (empty ones when it is not the cache's, or None)."""
        with self._guard:
            if epoch is None or self.capacity <= 0:
                return {}, {}
            if epoch != self._epoch:
                # New dicts, not cleared ones: a search still reading the old ones keeps them.
                self._epoch, self._points, self._terms = epoch, OrderedDict(), OrderedDict()
            return self._points, self._terms

    def keep(
        self,
        read_at: int | None,
        now: int | None,
        points: Mapping[_PointId, _PointData],
        terms: Mapping[_PointId, SparseTerms | None],
    ) -> None:
        """Keep what was read at epoch ``read_at``, if it is still the epoch (``now``) and the
        cache's: data read before a write must not outlive it."""
        if not (points or terms) or read_at is None or read_at != now:
            return
        with self._guard:
            if read_at != self._epoch:
                return
            _bounded_update(self._points, points, self.capacity)
            _bounded_update(self._terms, terms, self.capacity)


class EdgeSearch:
    """``search`` on Qdrant Edge, reading the engine's points directly."""

    def __init__(
        self,
        client: EdgeClient,
        collection: str,
        *,
        params: models.SearchParams | None,
        point_cache: int = POINT_CACHE,
    ) -> None:
        """``params``: the search parameters of dense queries (HNSW beam, quantization), or None
        to leave them to the engine. ``point_cache``: how many points' search data (record,
        dense vector) is kept between writes, so that a point found again is not rebuilt; 0
        keeps none."""
        self.client = client
        self.collection = collection
        self._params = params
        self._cache = PointCache(point_cache)

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
        """``QdrantStore.search``: ``(dense_hits, lexical_hits)``.

        In process, a search costs little next to turning its points into Python objects (a
        payload, 384 floats, a sparse vector each), all of it holding the GIL. So the queries
        return ids and scores only, and each point's data is built once: a point built since the
        last write comes from the point cache; the others are fetched in one call, the sparse
        vectors of the best ``sparse_limit`` dense hits only (of all of them when it is None),
        and a lexical hit the caller knows already (``known``) is taken from there.
        """
        client = self.client
        sparse_limit = (limit if sparse_limit is None else sparse_limit) if with_sparse else 0
        known = known or {}
        lexical = sparse is not None and len(sparse) > 0
        queries: list[Nearest] = []
        if dense is not None:
            queries.append(
                Nearest(
                    dense.tolist(), DENSE, limit, with_payload=False, with_vector=False, params=self._params
                )
            )
        if sparse is not None and lexical:
            queries.append(Nearest(sparse, SPARSE, limit, with_payload=False, with_vector=False))
        if not queries:
            return [], []
        epoch = client.write_epoch
        cached, cached_terms = self._cache.at(epoch)
        responses = client.query_points(self.collection, queries=queries, query_filter=query_filter)
        # Each property of an Edge point builds its Python value anew: read each once.
        dense_scored = [(point.id, point.score) for point in responses[0]] if dense is not None else []
        lexical_scored = [(point.id, point.score) for point in responses[-1]] if lexical else []
        lexical_keys = [str(pid) for pid, _ in lexical_scored]
        # What this call uses is looked up once, in order (the cache may drop entries meanwhile):
        # each point's data, None where it must be fetched, and never for a known lexical hit.
        dense_data = [cached.get(pid) for pid, _ in dense_scored]
        lexical_data = [
            None if key in known else cached.get(pid)
            for (pid, _), key in zip(lexical_scored, lexical_keys, strict=True)
        ]
        wanted = [pid for (pid, _), point in zip(dense_scored, dense_data, strict=True) if point is None]
        wanted += [
            pid
            for (pid, _), key, point in zip(lexical_scored, lexical_keys, lexical_data, strict=True)
            if point is None and key not in known
        ]
        fetched = (
            {
                r.id: _edge_data(r.payload, r.vector)
                for r in client.retrieve(
                    self.collection, list(dict.fromkeys(wanted)), with_payload=True, with_vector=[DENSE]
                )
            }
            if wanted
            else {}
        )
        terms: dict[_PointId, SparseTerms | None] = {}
        terms_wanted: list[_PointId] = []
        for pid, _ in dense_scored[:sparse_limit]:
            if pid in cached_terms:
                terms[pid] = cached_terms[pid]
            else:
                terms_wanted.append(pid)
        fetched_terms = (
            {
                r.id: _edge_sparse(r.vector)
                for r in client.retrieve(
                    self.collection, terms_wanted, with_payload=False, with_vector=[SPARSE]
                )
            }
            if terms_wanted
            else {}
        )
        self._cache.keep(epoch, client.write_epoch, fetched, fetched_terms)
        terms.update(fetched_terms)

        def terms_of(pid: _PointId) -> SparseTerms | None:
            found = terms.get(pid)
            # Lists of their own for every hit, as a fetch gives: callers may keep or change them.
            return None if found is None else SparseTerms(list(found.indices), list(found.values))

        dense_hits: list[SearchHit] = []
        for n, ((pid, score), point) in enumerate(zip(dense_scored, dense_data, strict=True)):
            if point is None and (point := fetched.get(pid)) is None:
                continue  # deleted between the search and the fetch: as if not found
            dense_hits.append(_edge_hit(point, score, terms_of(pid) if n < sparse_limit else None))
        lexical_hits: list[SearchHit] = []
        for (pid, score), key, point in zip(lexical_scored, lexical_keys, lexical_data, strict=True):
            if point is None and (seen := known.get(key)) is not None:
                # As the lexical search returns it: its BM25 score, its dense vector, no terms.
                lexical_hits.append(SearchHit(record=seen.record, score=float(score), vector=seen.vector))
            elif point is not None or (point := fetched.get(pid)) is not None:
                lexical_hits.append(_edge_hit(point, score, None))
        return dense_hits, lexical_hits


def _edge_sparse(vector: object) -> SparseTerms | None:
    found = vector.get(SPARSE) if isinstance(vector, dict) else None
    return SparseTerms(list(found.indices), list(found.values)) if found is not None else None


def _bounded_update(kept: OrderedDict[_K, _V], found: Mapping[_K, _V], capacity: int) -> None:
    """``kept.update(found)``, then the oldest entries dropped down to ``capacity``."""
    kept.update(found)
    for _ in range(len(kept) - capacity):
        kept.popitem(last=False)  # O(1), where deleting a plain dict's first keys degrades


def _edge_data(payload: object, vector: object) -> _PointData:
    """A point's record and dense vector, from Edge's own point data (no qdrant-client models)."""
    dense = vector.get(DENSE) if isinstance(vector, dict) else None
    return msgspec.convert(payload, ChunkRecord), None if dense is None else dense_array(dense)


def _edge_hit(point: _PointData, score: float, sparse: SparseTerms | None) -> SearchHit:
    record, vector = point
    # An array of its own for every hit, as a fetch gives: the cached one is never handed out.
    return SearchHit(
        record=record, score=float(score), vector=None if vector is None else vector.copy(), sparse=sparse
    )
