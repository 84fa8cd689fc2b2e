"""Fusing the dense and lexical candidates into one ranking.

Why not reciprocal-rank fusion: RRF gives the weaker retriever an equal vote and throws away how
far apart the scores are. On English web passages and entity abstracts, where all-MiniLM-L6-v2 is
much better than BM25, equal-weight RRF is *worse* than dense alone (0.781 vs 0.798 and 0.454 vs
0.511 nDCG@10, see docs/evaluation.md). On text the model cannot read (other languages, codes,
product names) it is the other way round. So the fusion here is a weighted one whose weight
follows the query, plus a feedback step that lets both retrievers steer the dense side:

1. Every candidate has a cosine (computed from the vector each hit carries, so lexical-only hits
   get theirs too) and a BM25 score (0 where BM25 did not return it).
2. Each score is min-max normalised over the candidates and combined convexly. The dense weight
   is chosen per query by the retriever (``dense_weight_for``, ``has_identifier``): high when
   the model's tokenizer reads the query and the top candidates as ordinary words, low when it
   shreds them into word pieces (a sign the dense model is guessing) or the query names an
   identifier.
3. Pseudo-relevance feedback: the cosine to the mean vector of the best ``feedback_docs`` of
   that first pass is added, with ``feedback_weight``, to the dense side (Rocchio). Candidates
   like the ones the retrievers agree on rise; the query's exact wording matters a little less.

Everything here is arithmetic on at most 2 x ``candidates`` hits: under a millisecond.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from app.records import ScoredChunk, SearchHit

__all__ = ["dense_weight_for", "dense_weight_for_length", "fuse", "has_identifier", "tokens_per_word"]

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_SAMPLE_WORDS = 40
_TOKEN_RE = re.compile(r"\w+(?:-\w+)*", re.UNICODE)
# Error codes, versions, hosts, ticket and order numbers, code symbols: E6305, ERR-4471, x86_64,
# sha256, getUserById, max_retries, 1234567.
_IDENTIFIER_RE = re.compile(
    r"^(?=[\w-]*[^\W\d_])(?=[\w-]*\d)[^\W_]+(?:-[^\W_]+)*$"  # letters and digits, maybe hyphenated
    r"|^\d{5,}$"  # long numbers (years and counts are shorter)
    r"|^[^\W_]+(?:_[^\W_]+)+$"  # snake_case
    r"|^[^\W\d_]*[a-z][A-Z]\w*$"  # camelCase
)


_IDENTIFIER_MIN_LENGTH = 4
"""Shorter letter-digit tokens (ww1, MI6, mp3, 5G, B12) are ordinary vocabulary the model knows,
not codes: treating "why did the us enter ww1" as an identifier query cost msmarco 0.08 nDCG on
that query."""


def has_identifier(text: str) -> bool:
    """Whether ``text`` names an identifier: an exact token the embedding model cannot tell from
    its neighbours (E6305 vs E6350), and that a user who types it wants matched exactly."""
    return any(
        len(word) >= _IDENTIFIER_MIN_LENGTH and _IDENTIFIER_RE.match(word) for word in _TOKEN_RE.findall(text)
    )


def tokens_per_word(texts: Sequence[str], count: Callable[[str], int]) -> float:
    """Model tokens per word over ``texts``: ~1.3 for English prose, 2 and more where the model's
    vocabulary does not cover the text (German: ~2.4). 0.0 when there are no words."""
    tokens = words = 0
    for text in texts:
        # The first few dozen words tell the language as well as the whole text, at a
        # fraction of the tokenizer's time.
        found = _WORD_RE.findall(text)[:_SAMPLE_WORDS]
        if found:
            words += len(found)
            tokens += count(" ".join(found))
    return tokens / words if words else 0.0


def _ramp(x: float, start: float, end: float, at_start: float, at_end: float) -> float:
    """``at_start`` up to ``start``, ``at_end`` from ``end`` on, linear in between (no cliff)."""
    if x <= start or end <= start:
        return at_start if x <= start else at_end
    share = min(1.0, (x - start) / (end - start))
    return at_start + share * (at_end - at_start)


def dense_weight_for(
    tokens_per_word: float, *, readable: float, opaque: float, readable_weight: float, opaque_weight: float
) -> float:
    """Dense weight for a text the model splits into ``tokens_per_word`` pieces per word.

    ``readable_weight`` at or below ``readable`` tokens per word, ``opaque_weight`` at or above
    ``opaque``, linear in between (no cliff for text that is half code, half prose).
    """
    return _ramp(tokens_per_word, readable, opaque, readable_weight, opaque_weight)


def dense_weight_for_length(
    terms: int, *, short: int, long: int, short_weight: float, long_weight: float
) -> float:
    """Dense weight for a question of ``terms`` index terms: ``short_weight`` up to ``short``
    terms, ``long_weight`` from ``long`` terms on, linear in between.

    Why length matters: every extra distinctive word gives BM25 more to match, and a passage
    that contains six of a question's nine rare words is almost surely the one it asks about;
    the embedding of a long question, averaged over all its tokens, blurs those words together
    (all-MiniLM-L6-v2 was trained on short web queries). On long, specific questions about long
    documents BM25 alone found the answer chunk first for 89% of questions, dense alone for 43%
    (bench/data/pg-essays-qa, docs/evaluation.md).
    """
    return _ramp(terms, short, long, short_weight, long_weight)


def _minmax(values: np.ndarray) -> np.ndarray:
    span = float(values.max() - values.min()) if values.size else 0.0
    if span < 1e-9:
        # All equal: no evidence either way, so the other retriever decides.
        return np.zeros_like(values)
    return (values - float(values.min())) / span


def fuse(
    dense_hits: Sequence[SearchHit],
    lexical_hits: Sequence[SearchHit],
    query_vector: np.ndarray | None,
    *,
    dense_weight: float,
    feedback_docs: int = 0,
    feedback_weight: float = 0.0,
    limit: int | None = None,
) -> list[ScoredChunk]:
    """One list, best first, each chunk once, with fused, dense and lexical scores; at most
    ``limit`` long.

    With only one retriever's hits the order is that retriever's own (cosine or BM25), and
    there is no feedback step: single-retriever modes are the baselines fusion is measured by.
    """
    by_id: dict[str, SearchHit] = {}
    for hit in (*dense_hits, *lexical_hits):
        by_id.setdefault(hit.record.point_id, hit)
    if not by_id:
        return []
    ids = list(by_id)
    lexical = {hit.record.point_id: hit.score for hit in lexical_hits}
    lexical_scores = np.array([lexical.get(i, 0.0) for i in ids], dtype=np.float64)

    vectors = [by_id[i].vector for i in ids]
    matrix: np.ndarray | None = None
    dense_scores = np.full(len(ids), np.nan)
    if query_vector is not None and all(v is not None for v in vectors):
        matrix = np.stack(vectors).astype(np.float32)
        dense_scores = (matrix @ query_vector.astype(np.float32)).astype(np.float64)
    else:
        # No vectors to score with: the dense retriever's own scores, where it has one.
        dense = {hit.record.point_id: hit.score for hit in dense_hits}
        dense_scores = np.array([dense.get(i, np.nan) for i in ids], dtype=np.float64)

    if not dense_hits:
        fused = lexical_scores
    elif not lexical_hits:
        fused = np.nan_to_num(dense_scores, nan=-1.0)
    else:
        # A candidate without a dense score ranks as the worst dense candidate, not as zero.
        dense_filled = np.nan_to_num(dense_scores, nan=float(np.nanmin(dense_scores)))
        lexical_part = (1.0 - dense_weight) * _minmax(lexical_scores)
        fused = dense_weight * _minmax(dense_filled) + lexical_part
        if matrix is not None and feedback_docs > 0 and feedback_weight > 0.0:
            best = np.argsort(-fused, kind="stable")[:feedback_docs]
            centroid = matrix[best].mean(axis=0)
            expanded = dense_filled + feedback_weight * (matrix @ centroid).astype(np.float64)
            fused = dense_weight * _minmax(expanded) + lexical_part

    order = np.argsort(-fused, kind="stable")[:limit]
    return [
        ScoredChunk(
            record=by_id[ids[n]].record,
            score=float(fused[n]),
            dense_score=None if np.isnan(dense_scores[n]) else float(dense_scores[n]),
            lexical_score=float(lexical[ids[n]]) if ids[n] in lexical else None,
            vector=tuple(vectors[n].tolist()) if vectors[n] is not None else None,
        )
        for n in order
    ]
