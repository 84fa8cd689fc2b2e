"""Request filters on the real embedded store: documents are named by the paths answers show."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.retrieval.bm25 import LexicalEncoder
from app.store import DEFAULT_TENANT, QdrantStore, RetrievalFilters, filter_for
from ingest.runner import Ingestor

pytestmark = pytest.mark.integration

MIXED = Path(__file__).parents[1] / "data" / "mixed"
QUESTION = "installation and the nightly job"


@pytest.fixture
def ingested(tmp_path: Path, store: QdrantStore, embedder, settings) -> QdrantStore:
    """Two documents of ``tests/data/mixed`` as the source ``handbook``, and a second source ``other``."""
    ingestor = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest)
    handbook = tmp_path / "mixed"
    handbook.mkdir()
    for name in ("guide.md", "notes.txt"):
        shutil.copy(MIXED / name, handbook / name)
    ingestor.ingest_paths([handbook], source="handbook")
    other = tmp_path / "other"
    other.mkdir()
    (other / "guide.md").write_text("# Other guide\n\nInstallation of the other product is manual.\n")
    ingestor.ingest_paths([other])
    return store


def found(store: QdrantStore, embedder, filters: RetrievalFilters | None) -> set[str]:
    dense, lexical = store.search(
        dense=embedder.embed([QUESTION])[0],
        sparse=LexicalEncoder().encode_query(QUESTION),
        limit=50,
        query_filter=filter_for(filters, tenant=DEFAULT_TENANT),
    )
    return {hit.record.source for hit in dense + lexical}


def test_unfiltered_search_sees_both_sources(ingested: QdrantStore, embedder) -> None:
    sources = found(ingested, embedder, None)
    assert {"handbook/guide.md", "handbook/notes.txt", "other/guide.md"} <= sources


def test_sources_keep_exactly_the_documents_named(ingested: QdrantStore, embedder) -> None:
    assert found(ingested, embedder, RetrievalFilters(sources=["handbook/guide.md"])) == {"handbook/guide.md"}
    assert found(ingested, embedder, RetrievalFilters(sources=["handbook/guide.md", "./other/guide.md"])) == {
        "handbook/guide.md",
        "other/guide.md",
    }


def test_the_source_name_as_prefix_keeps_that_sources_documents(ingested: QdrantStore, embedder) -> None:
    sources = found(ingested, embedder, RetrievalFilters(source_prefix="handbook"))
    assert sources and all(s.startswith("handbook/") for s in sources)


def test_a_prefix_and_sources_must_both_hold(ingested: QdrantStore, embedder) -> None:
    both = RetrievalFilters(source_prefix="other", sources=["handbook/guide.md", "other/guide.md"])
    assert found(ingested, embedder, both) == {"other/guide.md"}


def test_a_path_no_document_has_matches_nothing(ingested: QdrantStore, embedder) -> None:
    assert found(ingested, embedder, RetrievalFilters(sources=["guide.md"])) == set()
