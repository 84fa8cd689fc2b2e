"""Sparse lexical vectors: BM25 term weights for Qdrant's IDF modifier.

Documents get the BM25 term-frequency part, ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``;
Qdrant multiplies in the inverse document frequency itself (``Modifier.IDF``), computed over the
whole collection, so the index never needs a corpus-wide pass here. Queries get weight 1 per
distinct term. The score of a chunk is then the classic BM25 sum.

Terms are Unicode words, lower-cased and accent-folded, English stop words removed, Snowball
stemmed (English rules; words of other languages pass through mostly unchanged, which keeps
them matchable). A term's index is a stable 31-bit hash, so no vocabulary has to be stored.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass

import Stemmer

__all__ = ["LexicalEncoder", "SparseTerms", "terms"]

_WORD_RE = re.compile(r"\w+", re.UNICODE)

# A compact English stop-word list (the usual BM25 baselines use one of this size).
_STOP_WORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before
    being below between both but by can cannot could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just let me more most my myself no nor not of off on once only or other ought our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves s t""".split()
)

_STEMMER = Stemmer.Stemmer("english")
LEXICAL_VERSION = "bm25-v1"
"""Changes whenever term extraction changes; part of the ingestion fingerprint."""


@dataclass(frozen=True, slots=True)
class SparseTerms:
    """A sparse vector: parallel lists of term indices and weights."""

    indices: list[int]
    values: list[float]

    def __len__(self) -> int:
        return len(self.indices)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def terms(text: str) -> list[str]:
    """The index terms of ``text``, in order, stop words removed."""
    words = [w for w in _WORD_RE.findall(_fold(text)) if w not in _STOP_WORDS and not (len(w) == 1 and w.isascii())]
    return _STEMMER.stemWords(words)


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
