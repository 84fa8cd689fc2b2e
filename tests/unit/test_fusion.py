"""Fusion of dense and lexical candidates, on small synthetic cases where one retriever is right."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from app.records import ChunkRecord, SearchHit
from app.retrieval import Retriever
from app.retrieval.bm25 import LexicalEncoder
from app.retrieval.fusion import (
    dense_weight_for,
    dense_weight_for_length,
    fuse,
    has_identifier,
    tokens_per_word,
)
from app.settings import RetrievalSettings

pytestmark = pytest.mark.unit

DIM = 8


def record(name: str, text: str = "") -> ChunkRecord:
    return ChunkRecord(
        point_id=name,
        doc_id=name,
        source=name,
        title=name,
        chunk_index=0,
        chunk_count=1,
        text=text or f"text of {name}",
        doc_hash="h",
        text_hash=name,
        ingested_at="2024-01-01T00:00:00Z",
    )


def unit(vector: Sequence[float]) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    return v / np.linalg.norm(v)


def vector_with_cosine(query: np.ndarray, cosine: float, axis: int) -> np.ndarray:
    """A unit vector whose cosine to ``query`` (a basis vector e0) is exactly ``cosine``."""
    v = np.zeros(DIM, dtype=np.float32)
    v[0] = cosine
    v[axis] = np.sqrt(1.0 - cosine**2)
    return v


QUERY = unit([1, 0, 0, 0, 0, 0, 0, 0])


def dense_pool(cosines: dict[str, float]) -> dict[str, SearchHit]:
    """Dense hits with the given cosines, each pointing off in its own direction."""
    hits = {}
    for n, (name, cosine) in enumerate(cosines.items()):
        vector = vector_with_cosine(QUERY, cosine, axis=1 + n % (DIM - 1))
        hits[name] = SearchHit(record=record(name), score=cosine, vector=vector)
    return hits


def lexical(pool: dict[str, SearchHit], scores: dict[str, float]) -> list[SearchHit]:
    hits = [
        SearchHit(record=pool[name].record, score=score, vector=pool[name].vector)
        for name, score in scores.items()
    ]
    return sorted(hits, key=lambda h: -h.score)


def order(chunks) -> list[str]:
    return [c.record.point_id for c in chunks]


# --- one retriever is clearly right --------------------------------------------------------


def test_confident_dense_ranking_survives_a_flat_unsure_lexical_list() -> None:
    # The answer is far ahead on cosine; BM25 scores are nearly equal and prefer a distractor.
    pool = dense_pool({"answer": 0.82, "d1": 0.55, "d2": 0.52, "d3": 0.50, "d4": 0.31, "d5": 0.30})
    bm25 = lexical(pool, {"d1": 7.9, "d2": 7.8, "answer": 7.6, "d3": 7.5})

    fused = fuse(list(pool.values()), bm25, QUERY, dense_weight=0.9)

    assert order(fused)[0] == "answer"


def test_exact_identifier_match_wins_when_the_query_is_opaque_to_the_model() -> None:
    # "E6305": the model sees near-identical error pages (cosines within 0.02); one page alone
    # contains the code, and BM25 says so loudly.
    pool = dense_pool(
        {"E6350": 0.62, "E6035": 0.61, "E6305": 0.60, "other1": 0.35, "other2": 0.30, "other3": 0.22}
    )
    bm25 = lexical(pool, {"E6305": 14.0, "other1": 2.0})

    fused = fuse(list(pool.values()), bm25, QUERY, dense_weight=0.2)

    assert order(fused)[0] == "E6305"


def test_lexical_only_hit_joins_the_ranking_with_its_true_cosine() -> None:
    pool = dense_pool({"a": 0.7, "b": 0.6, "c": 0.5, "lexonly": 0.4})
    dense_hits = [pool["a"], pool["b"], pool["c"]]
    bm25 = lexical(pool, {"lexonly": 12.0, "a": 3.0})

    fused = fuse(dense_hits, bm25, QUERY, dense_weight=0.5)

    by_id = {c.record.point_id: c for c in fused}
    assert set(by_id) == {"a", "b", "c", "lexonly"}  # each chunk once
    assert by_id["lexonly"].dense_score == pytest.approx(0.4, abs=1e-5)  # cosine from its vector
    assert by_id["b"].lexical_score is None  # BM25 never saw it
    assert by_id["lexonly"].lexical_score == 12.0


# --- single-retriever modes are the baselines ----------------------------------------------


def test_dense_only_keeps_cosine_order_and_scores() -> None:
    pool = dense_pool({"a": 0.4, "b": 0.9, "c": 0.6})
    fused = fuse(list(pool.values()), [], QUERY, dense_weight=0.9, feedback_docs=5, feedback_weight=1.0)
    assert order(fused) == ["b", "c", "a"]
    assert [c.score for c in fused] == pytest.approx([0.9, 0.6, 0.4], abs=1e-5)


def test_lexical_only_keeps_bm25_order() -> None:
    pool = dense_pool({"a": 0.9, "b": 0.1, "c": 0.5})
    fused = fuse([], lexical(pool, {"a": 1.0, "b": 5.0, "c": 3.0}), None, dense_weight=0.9)
    assert order(fused) == ["b", "c", "a"]
    assert all(c.dense_score is None for c in fused)


def test_nothing_in_nothing_out() -> None:
    assert fuse([], [], QUERY, dense_weight=0.5) == []


# --- feedback --------------------------------------------------------------------------------


def test_feedback_lifts_a_candidate_like_the_agreed_top_over_an_isolated_one() -> None:
    # Three relevant passages share a topic direction (axis 1); "isolated" points elsewhere and
    # has a slightly higher cosine than "sibling", which shares the topic.
    topic = unit([0.7, 0.71, 0, 0, 0, 0, 0, 0])
    hits = [
        SearchHit(record=record("top1"), score=0.0, vector=topic),
        SearchHit(record=record("top2"), score=0.0, vector=unit([0.72, 0.69, 0.05, 0, 0, 0, 0, 0])),
        SearchHit(record=record("isolated"), score=0.0, vector=vector_with_cosine(QUERY, 0.62, axis=5)),
        SearchHit(record=record("sibling"), score=0.0, vector=unit([0.6, 0.8, 0, 0, 0, 0, 0, 0])),
        SearchHit(record=record("far"), score=0.0, vector=vector_with_cosine(QUERY, 0.1, axis=6)),
    ]
    bm25 = [SearchHit(record=hits[0].record, score=5.0, vector=hits[0].vector)]

    without = order(fuse(hits, bm25, QUERY, dense_weight=0.9))
    with_feedback = order(fuse(hits, bm25, QUERY, dense_weight=0.9, feedback_docs=2, feedback_weight=1.0))

    assert without.index("isolated") < without.index("sibling")
    assert with_feedback.index("sibling") < with_feedback.index("isolated")


# --- the weight follows the text -------------------------------------------------------------


@pytest.mark.parametrize(
    ("tpw", "expected"),
    [(1.2, 0.9), (1.5, 0.9), (1.75, 0.55), (2.0, 0.2), (3.1, 0.2)],
)
def test_dense_weight_moves_linearly_from_readable_to_opaque(tpw: float, expected: float) -> None:
    weight = dense_weight_for(tpw, readable=1.5, opaque=2.0, readable_weight=0.9, opaque_weight=0.2)
    assert weight == pytest.approx(expected)


def test_tokens_per_word_counts_model_tokens_over_words() -> None:
    count = {"ein Satz": 4, "plain words here": 3, "": 0}.__getitem__
    assert tokens_per_word(["ein Satz", "plain words here", ""], count) == pytest.approx(7 / 5)
    assert tokens_per_word([], count) == 0.0


@pytest.mark.parametrize(
    "text",
    ["E6305", "what does ERR-4471 mean", "x86_64 build fails", "getUserById", "max_retries", "order 1234567"],
)
def test_identifiers_are_recognised(text: str) -> None:
    assert has_identifier(text)


@pytest.mark.parametrize(
    "text",
    [
        "films from 1991",
        "Which U.S. state",
        "part of _____.",
        "civic-military airports",
        "Formula 1 drivers",
        "Überfahrt",
        "why did the us enter ww1",
        "headquarters of the MI6",
        "5G rollout",
        "vitamin B12",
    ],
)
def test_ordinary_words_years_and_abbreviations_are_not_identifiers(text: str) -> None:
    assert not has_identifier(text)


class _PiecesPerWord:
    """A stand-in embedder whose tokenizer splits every word into ``pieces`` tokens."""

    def __init__(self, pieces: float) -> None:
        self.pieces = pieces

    def count(self, text: str) -> int:
        return round(len(text.split()) * self.pieces)


def _weighting(question: str, pieces: float) -> tuple[float, bool]:
    settings = RetrievalSettings()
    retriever = Retriever(None, _PiecesPerWord(pieces), settings)  # type: ignore[arg-type]
    pool = dense_pool({"a": 0.5, "b": 0.4})
    terms = len(LexicalEncoder().encode_query(question))
    try:
        return retriever._weighting(question, terms, list(pool.values()), list(pool.values()))
    finally:
        retriever.close()


def _weight_for(question: str, pieces: float) -> float:
    return _weighting(question, pieces)[0]


def test_retriever_trusts_the_model_on_readable_text_and_bm25_on_opaque_text_or_identifiers() -> None:
    settings = RetrievalSettings()
    assert _weight_for("how do I rotate keys", pieces=1.3) == settings.dense_weight
    assert _weight_for("Wie beantrage ich Urlaub", pieces=2.4) == pytest.approx(settings.opaque_dense_weight)
    assert _weight_for("what does E6305 mean", pieces=1.3) == settings.opaque_dense_weight


def test_long_specific_questions_lean_on_bm25() -> None:
    settings = RetrievalSettings()
    short = "how do I rotate keys"  # 2 index terms
    long = "which cheap watch brand keeps better time than an expensive Patek Philippe with quartz movements"
    assert len(LexicalEncoder().encode_query(long)) >= settings.long_question_terms
    assert _weight_for(short, pieces=1.3) == settings.dense_weight
    assert _weight_for(long, pieces=1.3) == settings.long_question_dense_weight


def test_dense_weight_falls_linearly_with_question_length() -> None:
    weights = [
        dense_weight_for_length(n, short=4, long=8, short_weight=0.9, long_weight=0.5) for n in range(1, 11)
    ]
    assert weights[:4] == [0.9] * 4
    assert weights[5] == pytest.approx(0.7)  # 6 terms: half way
    assert weights[7:] == [0.5] * 3
    assert weights == sorted(weights, reverse=True)


def test_only_opaque_text_or_identifiers_let_a_lexical_match_count_alone() -> None:
    long = "which cheap watch brand keeps better time than an expensive Patek Philippe with quartz movements"
    assert _weighting("how do I rotate keys", pieces=1.3)[1] is False
    assert _weighting(long, pieces=1.3)[1] is False  # long, but readable: the cosine still judges
    assert _weighting("Wie beantrage ich Urlaub", pieces=2.4)[1] is True
    assert _weighting("what does E6305 mean", pieces=1.3)[1] is True
