"""The Edge search path (``EdgeSearch``) against the generic one (``ClientSearch``), on one real shard.

``QdrantStore.search`` on Qdrant Edge skips qdrant-client's models: ``EdgeSearch`` builds Edge's
queries directly, translates the filter once per call, reads each point's properties once, packs
the vectors into float32 arrays itself and keeps what it built of a point until the next write
(the point cache). Here the same store is searched through both paths (the generic one over
the same ``EdgeClient``, by ``query_batch_points`` and the model translation, which caches
nothing), with the cache on, off and smaller than the results, and every hit must be the same
bit for bit: ids, records, scores, vectors, sparse terms; also after writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from qdrant_client import models

from app.records import ChunkRecord, SearchHit, SparseTerms
from app.store import DEFAULT_TENANT, SHARED_TENANT, QdrantStore, RetrievalFilters, filter_for
from app.store.edge import EdgeClient
from app.store.edge_models import dense_array
from app.store.edge_search import POINT_CACHE, PointCache
from tests import factories

DIM = 384


class _Generic:
    """The same ``EdgeClient``, seen as any other engine: ``QdrantStore`` then searches it the
    generic way (``ClientSearch``: qdrant-client requests, ``query_batch_points``, ``ScoredPoint``
    models)."""

    def __init__(self, client: EdgeClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def chunk(source: str, index: int) -> ChunkRecord:
    return ChunkRecord(
        point_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}/h/{index}")),
        doc_id=str(uuid.uuid5(uuid.NAMESPACE_URL, source)),
        source=source,
        title=source,
        heading_path=("Guide", f"Part {index % 3}"),
        chunk_index=index,
        chunk_count=12,
        text=f"{source} part {index}",
        page=index if index % 2 else None,
        doc_hash="h",
        text_hash=f"t{index}",
        ingested_at="2026-01-01T00:00:00Z",
        source_name=source.split("/")[0],
        source_root="/srv/" + source.split("/")[0],
    )


def unit_vectors(n: int, seed: int) -> np.ndarray:
    return factories.unit_vectors(n, DIM, seed=seed)


def sparse_terms(n: int, seed: int) -> list[SparseTerms]:
    return factories.sparse_terms(n, seed=seed, vocabulary=300, size=8)


def open_pair(folder: Path, point_cache: int = POINT_CACHE) -> tuple[QdrantStore, QdrantStore]:
    """A filled Edge store, and the same client searched the generic way."""
    client = EdgeClient(folder / "store")
    edge = QdrantStore(client, "kb", hnsw_ef=128, point_cache=point_cache)
    edge.ensure_collection(model_name="test-model", dimension=DIM)
    # Three tenants' worth of points, so that the tenant filter has something to leave out.
    for n, (tenant, prefix) in enumerate(
        [(DEFAULT_TENANT, "docs"), (SHARED_TENANT, "shared"), ("other-team", "docs")]
    ):
        records = [chunk(f"{prefix}/{tenant}-{i // 12}.md", i % 12) for i in range(120)]
        edge.upsert(records, unit_vectors(120, n), sparse_terms(120, n), tenant=tenant)
    return edge, QdrantStore(_Generic(client), "kb", hnsw_ef=128)


@pytest.fixture(scope="module", params=[POINT_CACHE, 0, 7], ids=["cache", "no-cache", "cache-7"])
def stores(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[QdrantStore, QdrantStore]]:
    edge, generic = open_pair(tmp_path_factory.mktemp("edge-fast"), request.param)
    yield edge, generic
    edge.close()


def as_bits(hit: SearchHit) -> tuple[object, ...]:
    vector = hit.vector
    assert vector is not None
    sparse = None if hit.sparse is None else (hit.sparse.indices, [v.hex() for v in hit.sparse.values])
    return (
        hit.record,
        type(hit.score),
        hit.score.hex(),
        vector.dtype,
        vector.shape,
        vector.tobytes(),
        sparse,
    )


def same_hits(mine: list[SearchHit], theirs: list[SearchHit]) -> None:
    assert [as_bits(h) for h in mine] == [as_bits(h) for h in theirs]


QUERIES = list(zip(unit_vectors(6, 50), sparse_terms(6, 0)[:6], strict=True))
FILTERS = [
    None,
    filter_for(None, tenant=DEFAULT_TENANT),
    filter_for(RetrievalFilters(source_prefix="docs"), tenant=DEFAULT_TENANT),
]


@pytest.mark.parametrize("query_filter", FILTERS, ids=["none", "tenant", "tenant-and-folder"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"with_sparse": True},
        {"with_sparse": True, "sparse_limit": 3},
        {"with_sparse": True, "sparse_limit": 0},
    ],
    ids=["plain", "sparse", "sparse-3", "sparse-0"],
)
def test_the_edge_path_returns_the_generic_paths_hits_bit_for_bit(
    stores: tuple[QdrantStore, QdrantStore], query_filter: Any, options: dict[str, Any]
) -> None:
    edge, generic = stores
    for dense, sparse in QUERIES:
        for args in (
            {"dense": dense, "sparse": sparse},
            {"dense": dense, "sparse": None},
            {"dense": None, "sparse": sparse},
        ):
            theirs = generic.search(**args, limit=15, query_filter=query_filter, **options)
            for _ in range(2):  # the second time from what the first kept
                mine = edge.search(**args, limit=15, query_filter=query_filter, **options)
                assert any(mine), "a query that finds nothing proves nothing"
                same_hits(mine[0], theirs[0])
                same_hits(mine[1], theirs[1])


def test_lexical_hits_with_known_dense_hits_are_the_generic_paths(
    stores: tuple[QdrantStore, QdrantStore],
) -> None:
    edge, generic = stores
    tenant = filter_for(None, tenant=DEFAULT_TENANT)
    for dense, sparse in QUERIES:
        dense_hits, _ = edge.search(
            dense=dense, sparse=None, limit=15, query_filter=tenant, with_sparse=True, sparse_limit=5
        )
        known = {h.record.point_id: h for h in dense_hits}
        _, mine = edge.search(dense=None, sparse=sparse, limit=15, query_filter=tenant, known=known)
        _, theirs = generic.search(dense=None, sparse=sparse, limit=15, query_filter=tenant)
        assert mine
        same_hits(mine, theirs)


def test_the_filter_applies_to_both_queries_of_a_call(stores: tuple[QdrantStore, QdrantStore]) -> None:
    edge, _ = stores
    dense, sparse = QUERIES[0]
    dense_hits, lexical_hits = edge.search(
        dense=dense, sparse=sparse, limit=50, query_filter=filter_for(None, tenant=DEFAULT_TENANT)
    )
    seen = {h.record.source.split("/")[1].rsplit("-", 1)[0] for h in dense_hits + lexical_hits}
    assert seen == {DEFAULT_TENANT, SHARED_TENANT}


@pytest.mark.parametrize("size", [1, 16, 384, 1024])
def test_dense_array_is_numpys_float32_array_bit_for_bit(size: int) -> None:
    rng = np.random.default_rng(size)
    extremes = np.array(
        [np.finfo(np.float32).max, -np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1e-45, -0.0, 0.0],
        dtype=np.float32,
    )
    values = np.concatenate([extremes, rng.normal(size=size).astype(np.float32)])[:size].tolist()
    found = dense_array(values)
    expected = np.asarray(values, dtype=np.float32)
    assert found.dtype == expected.dtype and found.shape == expected.shape
    assert found.tobytes() == expected.tobytes()
    # An array of its own, as np.asarray's: writable, owning its data, not shared between hits.
    assert found.flags.writeable and found.flags.owndata and found.flags.c_contiguous


# --------------------------------------------------------------------------- the point cache


def test_every_hit_gets_arrays_and_lists_of_its_own(tmp_path: Path) -> None:
    edge, generic = open_pair(tmp_path)
    try:
        dense = QUERIES[0][0]
        first, _ = edge.search(dense=dense, sparse=None, limit=10, with_sparse=True)
        expected, _ = generic.search(dense=dense, sparse=None, limit=10, with_sparse=True)
        for hit in first:  # what a caller may do with its hits
            assert hit.vector is not None and hit.sparse is not None
            np.negative(hit.vector, out=hit.vector)
            hit.sparse.values.clear()
        again, _ = edge.search(dense=dense, sparse=None, limit=10, with_sparse=True)
        same_hits(again, expected)
    finally:
        edge.close()


def test_searches_see_every_kind_of_write_at_once(tmp_path: Path) -> None:
    edge, generic = open_pair(tmp_path)
    tenant = filter_for(None, tenant=DEFAULT_TENANT)
    dense, sparse = QUERIES[1]

    def check() -> list[SearchHit]:
        mine = edge.search(dense=dense, sparse=sparse, limit=20, query_filter=tenant, with_sparse=True)
        theirs = generic.search(dense=dense, sparse=sparse, limit=20, query_filter=tenant, with_sparse=True)
        same_hits(mine[0], theirs[0])
        same_hits(mine[1], theirs[1])
        return mine[0]

    try:
        hits = check()
        # The same points written again with other text (the same vectors: still found), and
        # others with other vectors and terms.
        kept = hits[:5]
        rewritten = [msgspec.structs.replace(h.record, text="rewritten") for h in kept]
        edge.upsert(
            rewritten,
            np.stack([h.vector for h in kept if h.vector is not None]),
            [h.sparse for h in kept if h.sparse is not None],
            tenant=DEFAULT_TENANT,
        )
        moved = [h.record for h in hits[5:10]]
        edge.upsert(moved, unit_vectors(5, 77), sparse_terms(5, 77), tenant=DEFAULT_TENANT)
        after = {h.record.point_id: h.record for h in check()}
        assert all(after[r.point_id].text == "rewritten" for r in rewritten)
        best = next(r for r in after.values() if r.source.startswith(f"docs/{DEFAULT_TENANT}-"))
        edge.set_source([best.doc_id], name="renamed", root="/srv/renamed", tenant=DEFAULT_TENANT)
        assert [h.record.source_name for h in check() if h.record.doc_id == best.doc_id][:1] == ["renamed"]
        edge.delete_document(best.doc_id, tenant=DEFAULT_TENANT)
        assert all(h.record.doc_id != best.doc_id for h in check())
    finally:
        edge.close()


def test_the_write_epoch_is_none_while_a_write_is_under_way(tmp_path: Path) -> None:
    client = EdgeClient(tmp_path / "store")
    seen: list[int | None] = []

    class Watched(list[models.PointStruct]):
        def __iter__(self) -> Iterator[models.PointStruct]:  # read inside the write
            seen.append(client.write_epoch)
            return super().__iter__()

    try:
        edge = QdrantStore(client, "kb")
        edge.ensure_collection(model_name="test-model", dimension=DIM)
        before = client.write_epoch
        point = models.PointStruct(
            id=chunk("docs/a.md", 0).point_id,
            vector={
                "dense": unit_vectors(1, 1)[0].tolist(),
                "lexical": models.SparseVector(indices=[1], values=[1.0]),
            },
            payload={},
        )
        client.upsert("kb", points=Watched([point]))
        assert seen == [None]
        assert before is not None and client.write_epoch == before + 1
    finally:
        client.close()


def test_data_read_across_a_write_is_not_kept() -> None:
    cache = PointCache(10)
    record = chunk("docs/a.md", 0)
    data: dict[int | uuid.UUID | str, tuple[ChunkRecord, np.ndarray | None]] = {
        record.point_id: (record, np.zeros(DIM, dtype=np.float32))
    }
    cached, _ = cache.at(3)
    cache.keep(3, None, data, {})  # a write began meanwhile
    cache.keep(3, 4, data, {})  # and ended
    assert not cached and not cache.at(3)[0]
    cache.keep(3, 3, data, {})
    assert cache.at(3)[0].keys() == data.keys()
    assert cache.at(4) == ({}, {})  # a later epoch starts empty
    assert cache.at(None) == ({}, {})
