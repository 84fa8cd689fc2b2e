"""Lexical query expansion end to end: the real model, the real embedded Qdrant, real BM25 vectors.

The question shares no word with the quartz passage ("cost" is not "price"); only the granite
passage, the best dense hit, uses the question's words. Expanding the BM25 query with the granite
passage's terms ("square foot", "fabrication", "installation") is what lets BM25 find the quartz
passage too.
"""

from __future__ import annotations

import msgspec
import pytest

from app.retrieval import Retriever
from app.retrieval.bm25 import LexicalEncoder
from app.settings import Settings
from app.store import DEFAULT_TENANT, QdrantStore
from tests.factories import chunk_record

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "How much does a new kitchen countertop cost?"
PASSAGES = {
    "granite": (
        "Granite countertops typically cost 40 to 100 dollars per square foot, including fabrication and installation."
    ),
    "quartz": "Quartz slabs are priced per square foot; fabrication and installation add to the price of the slab.",
    "trail": "The northern trail climbs 600 metres to the lake and takes about three hours on foot.",
    "payroll": "Payroll runs on the 25th; corrections reach the payroll team by the 20th.",
}
POINT_IDS = {
    "granite": "0b7e8f0c-0a39-4a3c-9a56-3f1d6a0e0001",
    "quartz": "0b7e8f0c-0a39-4a3c-9a56-3f1d6a0e0002",
    "trail": "0b7e8f0c-0a39-4a3c-9a56-3f1d6a0e0003",
    "payroll": "0b7e8f0c-0a39-4a3c-9a56-3f1d6a0e0004",
}


@pytest.fixture
def filled(store: QdrantStore, embedder) -> QdrantStore:
    store.ensure_collection(model_name=embedder.model_name, dimension=embedder.dimension)
    records = [
        chunk_record(POINT_IDS[name], text=text, title=name.title(), source=f"kb/{name}.md")
        for name, text in PASSAGES.items()
    ]
    texts = [r.embedding_text() for r in records]
    encoder = LexicalEncoder()
    store.upsert(
        records, embedder.embed(texts), [encoder.encode_document(t) for t in texts], tenant=DEFAULT_TENANT
    )
    return store


def lexical_scores(
    store: QdrantStore, embedder, settings: Settings, **retrieval: object
) -> dict[str, float | None]:
    retriever = Retriever(store, embedder, msgspec.structs.replace(settings.retrieval, **retrieval))
    try:
        candidates, timings = retriever.search(QUESTION)
    finally:
        retriever.close()
    assert ("expand" in timings) == (retriever.settings.expansion_terms > 0)  # its cost is reported
    return {c.record.source.removeprefix("kb/").removesuffix(".md"): c.lexical_score for c in candidates}


def test_the_best_dense_hit_lends_bm25_the_words_of_a_passage_the_question_does_not_use(
    filled, embedder, settings
) -> None:
    plain = lexical_scores(filled, embedder, settings, expansion_terms=0)
    expanded = lexical_scores(filled, embedder, settings, expansion_docs=1)

    assert plain["granite"] and plain["granite"] > 0  # shares "countertop" and "cost"
    assert plain.get("quartz") is None  # not one word in common with the question
    assert expanded["quartz"] is not None and expanded["quartz"] > 0
    assert expanded.get("payroll") is None  # expansion terms come from the feedback, nowhere else


def test_a_store_without_sparse_samples_still_answers(filled, embedder, settings, monkeypatch) -> None:
    def broken(limit: int, **_: object) -> list:
        raise ConnectionError("scroll refused")

    monkeypatch.setattr(filled, "sample_sparse", broken)
    scores = lexical_scores(filled, embedder, settings, expansion_docs=1)
    assert scores["granite"] and scores.get("quartz") is None  # searched, just not expanded
