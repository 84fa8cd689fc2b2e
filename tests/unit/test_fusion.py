"""Fusion of dense and lexical candidates, on small synthetic cases where one retriever is right,
and the named strategies side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import numpy as np
import pytest

from app.records import ChunkRecord, ScoredChunk, SearchHit
from app.retrieval.fusion import (
    FUSIONS,
    DistributionFusion,
    ReciprocalRankFusion,
    WeightedFusion,
    fuse,
    fusion_strategy,
)
from app.settings import FusionName, RetrievalSettings

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
WEIGHTED = WeightedFusion()


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


def order(chunks: Sequence[ScoredChunk]) -> list[str]:
    return [c.record.point_id for c in chunks]


# --- one retriever is clearly right --------------------------------------------------------


def test_confident_dense_ranking_survives_a_flat_unsure_lexical_list() -> None:
    # The answer is far ahead on cosine; BM25 scores are nearly equal and prefer a distractor.
    pool = dense_pool({"answer": 0.82, "d1": 0.55, "d2": 0.52, "d3": 0.50, "d4": 0.31, "d5": 0.30})
    bm25 = lexical(pool, {"d1": 7.9, "d2": 7.8, "answer": 7.6, "d3": 7.5})

    fused = fuse(list(pool.values()), bm25, QUERY, strategy=WEIGHTED, dense_weight=0.9)

    assert order(fused)[0] == "answer"


def test_exact_identifier_match_wins_when_the_query_is_opaque_to_the_model() -> None:
    # "E6305": the model sees near-identical error pages (cosines within 0.02); one page alone
    # contains the code, and BM25 says so loudly.
    pool = dense_pool(
        {"E6350": 0.62, "E6035": 0.61, "E6305": 0.60, "other1": 0.35, "other2": 0.30, "other3": 0.22}
    )
    bm25 = lexical(pool, {"E6305": 14.0, "other1": 2.0})

    fused = fuse(list(pool.values()), bm25, QUERY, strategy=WEIGHTED, dense_weight=0.2)

    assert order(fused)[0] == "E6305"


def test_lexical_only_hit_joins_the_ranking_with_its_true_cosine() -> None:
    pool = dense_pool({"a": 0.7, "b": 0.6, "c": 0.5, "lexonly": 0.4})
    dense_hits = [pool["a"], pool["b"], pool["c"]]
    bm25 = lexical(pool, {"lexonly": 12.0, "a": 3.0})

    fused = fuse(dense_hits, bm25, QUERY, strategy=WEIGHTED, dense_weight=0.5)

    by_id = {c.record.point_id: c for c in fused}
    assert set(by_id) == {"a", "b", "c", "lexonly"}  # each chunk once
    assert by_id["lexonly"].dense_score == pytest.approx(0.4, abs=1e-5)  # cosine from its vector
    assert by_id["b"].lexical_score is None  # BM25 never saw it
    assert by_id["lexonly"].lexical_score == 12.0


# --- single-retriever modes are the baselines ----------------------------------------------

ALL_STRATEGIES = (
    WeightedFusion(feedback_docs=5, feedback_weight=1.0),
    ReciprocalRankFusion(),
    DistributionFusion(),
)


def test_dense_only_keeps_cosine_order_and_scores() -> None:
    pool = dense_pool({"a": 0.4, "b": 0.9, "c": 0.6})
    for strategy in ALL_STRATEGIES:
        fused = fuse(list(pool.values()), [], QUERY, strategy=strategy, dense_weight=0.9)
        assert order(fused) == ["b", "c", "a"]
        assert [c.score for c in fused] == pytest.approx([0.9, 0.6, 0.4], abs=1e-5)


def test_lexical_only_keeps_bm25_order() -> None:
    pool = dense_pool({"a": 0.9, "b": 0.1, "c": 0.5})
    for strategy in ALL_STRATEGIES:
        fused = fuse(
            [], lexical(pool, {"a": 1.0, "b": 5.0, "c": 3.0}), None, strategy=strategy, dense_weight=0.9
        )
        assert order(fused) == ["b", "c", "a"]
        assert all(c.dense_score is None for c in fused)


def test_nothing_in_nothing_out() -> None:
    assert all(fuse([], [], QUERY, strategy=strategy, dense_weight=0.5) == [] for strategy in ALL_STRATEGIES)


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

    feedback = WeightedFusion(feedback_docs=2, feedback_weight=1.0)
    without = order(fuse(hits, bm25, QUERY, strategy=WEIGHTED, dense_weight=0.9))
    with_feedback = order(fuse(hits, bm25, QUERY, strategy=feedback, dense_weight=0.9))

    assert without.index("isolated") < without.index("sibling")
    assert with_feedback.index("sibling") < with_feedback.index("isolated")


# --- reciprocal-rank fusion ------------------------------------------------------------------


def test_rrf_adds_one_over_k_plus_rank_from_each_list_that_returned_the_chunk() -> None:
    pool = dense_pool({"a": 0.9, "b": 0.8, "c": 0.7})
    bm25 = lexical(pool, {"c": 9.0, "a": 1.0})

    fused = {
        c.record.point_id: c.score
        for c in fuse(list(pool.values()), bm25, QUERY, strategy=ReciprocalRankFusion(), dense_weight=0.9)
    }

    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)  # dense first, lexical second
    assert fused["b"] == pytest.approx(1 / 62)  # dense only
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)


def test_rrf_ignores_score_gaps_and_the_dense_weight() -> None:
    # The dense side is sure of "answer" (0.9 against 0.3); BM25 barely prefers "distractor".
    # RRF sees two first places either way and cannot tell who is sure.
    pool = dense_pool({"answer": 0.9, "distractor": 0.3})
    bm25 = lexical(pool, {"distractor": 5.01, "answer": 5.0})
    rrf = ReciprocalRankFusion()

    for weight in (0.1, 0.9):
        fused = fuse(list(pool.values()), bm25, QUERY, strategy=rrf, dense_weight=weight)
        assert fused[0].score == pytest.approx(fused[1].score)
    assert order(fuse(list(pool.values()), bm25, QUERY, strategy=WEIGHTED, dense_weight=0.9))[0] == "answer"


# --- distribution-based score fusion ------------------------------------------------------------


def test_dbsf_normalises_each_list_by_its_mean_and_three_sample_deviations_and_sums() -> None:
    pool = dense_pool({"a": 0.9, "b": 0.6, "c": 0.3})
    bm25 = lexical(pool, {"c": 8.0, "a": 4.0})

    fused = {
        c.record.point_id: c.score
        for c in fuse(list(pool.values()), bm25, QUERY, strategy=DistributionFusion(), dense_weight=0.9)
    }

    dense = np.array([0.9, 0.6, 0.3])
    low, high = dense.mean() - 3 * dense.std(ddof=1), dense.mean() + 3 * dense.std(ddof=1)
    bm25_scores = np.array([8.0, 4.0])
    low_l, high_l = (
        bm25_scores.mean() - 3 * bm25_scores.std(ddof=1),
        bm25_scores.mean() + 3 * bm25_scores.std(ddof=1),
    )

    assert fused["a"] == pytest.approx((0.9 - low) / (high - low) + (4.0 - low_l) / (high_l - low_l))
    assert fused["b"] == pytest.approx((0.6 - low) / (high - low))  # BM25 did not return it: adds 0
    assert fused["c"] == pytest.approx((0.3 - low) / (high - low) + (8.0 - low_l) / (high_l - low_l))


def test_dbsf_scores_a_list_of_one_or_of_equal_scores_as_the_middle() -> None:
    pool = dense_pool({"a": 0.5, "b": 0.5})
    bm25 = lexical(pool, {"b": 3.0})

    fused = {
        c.record.point_id: c.score
        for c in fuse(list(pool.values()), bm25, QUERY, strategy=DistributionFusion(), dense_weight=0.9)
    }

    assert fused == pytest.approx({"a": 0.5, "b": 1.0})


# --- the registry -------------------------------------------------------------------------------


def test_every_configurable_fusion_name_has_a_strategy() -> None:
    assert set(FUSIONS) == set(get_args(FusionName))
    settings = RetrievalSettings(feedback_docs=3, feedback_weight=0.5)
    assert fusion_strategy("weighted", settings) == WeightedFusion(feedback_docs=3, feedback_weight=0.5)
    assert fusion_strategy("rrf", settings) == ReciprocalRankFusion(k=60)
    assert isinstance(fusion_strategy("dbsf", settings), DistributionFusion)


def test_an_unknown_fusion_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fusion 'borda'"):
        fusion_strategy("borda", RetrievalSettings())  # type: ignore[arg-type]
