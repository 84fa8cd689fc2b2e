"""Lexical query expansion from dense feedback: the dense retriever tells BM25 what to look for.

A short question shares few words with the passages that answer it ("cost of interior concrete
flooring" vs. "polished concrete runs $3 to $8 per square foot"). Classic relevance feedback
(RM3) adds the words that dominate the best-ranked passages to the query. Here those passages
come from the dense retriever, which on readable text is the stronger one: its best
``expansion_docs`` hits are the feedback set, and the ``expansion_terms`` terms with the highest
feedback weight join the BM25 query,

    weight(t) = sum over feedback passages p of  idf(t) * bm25_tf(t, p) / sum of bm25_tf over p,

scaled so the best expansion term gets ``expansion_weight`` (an original query term has 1.0).
Qdrant applies its own IDF to every query term when it scores, so the weights here only choose
and rank the terms. Lexical search then runs once, with the expanded query; the dense side keeps
its own (Rocchio) feedback in ``app.retrieval.fusion``.

Choosing terms needs document frequencies, which Qdrant uses but does not expose.
``TermStatistics`` estimates them from a sample of the collection's sparse vectors (2,000 points
by default; ~40 ms on the embedded store) and refreshes the sample after ``ttl_s``. Common words
are common in any sample, which is all the selection needs; a term the sample has never seen
counts as rare.

Only questions the query policy lets through are expanded (``app.retrieval.policy``: short,
readable, naming no identifier): on text the model cannot read, its top hits are no evidence to
expand from.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.records import SparseTerms

__all__ = ["DocumentFrequencies", "TermStatistics", "expand_query"]


class _SparseSampler(Protocol):
    def sample_sparse(self, limit: int) -> list[SparseTerms]: ...


@dataclass(frozen=True, slots=True)
class DocumentFrequencies:
    """Document frequencies of sparse term indices over a sample of ``documents`` points."""

    counts: dict[int, int]
    documents: int

    @classmethod
    def of(cls, sample: Sequence[SparseTerms]) -> DocumentFrequencies:
        counts: Counter[int] = Counter()
        for vector in sample:
            counts.update(vector.indices)
        return cls(dict(counts), len(sample))

    def idf(self, index: int) -> float:
        """Qdrant's IDF formula, ln((N - n + 0.5) / (n + 0.5) + 1), on the sample."""
        n = self.counts.get(index, 0)
        return math.log((self.documents - n + 0.5) / (n + 0.5) + 1.0)


class TermStatistics:
    """Sampled document frequencies of one store, rebuilt when older than ``ttl_s``.

    Thread-safe: with a Qdrant server several retrieval workers share it, and only one of them
    rebuilds an expired sample while the others keep using the previous one.
    """

    def __init__(
        self, *, sample_size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sample_size = sample_size
        self.ttl_s = ttl_s
        self._clock = clock
        self._current: DocumentFrequencies | None = None
        self._built_at = -math.inf
        self._lock = threading.Lock()

    def get(self, store: _SparseSampler) -> DocumentFrequencies | None:
        """The current frequencies, rebuilt from ``store`` first if expired or empty.

        None when the collection is empty. Store errors propagate: the caller decides (the
        retriever then searches without expansion).
        """
        current = self._current
        if self._fresh(current):
            return current
        if not self._lock.acquire(blocking=current is None):
            return current  # another worker is rebuilding; the previous sample will do
        try:
            if self._fresh(self._current):  # built while this worker waited for the lock
                return self._current
            fresh = DocumentFrequencies.of(store.sample_sparse(self.sample_size))
            self._current, self._built_at = fresh, self._clock()
            return fresh if fresh.documents else None
        finally:
            self._lock.release()

    def _fresh(self, current: DocumentFrequencies | None) -> bool:
        return current is not None and current.documents > 0 and self._clock() - self._built_at < self.ttl_s


def expand_query(
    query: SparseTerms,
    feedback: Sequence[SparseTerms],
    frequencies: DocumentFrequencies,
    *,
    terms: int,
    weight: float,
) -> SparseTerms:
    """``query`` plus up to ``terms`` feedback terms, the best weighted ``weight``, the rest in
    proportion. Query terms keep their weights; with no feedback, ``query`` comes back as is."""
    if terms <= 0 or weight <= 0.0:
        return query
    own = set(query.indices)
    scores: dict[int, float] = {}
    for vector in feedback:
        total = sum(vector.values)
        if total <= 0.0:
            continue
        for index, tf in zip(vector.indices, vector.values, strict=True):
            if index not in own:
                scores[index] = scores.get(index, 0.0) + frequencies.idf(index) * tf / total
    # Ties broken by index, so the same inputs always give the same query.
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:terms]
    if not best or best[0][1] <= 0.0:
        return query
    top = best[0][1]
    weights = dict(zip(query.indices, query.values, strict=True))
    weights.update((index, weight * score / top) for index, score in best)
    indices = sorted(weights)
    return SparseTerms(indices, [weights[i] for i in indices])
