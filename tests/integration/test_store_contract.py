"""The store contract: what ingestion and retrieval rely on, on every engine.

Each test runs ``QdrantStore`` over Qdrant Edge (``EdgeClient``, the embedded default) and over
qdrant-client's in-process mode, which stands in for a Qdrant server (the same client API a
``QDRANT_URL`` store uses). Vectors are synthetic (seeded), so no model is loaded; the last tests
build both engines with the same points and require the same exact-search results.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from app.errors import ModelMismatchError
from app.records import ChunkRecord, SearchHit, SparseTerms
from app.store import (
    DEFAULT_TENANT,
    SHARED_TENANT,
    QdrantStore,
    RetrievalFilters,
    filter_for,
)
from app.store.edge import EdgeClient
from tests import factories

MODEL = "test-model"
DIM = 16
ENGINES = ["edge", "client"]


def make_store(engine: str, folder: Path) -> QdrantStore:
    client = EdgeClient(folder / "store") if engine == "edge" else QdrantClient(":memory:")
    return QdrantStore(client, "kb", upsert_batch_size=64, location=engine)


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantStore]:
    opened = make_store(request.param, tmp_path)
    opened.ensure_collection(model_name=MODEL, dimension=DIM, lexical_version="t1")
    yield opened
    opened.close()


def chunk(source: str, index: int, *, doc_hash: str = "h1", count: int = 1, text: str = "") -> ChunkRecord:
    doc_id = str(uuid.uuid5(uuid.NAMESPACE_URL, source))
    return ChunkRecord(
        point_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}/{doc_hash}/{index}")),
        doc_id=doc_id,
        source=source,
        title=source,
        chunk_index=index,
        chunk_count=count,
        text=text or f"{source} part {index}",
        doc_hash=doc_hash,
        text_hash=f"t{index}",
        ingested_at="2026-01-01T00:00:00Z",
        source_name=source.split("/")[0],
        source_root="/srv/" + source.split("/")[0],
    )


def vectors(n: int, seed: int) -> np.ndarray:
    return factories.unit_vectors(n, DIM, seed=seed)


def terms(n: int, seed: int) -> list[SparseTerms]:
    return factories.sparse_terms(n, seed=seed, vocabulary=200, size=6)


def write(store: QdrantStore, records: list[ChunkRecord], *, tenant: str, seed: int = 0) -> np.ndarray:
    dense = vectors(len(records), seed)
    store.upsert(records, dense, terms(len(records), seed), tenant=tenant)
    return dense


def sources(hits: list[SearchHit]) -> set[str]:
    return {hit.record.source for hit in hits}


# --------------------------------------------------------------------------- collection lifecycle


def test_a_collection_remembers_its_model_and_refuses_another(store: QdrantStore) -> None:
    assert store.exists() and store.count() == 0
    store.ensure_collection(model_name=MODEL, dimension=DIM)  # the same model again: fine
    with pytest.raises(ModelMismatchError, match="other-model"):
        store.check_model(model_name="other-model", dimension=DIM)
    with pytest.raises(ModelMismatchError, match="dimension 8"):
        store.check_model(model_name=MODEL, dimension=8)


def test_dropping_a_collection_leaves_nothing_to_search(store: QdrantStore) -> None:
    write(store, [chunk("docs/a.md", 0)], tenant=DEFAULT_TENANT)
    store.drop()
    assert not store.exists() and store.count() == 0
    assert store.document_states(tenant=DEFAULT_TENANT) == {}
    assert store.sample_sparse(10) == []


# --------------------------------------------------------------------------- writes and states


def test_document_states_count_points_per_hash_across_scroll_pages(store: QdrantStore) -> None:
    big = [chunk("docs/big.md", i, count=1100) for i in range(1100)]  # more than one scroll page
    write(store, big, tenant=DEFAULT_TENANT)
    write(store, [chunk("docs/half.md", 0, count=3)], tenant=DEFAULT_TENANT, seed=1)

    states = store.document_states(tenant=DEFAULT_TENANT)

    by_source = {state.source: state for state in states.values()}
    assert by_source["docs/big.md"].is_complete("h1")
    assert not by_source["docs/half.md"].is_complete("h1")
    assert by_source["docs/big.md"].source_name == "docs"
    assert store.count() == 1101


def test_deleting_a_document_keeps_the_current_hash_and_other_tenants(store: QdrantStore) -> None:
    old = [chunk("docs/a.md", i, doc_hash="old", count=2) for i in range(2)]
    new = [chunk("docs/a.md", i, doc_hash="new", count=2) for i in range(2)]
    theirs = [chunk("docs/a.md", 0, doc_hash="old")]
    write(store, old + new, tenant="acme")
    # The same path for another tenant is another document (ingest's ids say so): a fresh id here.
    theirs = [msgspec_replace(theirs[0], point_id=str(uuid.uuid4()))]
    write(store, theirs, tenant="other", seed=2)

    store.delete_document(old[0].doc_id, tenant="acme", keep_hash="new")
    acme = store.document_states(tenant="acme")
    assert {h for state in acme.values() for h in state.points} == {"new"}
    assert store.document_states(tenant="other")  # untouched

    store.delete_document(old[0].doc_id, tenant="acme")
    assert store.document_states(tenant="acme") == {}
    assert store.count() == 1


def test_set_source_rebinds_only_the_named_documents_of_the_tenant(store: QdrantStore) -> None:
    mine = chunk("docs/a.md", 0)
    write(store, [mine, chunk("docs/b.md", 0)], tenant="acme")
    store.set_source([mine.doc_id], name="manual", root="/elsewhere", tenant="acme")
    states = {s.source: s for s in store.document_states(tenant="acme").values()}
    assert (states["docs/a.md"].source_name, states["docs/a.md"].source_root) == ("manual", "/elsewhere")
    assert states["docs/b.md"].source_root == "/srv/docs"


def test_untenanted_chunks_are_claimed_once(store: QdrantStore) -> None:
    write(store, [chunk("docs/a.md", 0), chunk("docs/b.md", 0)], tenant="acme")
    store.client.delete_payload(
        store.collection, keys=["tenant"], points=models.FilterSelector(filter=models.Filter())
    )
    assert store.document_states(tenant="team") == {}
    assert len(store.document_states(tenant="team", include_untenanted=True)) == 2

    assert store.claim_untenanted("team") == 2
    assert store.claim_untenanted("team") == 0
    assert len(store.document_states(tenant="team")) == 2


# --------------------------------------------------------------------------- searches and filters


def test_searches_see_the_callers_tenant_and_the_shared_documents_only(store: QdrantStore) -> None:
    dense = write(store, [chunk("docs/acme.md", 0)], tenant="acme")
    write(store, [chunk("docs/other.md", 0)], tenant="other", seed=1)
    write(store, [chunk("docs/shared.md", 0)], tenant=SHARED_TENANT, seed=2)
    probe = terms(1, 0)[0]

    found, lexical = store.search(
        dense=dense[0], sparse=probe, limit=10, query_filter=filter_for(None, tenant="acme")
    )

    assert sources(found) == {"docs/acme.md", "docs/shared.md"}
    assert sources(lexical) <= {"docs/acme.md", "docs/shared.md"} and lexical
    assert store.sample_sparse(10, query_filter=filter_for(None, tenant="other")) != []
    assert len(store.sample_sparse(10, query_filter=filter_for(None, tenant="acme"))) == 2


def test_request_filters_narrow_by_document_and_by_folder(store: QdrantStore) -> None:
    records = [chunk("docs/guide/install.md", 0), chunk("docs/guide/run.md", 0), chunk("notes/x.md", 0)]
    dense = write(store, records, tenant=DEFAULT_TENANT)

    def found(filters: RetrievalFilters) -> set[str]:
        hits, _ = store.search(
            dense=dense[2], sparse=None, limit=10, query_filter=filter_for(filters, tenant=DEFAULT_TENANT)
        )
        return sources(hits)

    assert found(RetrievalFilters(source_prefix="docs/guide")) == {
        "docs/guide/install.md",
        "docs/guide/run.md",
    }
    assert found(RetrievalFilters(sources=["notes/x.md"])) == {"notes/x.md"}
    assert found(RetrievalFilters(source_prefix="docs", sources=["notes/x.md"])) == set()


def test_hits_carry_payload_dense_vector_and_on_request_the_sparse_one(store: QdrantStore) -> None:
    records = [chunk("docs/a.md", 0, text="alpha")]
    dense = write(store, records, tenant=DEFAULT_TENANT)
    sparse = terms(1, 0)[0]

    hits, lexical = store.search(dense=dense[0], sparse=sparse, limit=5, with_sparse=True)

    assert hits[0].record == records[0]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].vector is not None and np.allclose(hits[0].vector, dense[0], atol=1e-5)
    assert hits[0].sparse is not None and hits[0].sparse.indices == sparse.indices
    assert lexical[0].vector is not None and lexical[0].sparse is None
    assert store.search(dense=None, sparse=None, limit=5) == ([], [])


def test_only_the_best_dense_hits_carry_sparse_vectors_when_limited(store: QdrantStore) -> None:
    records = [chunk("docs/a.md", i, count=6) for i in range(6)]
    dense = write(store, records, tenant=DEFAULT_TENANT)

    full, _ = store.search(dense=dense[0], sparse=None, limit=6, with_sparse=True)
    limited, _ = store.search(dense=dense[0], sparse=None, limit=6, with_sparse=True, sparse_limit=2)

    assert [h.record for h in limited] == [h.record for h in full]
    assert [h.score for h in limited] == [h.score for h in full]
    assert [h.sparse for h in limited[:2]] == [h.sparse for h in full[:2]]
    assert all(h.sparse is not None for h in full)
    assert all(h.sparse is None for h in limited[2:])


def test_a_lexical_search_with_known_hits_returns_what_it_returns_without(store: QdrantStore) -> None:
    records = [chunk("docs/a.md", i, count=8) for i in range(8)]
    dense = write(store, records, tenant=DEFAULT_TENANT)
    query = SparseTerms(sorted({i for t in terms(8, 0)[:3] for i in t.indices}), [])
    query = SparseTerms(query.indices, [1.0] * len(query.indices))
    dense_hits, _ = store.search(dense=dense[1], sparse=None, limit=3)

    _, plain = store.search(dense=None, sparse=query, limit=8)
    _, reused = store.search(
        dense=None, sparse=query, limit=8, known={h.record.point_id: h for h in dense_hits}
    )

    assert len(plain) >= 3
    assert [(h.record, h.score, h.sparse) for h in reused] == [(h.record, h.score, h.sparse) for h in plain]
    assert all(
        a.vector is not None and b.vector is not None and np.array_equal(a.vector, b.vector)
        for a, b in zip(reused, plain, strict=True)
    )
    # Some of them were known, some were fetched: both ways give the same hit.
    known_ids = {h.record.point_id for h in dense_hits}
    assert {h.record.point_id for h in plain} & known_ids
    assert {h.record.point_id for h in plain} - known_ids


# --------------------------------------------------------------------------- the same answers


def exact_results(
    engine: str, folder: Path
) -> tuple[list[list[tuple[str, float]]], list[list[tuple[str, float]]]]:
    store = make_store(engine, folder)
    try:
        store.ensure_collection(model_name=MODEL, dimension=DIM)
        records = [chunk(f"docs/{i // 4}.md", i % 4, count=4) for i in range(400)]
        write(store, records, tenant=DEFAULT_TENANT, seed=7)
        queries, sparse = vectors(20, 99), terms(20, 98)
        dense_out, lexical_out = [], []
        for query, probe in zip(queries, sparse, strict=True):
            hits, lexical = store.search(
                dense=query, sparse=probe, limit=10, query_filter=filter_for(None, tenant=DEFAULT_TENANT)
            )
            dense_out.append([(h.record.point_id, h.score) for h in hits])
            lexical_out.append([(h.record.point_id, h.score) for h in lexical])
        return dense_out, lexical_out
    finally:
        store.close()


def test_both_engines_return_the_same_exact_results(tmp_path: Path) -> None:
    edge_dense, edge_lexical = exact_results("edge", tmp_path)
    client_dense, client_lexical = exact_results("client", tmp_path)

    for mine, theirs in zip(edge_dense + edge_lexical, client_dense + client_lexical, strict=True):
        assert [pid for pid, _ in mine] == [pid for pid, _ in theirs]
        assert [s for _, s in mine] == pytest.approx([s for _, s in theirs], rel=1e-4, abs=1e-5)


def msgspec_replace(record: ChunkRecord, **changes: object) -> ChunkRecord:
    return msgspec.structs.replace(record, **changes)
