"""Calibrated relevance: how likely a chunk is to hold the answer, on a scale that means the same
for every question.

The fused score orders candidates, but it is min-max normalised over one question's candidates,
so the best candidate of any question, however unrelated, scores near 1. Relevance is instead
read from evidence whose scale does not depend on the other candidates:

* the dense cosine of the chunk to the question;
* the lexical share: the chunk's BM25 score divided by the most the query could score on any
  chunk (every query term matched at BM25's saturation, ``(k1 + 1) * sum of weight * idf``), so
  a chunk matching the rare words of a question scores high and one matching a common word low,
  whatever the question's length (``lexical_share``).

The two are mapped to 0-1 by a logistic fit on a labelled set of answerable and unanswerable
questions (``RELEVANCE_MODEL``, refitted by ``bench/calibrate.py``). The retriever hands each
candidate on as a ``JudgedChunk``: the ``ScoredChunk`` the ranking stage orders by its fused score,
with that relevance, which the relevance floor judges and users see as a source's score
(``relevance_of``). Nothing here touches the store or the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from app.records import ScoredChunk, SparseTerms

__all__ = [
    "RELEVANCE_MODEL",
    "JudgedChunk",
    "RelevanceModel",
    "lexical_share",
    "max_lexical_score",
    "relevance_of",
]


class JudgedChunk(ScoredChunk, frozen=True, kw_only=True):
    """A fused candidate with its calibrated relevance. Ranking keeps the type (it replaces fields
    of the chunks it is given), so what reaches the prompt still carries it."""

    relevance: float
    """Calibrated relevance (0-1), the same scale for every question."""

    lexical_share: float | None = None
    """``lexical_score`` as a share of the most the query could score (0-1); None when unknown."""


def relevance_of(chunk: ScoredChunk) -> float | None:
    """The calibrated relevance of a retrieved chunk; None for one the retriever did not judge."""
    return chunk.relevance if isinstance(chunk, JudgedChunk) else None


@dataclass(frozen=True, slots=True)
class RelevanceModel:
    """relevance = 1 / (1 + exp(-(bias + dense * cosine + lexical * lexical_share)))."""

    bias: float
    dense: float
    """Weight of the cosine; must be positive (more similar is never less relevant)."""
    lexical: float
    """Weight of the lexical share; must be positive."""

    def __post_init__(self) -> None:
        if self.dense <= 0.0 or self.lexical <= 0.0:
            raise ValueError("relevance weights must be positive: relevance is monotone in each evidence")

    def relevance(self, cosine: float | None, share: float | None) -> float:
        """Calibrated relevance in (0, 1). Missing evidence counts as none: a cosine of 0 (an
        unrelated text), a lexical share of 0 (no query term matched)."""
        c = 0.0 if cosine is None or math.isnan(cosine) else min(1.0, max(-1.0, cosine))
        s = 0.0 if share is None or math.isnan(share) else min(1.0, max(0.0, share))
        z = self.bias + self.dense * c + self.lexical * s
        # Written both ways so neither branch overflows for large |z|.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)


RELEVANCE_MODEL = RelevanceModel(bias=-3.36, dense=8.49, lexical=7.28)
"""Fitted by ``python bench/calibrate.py`` (logistic regression, both classes weighing the same)
on the fitting half (even lines) of both labelled sets of bench/data/noanswer: this project's docs
and the pg-essays corpus; answer chunks of answerable questions against every candidate of
unanswerable ones, with all-MiniLM-L6-v2 and the BM25 of ``app.retrieval.bm25``. The odd lines
are held out: ``python bench/noanswer.py`` reports them per floor (docs/evaluation.md,
"Calibration"). Refit after changing the embedding model, the BM25 parameters or the term
extraction: run the script, paste the constants it prints, and check the held-out table before
choosing ``retrieval.relevance_floor``."""


def max_lexical_score(query: SparseTerms, idf: Callable[[int], float], *, k1: float) -> float:
    """The most BM25 can score for ``query`` on any chunk: every term matched, each at its
    term-frequency saturation ``k1 + 1``, times its query weight and IDF."""
    return (k1 + 1.0) * sum(
        weight * idf(index) for index, weight in zip(query.indices, query.values, strict=True)
    )


def lexical_share(score: float | None, maximum: float) -> float | None:
    """The chunk's BM25 ``score`` as a share of the query's ``maximum``, in 0-1; None when either
    is unknown. The IDF behind ``maximum`` is estimated on a sample, so the share is clipped."""
    if score is None or maximum <= 0.0:
        return None
    return min(1.0, max(0.0, score / maximum))
