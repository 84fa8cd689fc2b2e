"""Fusing the dense and lexical candidates into one ranking: named strategies side by side.

``fuse`` gathers both retrievers' hits into one pool (``Candidates``) and asks a strategy for
one score per candidate. Three strategies, chosen by ``retrieval.fusion`` or
``kb eval --fusion NAME``:

* ``weighted`` (the default, ``WeightedFusion``): min-max normalised scores combined convexly
  with the query policy's dense weight, then a dense feedback step;
* ``rrf`` (``ReciprocalRankFusion``): reciprocal-rank fusion, ranks only, equal votes;
* ``dbsf`` (``DistributionFusion``): Qdrant's distribution-based score fusion.

Why weighted is the default: RRF and DBSF give both retrievers an equal vote on every question,
and RRF throws away how far apart the scores are. Which retriever deserves the vote depends on
the question: on English prose all-MiniLM-L6-v2 is much better than BM25, on text it cannot read
(other languages, error codes, product names) it is the other way round. Equal votes cost little
where the two mostly agree (English web passages) and most where they do not: a German or
Russian knowledge base, or one full of error codes (docs/evaluation.md, "Fusion strategies").
Only a weight that follows the query serves both.

With only one retriever's hits every strategy returns that retriever's own order (cosine or BM25):
single-retriever modes are the baselines fusion is measured by. Everything here is arithmetic on
at most 2 x ``candidates`` hits: under a millisecond. Nothing here touches the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.records import ScoredChunk, SearchHit
from app.settings import FusionName, RetrievalSettings

__all__ = [
    "FUSIONS",
    "Candidates",
    "DistributionFusion",
    "FusionStrategy",
    "ReciprocalRankFusion",
    "WeightedFusion",
    "fuse",
    "fusion_strategy",
]


@dataclass(frozen=True, slots=True)
class Candidates:
    """The union of both retrievers' hits, each chunk once, in first-seen order."""

    hits: list[SearchHit]
    """One hit per chunk (the dense one where both returned it: it carries the sparse vector)."""
    dense: np.ndarray
    """Cosine to the query per candidate (from its vector, so lexical-only hits have theirs too);
    NaN where unknown."""
    lexical: np.ndarray
    """BM25 score per candidate; 0 where BM25 did not return it."""
    in_lexical: np.ndarray
    """Whether BM25 returned the candidate."""
    matrix: np.ndarray | None
    """The candidates' dense vectors, one row each, when every candidate has one."""
    dense_list: list[int]
    """The dense retriever's own result list, best first, as indices into ``hits``."""
    dense_list_scores: np.ndarray
    """The dense retriever's own scores, in ``dense_list`` order."""
    lexical_list: list[int]
    """The lexical retriever's own result list, best first, as indices into ``hits``."""
    lexical_list_scores: np.ndarray
    """BM25 scores in ``lexical_list`` order."""

    @classmethod
    def gather(
        cls,
        dense_hits: Sequence[SearchHit],
        lexical_hits: Sequence[SearchHit],
        query_vector: np.ndarray | None,
    ) -> Candidates:
        position: dict[str, int] = {}
        hits: list[SearchHit] = []
        for hit in (*dense_hits, *lexical_hits):
            if hit.record.point_id not in position:
                position[hit.record.point_id] = len(hits)
                hits.append(hit)
        lexical = np.zeros(len(hits), dtype=np.float64)
        in_lexical = np.zeros(len(hits), dtype=bool)
        for hit in lexical_hits:
            n = position[hit.record.point_id]
            if not in_lexical[n]:
                lexical[n], in_lexical[n] = hit.score, True
        matrix: np.ndarray | None = None
        vectors = [hit.vector for hit in hits if hit.vector is not None]
        if query_vector is not None and hits and len(vectors) == len(hits):
            matrix = np.stack(vectors).astype(np.float32, copy=False)
            dense = (matrix @ query_vector.astype(np.float32, copy=False)).astype(np.float64)
        else:
            # No vectors to score with: the dense retriever's own scores, where it has one.
            dense = np.full(len(hits), np.nan)
            for hit in reversed(dense_hits):
                dense[position[hit.record.point_id]] = hit.score
        return cls(
            hits=hits,
            dense=dense,
            lexical=lexical,
            in_lexical=in_lexical,
            matrix=matrix,
            dense_list=[position[h.record.point_id] for h in dense_hits],
            dense_list_scores=np.array([h.score for h in dense_hits], dtype=np.float64),
            lexical_list=[position[h.record.point_id] for h in lexical_hits],
            lexical_list_scores=np.array([h.score for h in lexical_hits], dtype=np.float64),
        )


class FusionStrategy(Protocol):
    """One way of combining both retrievers' evidence into one score per candidate."""

    def scores(self, candidates: Candidates, *, dense_weight: float) -> np.ndarray:
        """One fused score per candidate (higher is better); both retrievers returned hits."""
        ...


@dataclass(frozen=True, slots=True)
class WeightedFusion:
    """Min-max normalised scores combined convexly with the query's dense weight, plus feedback.

    1. Every candidate has a cosine (lexical-only hits too) and a BM25 score (0 where BM25 did not
       return it); each is min-max normalised over the candidates and combined convexly with the
       dense weight the query policy chose (``app.retrieval.policy``).
    2. Pseudo-relevance feedback: the cosine to the mean vector of the best ``feedback_docs`` of
       that first pass is added, with ``feedback_weight``, to the dense side (Rocchio), and the
       two are combined again. Candidates like the ones the retrievers agree on rise; the query's
       exact wording matters a little less.
    """

    feedback_docs: int = 0
    feedback_weight: float = 0.0

    @classmethod
    def from_settings(cls, settings: RetrievalSettings) -> WeightedFusion:
        return cls(feedback_docs=settings.feedback_docs, feedback_weight=settings.feedback_weight)

    def scores(self, candidates: Candidates, *, dense_weight: float) -> np.ndarray:
        dense = candidates.dense
        # A candidate without a dense score ranks as the worst dense candidate, not as zero.
        dense_filled = np.nan_to_num(dense, nan=float(np.nanmin(dense)) if np.isfinite(dense).any() else 0.0)
        lexical_part = (1.0 - dense_weight) * _minmax(candidates.lexical)
        fused = dense_weight * _minmax(dense_filled) + lexical_part
        matrix = candidates.matrix
        if matrix is not None and self.feedback_docs > 0 and self.feedback_weight > 0.0:
            best = np.argsort(-fused, kind="stable")[: self.feedback_docs]
            centroid = matrix[best].mean(axis=0)
            expanded = dense_filled + self.feedback_weight * (matrix @ centroid).astype(np.float64)
            fused = dense_weight * _minmax(expanded) + lexical_part
        return fused


RRF_K = 60
"""The constant of reciprocal-rank fusion, 1 / (k + rank). Cormack, Clarke and Büttcher (SIGIR
2009) chose 60 on TREC runs and found it robust: it damps the gap between the first few ranks, so
one retriever's first place cannot outvote the other retriever's agreement further down. Qdrant,
Elasticsearch and OpenSearch default to it too, so figures stay comparable with theirs."""


@dataclass(frozen=True, slots=True)
class ReciprocalRankFusion:
    """Reciprocal-rank fusion: each retriever adds 1 / (k + rank) for the chunks it returned.

    Ranks start at 1, as in the original paper. Scores and the query's dense weight are ignored
    by definition: each retriever gets an equal vote.
    """

    k: int = RRF_K

    def scores(self, candidates: Candidates, *, dense_weight: float) -> np.ndarray:
        fused = np.zeros(len(candidates.hits), dtype=np.float64)
        for ranked in (candidates.dense_list, candidates.lexical_list):
            for rank, n in enumerate(ranked, start=1):
                fused[n] += 1.0 / (self.k + rank)
        return fused


@dataclass(frozen=True, slots=True)
class DistributionFusion:
    """Distribution-based score fusion, as Qdrant defines it (``Fusion.DBSF``).

    Each retriever's scores, over its own result list, are normalised with the mean ± 3 sample
    standard deviations as 0 and 1 (not clipped); a chunk's fused score is the sum over the
    retrievers that returned it. A list of one, or of equal scores, normalises to 0.5. The
    query's dense weight is ignored: each retriever gets an equal vote.
    """

    def scores(self, candidates: Candidates, *, dense_weight: float) -> np.ndarray:
        fused = np.zeros(len(candidates.hits), dtype=np.float64)
        for ranked, values in (
            (candidates.dense_list, candidates.dense_list_scores),
            (candidates.lexical_list, candidates.lexical_list_scores),
        ):
            fused[ranked] += _distribution_normalised(values)
        return fused


FUSIONS: Mapping[FusionName, Callable[[RetrievalSettings], FusionStrategy]] = {
    "weighted": WeightedFusion.from_settings,
    "rrf": lambda _settings: ReciprocalRankFusion(),
    "dbsf": lambda _settings: DistributionFusion(),
}
"""The strategies by name, each built from the retrieval settings."""


def fusion_strategy(name: FusionName, settings: RetrievalSettings) -> FusionStrategy:
    """The strategy called ``name``. Raises ``ValueError`` for an unknown name."""
    try:
        build = FUSIONS[name]
    except KeyError:
        raise ValueError(f"unknown fusion {name!r}; expected one of {', '.join(FUSIONS)}") from None
    return build(settings)


def fuse(
    dense_hits: Sequence[SearchHit],
    lexical_hits: Sequence[SearchHit],
    query_vector: np.ndarray | None,
    *,
    strategy: FusionStrategy,
    dense_weight: float,
    limit: int | None = None,
) -> list[ScoredChunk]:
    """One list, best first, each chunk once, with fused, dense and lexical scores; at most
    ``limit`` long.

    With only one retriever's hits the order is that retriever's own (cosine or BM25), whatever
    the strategy: single-retriever modes are the baselines fusion is measured by.
    """
    candidates = Candidates.gather(dense_hits, lexical_hits, query_vector)
    if not candidates.hits:
        return []
    if not dense_hits:
        fused = candidates.lexical
    elif not lexical_hits:
        fused = np.nan_to_num(candidates.dense, nan=-1.0)
    else:
        fused = strategy.scores(candidates, dense_weight=dense_weight)
    order: list[int] = np.argsort(-fused, kind="stable")[:limit].tolist()
    # Python floats and lists from here: indexing numpy arrays one element at a time costs more
    # than the whole conversion, and this runs for every candidate of every question.
    scores: list[float] = fused.tolist()
    dense: list[float] = candidates.dense.tolist()
    lexical: list[float] = candidates.lexical.tolist()
    in_lexical: list[bool] = candidates.in_lexical.tolist()
    hits = candidates.hits
    return [
        ScoredChunk(
            record=hits[n].record,
            score=scores[n],
            dense_score=None if math.isnan(dense[n]) else dense[n],
            lexical_score=lexical[n] if in_lexical[n] else None,
            vector=_as_tuple(hits[n].vector),
        )
        for n in order
    ]


def _as_tuple(vector: np.ndarray | None) -> tuple[float, ...] | None:
    return tuple(vector.tolist()) if vector is not None else None


def _minmax(values: np.ndarray) -> np.ndarray:
    span = float(values.max() - values.min()) if values.size else 0.0
    if span < 1e-9:
        # All equal: no evidence either way, so the other retriever decides.
        return np.zeros_like(values)
    return (values - float(values.min())) / span


def _distribution_normalised(values: np.ndarray) -> np.ndarray:
    if values.size < 2:
        return np.full(values.shape, 0.5)
    mean = float(values.mean())
    spread = 6.0 * float(values.std(ddof=1))
    if spread == 0.0:
        return np.full(values.shape, 0.5)
    return (values - (mean - spread / 2)) / spread
