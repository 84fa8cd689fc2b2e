"""Fusing the dense and lexical candidate lists into one ranking.

Naive reciprocal-rank fusion throws away how *confident* each retriever is, and on English web
text it lets a weaker BM25 list drag a good dense ranking down. Here both retrievers' scores are
put on one scale by their own distribution over the candidates (z-scores), and combined with a
weight. Every candidate gets both scores: the dense cosine is computed from the vector Qdrant
returns with each hit, and a dense-only hit that the lexical retriever did not return simply has
no lexical evidence (score 0 before normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.records import ScoredChunk
from app.store import SearchHit

__all__ = ["fuse"]


def _zscores(values: np.ndarray) -> np.ndarray:
    if values.size == 0:
        return values
    spread = float(values.std())
    if spread < 1e-9:
        return np.zeros_like(values)
    return (values - float(values.mean())) / spread


def fuse(
    dense_hits: Sequence[SearchHit],
    lexical_hits: Sequence[SearchHit],
    query_vector: np.ndarray | None,
    *,
    dense_weight: float,
) -> list[ScoredChunk]:
    """One list, best first, each chunk once, with fused, dense and lexical scores."""
    by_id: dict[str, SearchHit] = {}
    for hit in (*dense_hits, *lexical_hits):
        by_id.setdefault(hit.record.point_id, hit)
    if not by_id:
        return []
    ids = list(by_id)
    lexical = {hit.record.point_id: hit.score for hit in lexical_hits}

    dense_scores = np.full(len(ids), np.nan, dtype=np.float32)
    vectors = [by_id[i].vector for i in ids]
    if query_vector is not None and all(v is not None for v in vectors):
        dense_scores = np.stack(vectors) @ query_vector.astype(np.float32)
    else:
        for n, i in enumerate(ids):
            for hit in dense_hits:
                if hit.record.point_id == i:
                    dense_scores[n] = hit.score
    lexical_scores = np.array([lexical.get(i, 0.0) for i in ids], dtype=np.float32)

    if not dense_hits:
        fused = lexical_scores.copy()
    elif not lexical_hits:
        fused = np.nan_to_num(dense_scores, nan=-1.0)
    else:
        fused = dense_weight * _zscores(np.nan_to_num(dense_scores, nan=float(np.nanmin(dense_scores)))) + (
            1.0 - dense_weight
        ) * _zscores(lexical_scores)

    order = np.argsort(-fused, kind="stable")
    return [
        ScoredChunk(
            record=by_id[ids[n]].record,
            score=float(fused[n]),
            dense_score=None if np.isnan(dense_scores[n]) else float(dense_scores[n]),
            lexical_score=float(lexical[ids[n]]) if ids[n] in lexical else None,
            vector=tuple(by_id[ids[n]].vector.tolist()) if by_id[ids[n]].vector is not None else None,
        )
        for n in order
    ]
