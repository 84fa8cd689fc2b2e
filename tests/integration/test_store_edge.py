"""Qdrant Edge as the embedded store: one process at a time, data kept across opens, and a dense
index built only when asked, above the exact-search size, that finds what exact search finds:
an HNSW graph (the default), or an int8 quantized copy rescored against the original vectors.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models

from app.config import load_settings
from app.errors import StoreLockedError
from app.settings import Settings
from app.store import DEFAULT_TENANT, DENSE, QdrantStore, edge_path, filter_for, open_store
from app.store.edge import EdgeClient, EdgeIndexing
from tests.integration.test_store_contract import DIM, MODEL, chunk, terms, vectors


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environ={"KB_DATA_DIR": str(tmp_path / "data")})


def fill(store: QdrantStore, n: int, *, seed: int = 3) -> None:
    store.ensure_collection(model_name=MODEL, dimension=DIM)
    records = [chunk(f"docs/{i}.md", 0) for i in range(n)]
    store.upsert(records, vectors(n, seed), terms(n, seed), tenant=DEFAULT_TENANT)


def test_the_default_embedded_store_is_qdrant_edge_in_the_data_folder(settings: Settings) -> None:
    store = open_store(settings)
    try:
        assert isinstance(store.client, EdgeClient)
        assert store.location == str(edge_path(settings)) == str(settings.data_path / "store")
    finally:
        store.close()


def test_a_second_process_on_the_store_is_refused_at_once_with_what_to_do(settings: Settings) -> None:
    holder = open_store(settings)  # the same process, another handle: flock refuses it too
    try:
        started = time.perf_counter()
        with pytest.raises(StoreLockedError) as raised:
            open_store(settings)
        assert time.perf_counter() - started < 1.0
        assert str(edge_path(settings)) in raised.value.message and "QDRANT_URL" in raised.value.message
    finally:
        holder.close()
    open_store(settings).close()  # free again once the holder is gone


def test_points_are_kept_across_opens(settings: Settings) -> None:
    store = open_store(settings)
    fill(store, 50)
    store.close()

    again = open_store(settings)
    try:
        assert again.count() == 50
        hits, _ = again.search(dense=vectors(50, 3)[7], sparse=None, limit=1)
        assert hits[0].record.source == "docs/7.md"
    finally:
        again.close()


def test_a_collection_whose_creation_did_not_finish_does_not_exist(settings: Settings) -> None:
    client = EdgeClient(edge_path(settings))
    (edge_path(settings) / "kb" / "segments").mkdir(parents=True)  # a shard folder, no metadata
    store = QdrantStore(client, "kb")
    try:
        assert not store.exists()
        fill(store, 5)
        assert store.count() == 5
    finally:
        store.close()


def exact_and_indexed(
    store: QdrantStore, queries: np.ndarray, ef: int
) -> tuple[list[set[str]], list[set[str]]]:
    flt = filter_for(None, tenant=DEFAULT_TENANT)

    def ids(params: models.SearchParams) -> list[set[str]]:
        requests = [
            models.QueryRequest(query=q.tolist(), using=DENSE, limit=10, filter=flt, params=params)
            for q in queries
        ]
        return [
            {str(p.id) for p in r.points}
            for r in store.client.query_batch_points(store.collection, requests=requests)
        ]

    return ids(models.SearchParams(exact=True)), ids(models.SearchParams(hnsw_ef=ef))


def test_below_the_exact_search_size_optimize_builds_no_index(tmp_path: Path) -> None:
    store = QdrantStore(EdgeClient(tmp_path / "store", indexing=EdgeIndexing(exact_search_points=5000)), "kb")
    try:
        fill(store, 2000)
        store.optimize()
        assert isinstance(store.client, EdgeClient) and store.client.dense_index("kb") == "plain"
    finally:
        store.close()


def test_above_it_optimize_builds_hnsw_whose_recall_at_10_is_at_least_098(tmp_path: Path) -> None:
    indexing = EdgeIndexing(exact_search_points=1000, hnsw_ef=256)
    store = QdrantStore(EdgeClient(tmp_path / "store", indexing=indexing), "kb")
    try:
        fill(store, 4000)
        assert isinstance(store.client, EdgeClient)
        assert store.client.dense_index("kb") == "plain"  # writes never build the index
        assert store.optimize()
        assert store.client.dense_index("kb") == "hnsw"

        exact, indexed = exact_and_indexed(store, vectors(40, 77), ef=256)
        recall = np.mean([len(e & i) / 10 for e, i in zip(exact, indexed, strict=True)])
        assert recall >= 0.98, recall
    finally:
        store.close()


def test_an_int8_index_is_a_quantized_copy_whose_rescored_top_10_is_the_exact_one(tmp_path: Path) -> None:
    indexing = EdgeIndexing(exact_search_points=1000, dense_index="int8")
    store = QdrantStore(EdgeClient(tmp_path / "store", indexing=indexing), "kb")
    try:
        fill(store, 4000)
        assert isinstance(store.client, EdgeClient)
        assert store.client.dense_index("kb") == "plain"  # writes never build it
        assert store.optimize()
        assert store.client.dense_index("kb") == "int8"

        flt = filter_for(None, tenant=DEFAULT_TENANT)
        queries = vectors(40, 77)
        exact = [
            {str(p.id): p.score for p in r.points}
            for r in store.client.query_batch_points(
                "kb",
                requests=[
                    models.QueryRequest(
                        query=q.tolist(),
                        using=DENSE,
                        limit=10,
                        filter=flt,
                        params=models.SearchParams(exact=True),
                    )
                    for q in queries
                ],
            )
        ]
        found = [store.search(dense=q, sparse=None, limit=10, query_filter=flt)[0] for q in queries]
        recall = np.mean(
            [len(e.keys() & {h.record.point_id for h in f}) / 10 for e, f in zip(exact, found, strict=True)]
        )
        assert recall >= 0.98, recall
        # Rescored: the scores are the original vectors' (a quantized score is off by ~1e-2).
        shared = [
            (e[h.record.point_id], h.score)
            for e, f in zip(exact, found, strict=True)
            for h in f
            if h.record.point_id in e
        ]
        assert max(abs(a - b) for a, b in shared) < 1e-4
    finally:
        store.close()
