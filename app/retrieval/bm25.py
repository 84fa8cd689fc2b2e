"""Sparse lexical vectors: BM25 term weights for Qdrant's IDF modifier.

Documents get the BM25 term-frequency part, ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``;
Qdrant multiplies in the inverse document frequency itself (``Modifier.IDF``), computed over the
whole collection, so the index never needs a corpus-wide pass here. Queries get weight 1 per
distinct term (``app.retrieval.expansion`` adds weighted terms to a query). The score of a chunk
is then the classic BM25 sum. Terms come from ``app.text.terms``. A term's index is a stable
31-bit hash, so no vocabulary has to be stored.
"""

from __future__ import annotations

import zlib
from collections import Counter

from app.records import SparseTerms
from app.text.terms import terms

__all__ = ["LEXICAL_VERSION", "LexicalEncoder"]

LEXICAL_VERSION = "bm25-v3"
"""Changes whenever term extraction (here or in ``app.text.terms``) changes; part of the ingestion fingerprint, so a change means
documents are re-indexed by the next ``kb ingest`` (v3: a stemmer per language, not per script)."""


def _index(term: str) -> int:
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


class LexicalEncoder:
    """BM25 sparse vectors for documents and queries."""

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, avg_len: float = 120.0) -> None:
        self.k1 = k1
        self.b = b
        self.avg_len = avg_len

    def encode_document(self, text: str) -> SparseTerms:
        found = terms(text)
        if not found:
            return SparseTerms([], [])
        norm = self.k1 * (1.0 - self.b + self.b * len(found) / self.avg_len)
        weights: dict[int, float] = {}
        for term, tf in Counter(found).items():
            # Two terms may share a hash bucket; adding their weights is what BM25 would do anyway.
            idx = _index(term)
            weights[idx] = weights.get(idx, 0.0) + tf * (self.k1 + 1.0) / (tf + norm)
        indices = sorted(weights)
        return SparseTerms(indices, [weights[i] for i in indices])

    def encode_query(self, text: str) -> SparseTerms:
        indices = sorted({_index(t) for t in terms(text)})
        return SparseTerms(indices, [1.0] * len(indices))
