"""Calibrated relevance: one scale for every question, from evidence that means the same across
questions (the cosine, the share of the query's attainable BM25 score)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from app.records import SparseTerms
from app.retrieval.bm25 import LexicalEncoder
from app.retrieval.calibration import RELEVANCE_MODEL, RelevanceModel, lexical_share, max_lexical_score
from app.retrieval.expansion import DocumentFrequencies
from app.settings import RetrievalSettings

pytestmark = pytest.mark.unit

MODEL = RELEVANCE_MODEL
FLOOR = RetrievalSettings().relevance_floor


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_relevance_rises_with_the_cosine(share: float) -> None:
    values = [MODEL.relevance(c, share) for c in np.linspace(-1.0, 1.0, 41)]
    assert all(b > a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("cosine", [-0.2, 0.2, 0.6])
def test_relevance_rises_with_the_lexical_share(cosine: float) -> None:
    values = [MODEL.relevance(cosine, s) for s in np.linspace(0.0, 1.0, 21)]
    assert all(b > a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize(
    ("cosine", "share"),
    [(-5.0, -3.0), (5.0, 7.0), (None, None), (math.nan, math.nan), (1.0, 1.0), (-1.0, 0.0)],
)
def test_relevance_is_bounded_whatever_the_evidence(cosine: float | None, share: float | None) -> None:
    assert 0.0 <= MODEL.relevance(cosine, share) <= 1.0


def test_missing_evidence_counts_as_none() -> None:
    assert MODEL.relevance(None, None) == MODEL.relevance(0.0, 0.0)
    assert MODEL.relevance(0.4, None) == MODEL.relevance(0.4, 0.0)


def test_an_unrelated_chunk_scores_below_the_floor_and_a_close_one_above() -> None:
    # all-MiniLM-L6-v2 gives unrelated text ~0.1 and a passage answering the question ~0.6
    assert MODEL.relevance(0.1, 0.1) < FLOOR
    assert MODEL.relevance(0.6, 0.3) > FLOOR


def test_the_weights_must_keep_relevance_monotone() -> None:
    with pytest.raises(ValueError, match="positive"):
        RelevanceModel(bias=0.0, dense=-1.0, lexical=1.0)
    with pytest.raises(ValueError, match="positive"):
        RelevanceModel(bias=0.0, dense=1.0, lexical=0.0)


# --- the lexical share ------------------------------------------------------------------------------


def test_max_lexical_score_is_bm25_saturation_times_weighted_idf() -> None:
    query = SparseTerms([1, 2], [1.0, 0.5])
    idf = {1: 2.0, 2: 4.0}.__getitem__
    assert max_lexical_score(query, idf, k1=1.2) == pytest.approx(2.2 * (2.0 + 0.5 * 4.0))


def test_lexical_share_is_clipped_to_unit_range_and_unknown_without_evidence() -> None:
    assert lexical_share(3.0, 6.0) == pytest.approx(0.5)
    assert lexical_share(9.0, 6.0) == 1.0
    assert lexical_share(None, 6.0) is None
    assert lexical_share(3.0, 0.0) is None


def _bm25(query: SparseTerms, document: SparseTerms, frequencies: DocumentFrequencies) -> float:
    weights = dict(zip(document.indices, document.values, strict=True))
    return sum(
        w * frequencies.idf(i) * weights.get(i, 0.0) for i, w in zip(query.indices, query.values, strict=True)
    )


def test_a_weak_match_scores_low_however_many_candidates_it_competes_with() -> None:
    # Min-max over the candidates makes the best of a weak lot 1.0; the share does not look at the
    # other candidates at all: a chunk matching one common word of a question stays low.
    encoder = LexicalEncoder()
    corpus = [f"The team meets on day {n} to plan the week." for n in range(200)]
    corpus.append("Payroll is approved by the finance controller before the tenth.")
    vectors = [encoder.encode_document(text) for text in corpus]
    frequencies = DocumentFrequencies.of(vectors)
    query = encoder.encode_query("which team approves payroll")
    maximum = max_lexical_score(query, frequencies.idf, k1=encoder.k1)
    shares = [lexical_share(_bm25(query, v, frequencies), maximum) or 0.0 for v in vectors]
    weak, answer = max(shares[:-1]), shares[-1]
    assert weak < 0.15
    assert answer > 3 * weak
    assert MODEL.relevance(0.1, weak) < FLOOR
