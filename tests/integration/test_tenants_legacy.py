"""Stores written before tenants were recorded, on the real model and the real embedded store.

Their chunks carry no tenant, and their document ids come from the path alone. They are the
default tenant's (``ingest.tenant``): the next ``kb ingest``, or the service when it opens the
store, assigns them to it, and they keep their ids, so nothing is embedded again and nothing is
duplicated. Another tenant ingesting the same paths gets documents of its own.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from qdrant_client import models

from app.errors import StoreUnavailableError
from app.retrieval import Retriever
from app.settings import Settings
from app.store import DEFAULT_TENANT, TENANT_FIELD, QdrantStore
from app.store.connection import StoreConnection
from ingest.runner import Ingestor

pytestmark = pytest.mark.integration

OLD_NAMESPACE = uuid.UUID("6f1c8f5e-7a3b-4c61-9d0e-2b8a4e5f7c10")
"""The namespace older versions derived document and point ids in, from the path alone."""

QUESTION = "How many days of paid holiday do staff get?"
PAGES = {
    "handbook.md": "# Holidays\n\nStaff get 30 days of paid holiday a year.\n",
    "expenses.md": "# Expenses\n\nTravel expenses are refunded within ten days.\n",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, body in PAGES.items():
        (docs / name).write_text(body)
    return docs


@pytest.fixture
def ingestor(store: QdrantStore, embedder, settings: Settings) -> Ingestor:
    return Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest)


@pytest.fixture
def old_store(store: QdrantStore, ingestor: Ingestor, folder: Path) -> QdrantStore:
    """``folder`` as an older kb stored it: the same chunks and vectors, ids from the path alone,
    no tenant."""
    assert ingestor.ingest_paths([folder]).new == 2
    points, _ = store.client.scroll(store.collection, limit=1000, with_payload=True, with_vectors=True)
    rewritten = []
    for point in points:
        payload = dict(point.payload or {})
        del payload[TENANT_FIELD]
        payload["doc_id"] = str(uuid.uuid5(OLD_NAMESPACE, payload["source"]))
        payload["point_id"] = str(
            uuid.uuid5(OLD_NAMESPACE, f"{payload['doc_id']}/{payload['doc_hash']}/{payload['chunk_index']}")
        )
        rewritten.append(models.PointStruct(id=payload["point_id"], vector=point.vector, payload=payload))
    store.client.delete(store.collection, points_selector=models.PointIdsList(points=[p.id for p in points]))
    store.client.upsert(store.collection, points=rewritten, wait=True)
    return store


def stored(store: QdrantStore) -> dict[str, str | None]:
    """Point id → its tenant (None: not recorded)."""
    points, _ = store.client.scroll(store.collection, limit=1000, with_payload=True)
    return {str(p.id): (p.payload or {}).get(TENANT_FIELD) for p in points}


def retrieved(store, embedder, settings: Settings, tenant: str) -> set[str]:
    retriever = Retriever(store, embedder, settings.retrieval)
    try:
        found, _ = retriever.search(QUESTION, tenant=tenant)
    finally:
        retriever.close()
    return {c.record.point_id for c in found}


def test_the_next_ingest_makes_an_old_store_the_default_tenants_without_embedding_again(
    old_store: QdrantStore, ingestor: Ingestor, folder: Path
) -> None:
    before = stored(old_store)
    assert set(before.values()) == {None}

    report = ingestor.ingest_paths([folder])

    assert (report.unchanged, report.new, report.embeddings_computed) == (2, 0, 0)
    assert report.claimed == len(before) and any("before tenants" in line for line in report.summary_lines())
    assert stored(old_store) == dict.fromkeys(before, DEFAULT_TENANT)  # the same points, now the tenant's
    assert ingestor.ingest_paths([folder]).claimed == 0  # once


def test_a_changed_document_of_an_old_store_leaves_no_stale_chunk(
    old_store: QdrantStore, ingestor: Ingestor, folder: Path
) -> None:
    (folder / "handbook.md").write_text("# Holidays\n\nStaff get 32 days of paid holiday a year.\n")

    report = ingestor.ingest_paths([folder])

    assert (report.changed, report.unchanged) == (1, 1)
    states = old_store.document_states(tenant=DEFAULT_TENANT)
    assert sorted(s.source for s in states.values()) == ["docs/expenses.md", "docs/handbook.md"]
    assert all(len(s.points) == 1 for s in states.values())


def test_a_dry_run_over_an_old_store_plans_the_default_tenants_documents_and_writes_nothing(
    old_store: QdrantStore, ingestor: Ingestor, folder: Path
) -> None:
    before = stored(old_store)

    report = ingestor.ingest_paths([folder], dry_run=True)

    assert (report.unchanged, report.new, report.claimed) == (2, 0, 0)
    assert stored(old_store) == before


def test_another_tenant_ingesting_the_same_paths_gets_documents_of_its_own(
    old_store: QdrantStore, ingestor: Ingestor, folder: Path, embedder, settings: Settings
) -> None:
    old = set(stored(old_store))

    report = ingestor.ingest_paths([folder], tenant="beta")

    assert report.new == 2
    tenants = stored(old_store)
    assert {tenants[point] for point in old} == {DEFAULT_TENANT}  # kept, and claimed
    assert {t for p, t in tenants.items() if p not in old} == {"beta"}
    assert retrieved(old_store, embedder, settings, DEFAULT_TENANT) <= old
    assert not retrieved(old_store, embedder, settings, "beta") & old


def test_the_service_assigns_an_old_stores_chunks_when_it_opens_it(
    old_store: QdrantStore, embedder, settings: Settings
) -> None:
    connection = StoreConnection(
        lambda: old_store, model_name=embedder.model_name, dimension=embedder.dimension
    )

    found = retrieved(connection, embedder, settings, DEFAULT_TENANT)

    assert found and set(stored(old_store).values()) == {DEFAULT_TENANT}
    assert not retrieved(connection, embedder, settings, "beta")


class ReadOnlyOnce(QdrantStore):
    """The real store, whose first claim fails as a write with a read-only API key does."""

    failures = 1

    def claim_untenanted(self, tenant: str) -> int:
        if self.failures:
            self.failures -= 1
            raise PermissionError("403 Forbidden: read-only API key")
        return super().claim_untenanted(tenant)


def test_an_old_store_the_service_cannot_write_to_is_refused_with_what_to_do_and_tried_again(
    old_store: QdrantStore, embedder
) -> None:
    read_only = ReadOnlyOnce(old_store.client, old_store.collection)
    connection = StoreConnection(
        lambda: read_only, model_name=embedder.model_name, dimension=embedder.dimension, legacy_tenant="acme"
    )

    with pytest.raises(StoreUnavailableError, match=r"before tenants.*'acme'.*kb ingest"):
        connection.exists()

    assert connection.exists()  # the next request tries again
    assert set(stored(old_store).values()) == {"acme"}
