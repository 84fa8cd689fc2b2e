"""The relevance floor: what counts as evidence depends on whether the model can read the text.

A stand-in embedder (it implements the ``Embedder`` protocol with fixed vectors) lets the test
choose cosines exactly; the store, the BM25 vectors and the retriever are the real ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from app.retrieval import Retriever
from app.retrieval.bm25 import LexicalEncoder
from app.store import DEFAULT_TENANT, QdrantStore
from tests.factories import chunk_record

pytestmark = pytest.mark.integration

QUESTION = "Which team approves payroll"
DOC = "The team keeps nightly database snapshots for a week."
"""Shares only the question's most common word."""
PAYROLL_DOC = "Payroll runs on the 25th; the finance team approves it two days before."
"""Shares the question's distinctive words."""


class FixedEmbedder:
    """Question → x axis, every document → y axis: cosine 0, far below any floor."""

    model_name = "fixed-test-vectors"
    dimension = 3
    max_tokens = 256

    def __init__(self, tokens_per_word: int) -> None:
        self.tokens_per_word = tokens_per_word

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.array(
            [[1.0, 0.0, 0.0] if t == QUESTION else [0.0, 1.0, 0.0] for t in texts], dtype=np.float32
        )

    def count(self, text: str) -> int:
        return self.tokens_per_word * len(text.split())

    def offsets(self, text: str) -> list[tuple[int, int]]:
        raise NotImplementedError


def retriever_over_one_document(
    store: QdrantStore, settings, tokens_per_word: int, text: str = DOC
) -> Retriever:
    embedder = FixedEmbedder(tokens_per_word)
    store.ensure_collection(model_name=embedder.model_name, dimension=embedder.dimension)
    record = chunk_record(
        "7f9c2ba4-e88f-4b8e-9b1c-3a5d2f0e1a11", text=text, title="Database", source="ops/db.md"
    )
    store.upsert(
        [record],
        embedder.embed([text]),
        [LexicalEncoder().encode_document(record.embedding_text())],
        tenant=DEFAULT_TENANT,
    )
    return Retriever(store, embedder, settings.retrieval)


async def test_on_readable_text_a_shared_common_word_is_not_relevance(store, settings) -> None:
    retriever = retriever_over_one_document(store, settings, tokens_per_word=1)
    result = await retriever.retrieve(QUESTION)
    assert result.status == "empty"
    retriever.close()


async def test_on_text_the_model_cannot_read_a_lexical_match_counts(store, settings) -> None:
    retriever = retriever_over_one_document(store, settings, tokens_per_word=3, text=PAYROLL_DOC)
    result = await retriever.retrieve(QUESTION)
    assert result.status == "ok"
    assert [c.record.source for c in result.candidates] == ["ops/db.md"]
    retriever.close()


async def test_on_text_the_model_cannot_read_a_shared_common_word_is_not_relevance(store, settings) -> None:
    retriever = retriever_over_one_document(store, settings, tokens_per_word=3)
    result = await retriever.retrieve(QUESTION)
    assert result.status == "empty"
    retriever.close()
