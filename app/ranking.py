"""Rank and prune: from retrieved candidates to the chunks that reach the prompt.

Two pure stages:

* ``rank`` drops near-duplicates, then picks ``top_k`` with maximal marginal relevance (MMR), so
  the context is not five copies of one paragraph. What is relevant at all is decided before,
  once, by the retriever's relevance floor (``app.retrieval.policy.is_relevant``): every
  candidate that reaches ``rank`` is evidence.
* ``fit_to_budget`` keeps whole chunks in rank order while they fit a token budget and cuts the
  first one that does not at a sentence boundary (``app.text.sentences``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import msgspec
import numpy as np

from app.records import ScoredChunk
from app.text.sentences import sentence_spans

__all__ = ["fit_to_budget", "rank"]

_SHINGLE = 5
"""Words per shingle for text near-duplicate detection."""

_TEXT_OVERLAP = 0.8
"""A chunk with at least this share of its shingles already selected adds nothing new."""

_WORD_RE = re.compile(r"\w+", re.UNICODE)


def rank(
    candidates: Sequence[ScoredChunk],
    *,
    top_k: int,
    mmr_lambda: float,
    duplicate_threshold: float,
) -> list[ScoredChunk]:
    """Select up to ``top_k`` mutually non-redundant chunks of ``candidates``, best first.

    The candidates are the relevant ones already (the retriever applies the one relevance floor);
    ``rank`` only chooses among them.

    1. Vector near-duplicates: drop a chunk whose cosine to a better-scored kept chunk is at
       least ``duplicate_threshold``.
    2. MMR: relevance is ``score`` min-max normalised over the remaining pool; redundancy is the
       largest cosine to an already selected chunk. A chunk without a vector has no redundancy
       with anything, so with no vectors at all the selection is simply by score.
       Text near-duplicates are skipped as MMR reaches them: a chunk whose normalised text
       appears word for word in, or has at least 80% of its word 5-shingles in, the chunks
       already selected (overlapping chunks, one paragraph ingested from two files). Checking
       there rather than over the whole pool spends the tokenising (the costly part, ~20 us a
       chunk) only on chunks that would otherwise be selected.

    The result is in selection order (the order the prompt numbers sources in).
    """
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    pool = list(candidates)
    if not pool or top_k == 0:
        return []
    # Stable sort: equal scores keep retrieval order, so results are deterministic.
    pool.sort(key=lambda c: -c.score)

    sims, has_vec = _cosine_matrix(pool)
    keep = _drop_vector_duplicates(sims, has_vec, duplicate_threshold)
    pool = [pool[i] for i in keep]
    sims = sims[np.ix_(keep, keep)]
    return [pool[i] for i in _mmr(pool, sims, top_k, mmr_lambda)]


def _cosine_matrix(pool: Sequence[ScoredChunk]) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise cosine of the pool's vectors; rows/columns of chunks without a vector are 0."""
    n = len(pool)
    has_vec = np.array([bool(c.vector) for c in pool], dtype=bool)
    sims = np.zeros((n, n), dtype=np.float32)
    if has_vec.sum() < 2:
        return sims, has_vec
    if len({len(c.vector) for c in pool if c.vector}) != 1:
        # Vectors of different sizes come from different models: cosines would be meaningless.
        return sims, np.zeros(n, dtype=bool)
    idx = np.flatnonzero(has_vec)
    mat = np.asarray([pool[int(i)].vector for i in idx], dtype=np.float32)
    # Vectors are meant to be unit length already; normalising again costs microseconds and
    # protects the thresholds from a retriever that returns raw vectors.
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    mat /= np.where(norms > 0, norms, 1.0)
    sims[np.ix_(idx, idx)] = mat @ mat.T
    return sims, has_vec


def _drop_vector_duplicates(sims: np.ndarray, has_vec: np.ndarray, threshold: float) -> list[int]:
    """Indices of the score-sorted pool that are not near-copies of a better kept chunk."""
    n = len(has_vec)
    alive = np.ones(n, dtype=bool)
    for i in range(n):
        # Greedy in score order: a chunk dropped as a copy cannot knock out a third chunk.
        if alive[i] and has_vec[i]:
            alive[i + 1 :] &= ~(has_vec[i + 1 :] & (sims[i, i + 1 :] >= threshold))
    return np.flatnonzero(alive).tolist()


class _TextSeen:
    """Word shingles and normalised text of the chunks selected so far."""

    def __init__(self) -> None:
        self.shingles: set[tuple[str, ...]] = set()
        self.text = " "

    def covers(self, text: str) -> tuple[bool, list[str]]:
        words = _WORD_RE.findall(text.lower())
        if len(words) < _SHINGLE:
            # Too short for shingles: a duplicate only if it appears word for word.
            return bool(words) and f" {' '.join(words)} " in self.text, words
        shingles = set(zip(*(words[k:] for k in range(_SHINGLE)), strict=False))
        return len(shingles & self.shingles) >= _TEXT_OVERLAP * len(shingles), words

    def add(self, words: list[str]) -> None:
        self.shingles.update(zip(*(words[k:] for k in range(_SHINGLE)), strict=False))
        self.text += " ".join(words) + " "


def _mmr(pool: Sequence[ScoredChunk], sims: np.ndarray, top_k: int, lam: float) -> list[int]:
    scores = np.array([c.score for c in pool], dtype=np.float64)
    span = scores.max() - scores.min()
    relevance = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    redundancy = np.zeros(len(pool), dtype=np.float64)
    available = np.ones(len(pool), dtype=bool)
    seen = _TextSeen()
    chosen: list[int] = []
    while len(chosen) < top_k and available.any():
        gain = lam * relevance - (1.0 - lam) * redundancy
        gain[~available] = -np.inf
        # argmax takes the first maximum: ties go to the better-scored chunk.
        best = int(np.argmax(gain))
        available[best] = False
        duplicate, words = seen.covers(pool[best].record.text)
        if duplicate:
            continue
        seen.add(words)
        chosen.append(best)
        np.maximum(redundancy, sims[best], out=redundancy)
    return chosen


def fit_to_budget(
    chunks: Sequence[ScoredChunk],
    budget_tokens: int,
    count: Callable[[str], int],
    *,
    per_chunk_overhead: int = 0,
) -> list[ScoredChunk]:
    """The longest rank-order prefix of ``chunks`` whose cost fits ``budget_tokens``.

    A chunk costs ``count(text) + per_chunk_overhead`` (the overhead pays for its delimiters and
    attributes in the prompt). Whole chunks are kept while they fit; the first that does not is
    cut to its longest prefix of whole sentences that fits (a copy with a shorter
    ``record.text``; ``text_hash`` still names the full chunk), or dropped if not even one
    sentence fits, and nothing after it is considered: a later, smaller chunk would jump the
    ranking. The total never exceeds the budget, provided ``count`` is monotone in prefixes.
    """
    kept: list[ScoredChunk] = []
    used = 0
    for chunk in chunks:
        cost = count(chunk.record.text) + per_chunk_overhead
        if used + cost <= budget_tokens:
            kept.append(chunk)
            used += cost
            continue
        cut = _cut_to_fit(chunk.record.text, budget_tokens - used - per_chunk_overhead, count)
        if cut is not None:
            record = msgspec.structs.replace(chunk.record, text=cut)
            kept.append(msgspec.structs.replace(chunk, record=record))
        break
    return kept


def _cut_to_fit(text: str, budget: int, count: Callable[[str], int]) -> str | None:
    """Longest prefix of whole sentences of ``text`` that costs at most ``budget``, or None."""
    if budget <= 0:
        return None
    ends = [end for _, end in sentence_spans(text)]
    # Binary search over the number of sentences: counting is the expensive part, and prefix
    # cost grows with the prefix. Every candidate is counted as the exact string returned.
    lo, hi, best = 1, len(ends), None
    while lo <= hi:
        mid = (lo + hi) // 2
        if count(text[: ends[mid - 1]]) <= budget:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return text[: ends[best - 1]] if best else None
