"""Sparse lexical vectors: BM25 term weights for Qdrant's IDF modifier.

Documents get the BM25 term-frequency part, ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``;
Qdrant multiplies in the inverse document frequency itself (``Modifier.IDF``), computed over the
whole collection, so the index never needs a corpus-wide pass here. Queries get weight 1 per
distinct term (``app.expansion`` adds weighted terms to a query). The score of a chunk is then
the classic BM25 sum.

Terms are Unicode words, lower-cased, stop words removed and Snowball stemmed with the rules of the
word's script: Cyrillic words by the Russian stemmer (which also serves the closely related
languages acceptably), Greek by the Greek one, everything else by the English one (words of other
Latin-script languages pass through mostly unchanged, which keeps them matchable). Stemming is
what lets "отпуска" find "отпуском": Russian inflects every noun, and without it a query matches
only documents that happen to use the same case. Accents are folded on Latin and Greek words
(café = cafe) but not on Cyrillic ones, where "й" is a letter of its own, not an accented "и".
A term's index is a stable 31-bit hash, so no vocabulary has to be stored.
"""

from __future__ import annotations

import re
import threading
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

# The same for Russian: function words that carry no topic ("как", "для", "ли").
_RUSSIAN_STOP_WORDS = frozenset(
    """а без более бы был была были было быть в вам вас весь во вот все всё всего всех вы где да даже
    для до его ее её если есть еще ещё же за здесь и из или им их к как ко когда кто ли либо мне
    может мы на над надо наш не него нее неё нет ни них но ну о об однако он она они оно от очень по
    под при с со так также такой там те тем то того тоже той только том ты у уже хотя чего чей чем
    что чтобы чье чья эта эти это этого этой этом этот я""".split()
)

LEXICAL_VERSION = "bm25-v2"
"""Changes whenever term extraction changes; part of the ingestion fingerprint, so a change means
documents are re-indexed by the next ``kb ingest``."""

_LATIN, _CYRILLIC, _GREEK = "english", "russian", "greek"


@dataclass(frozen=True, slots=True)
class SparseTerms:
    """A sparse vector: parallel lists of term indices and weights."""

    indices: list[int]
    values: list[float]

    def __len__(self) -> int:
        return len(self.indices)


def _script(word: str) -> str:
    """The stemmer for ``word``, by the script of its first letter."""
    for ch in word:
        code = ord(ch)
        if code < 0x370:
            return _LATIN
        if code < 0x400 or 0x1F00 <= code < 0x2000:
            return _GREEK
        if code < 0x530 or 0x1C80 <= code < 0x1C90:
            return _CYRILLIC
        if ch.isalpha():
            return _LATIN
    return _LATIN


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


class _Stemmers:
    """One Snowball stemmer per script. PyStemmer objects are not thread-safe, so each thread
    gets its own (ingestion encodes on one thread while the retrieval worker encodes queries)."""

    _local = threading.local()

    @classmethod
    def get(cls, language: str) -> Stemmer.Stemmer:
        stemmers: dict[str, Stemmer.Stemmer] | None = getattr(cls._local, "stemmers", None)
        if stemmers is None:
            stemmers = cls._local.stemmers = {}
        if language not in stemmers:
            stemmers[language] = Stemmer.Stemmer(language)
        return stemmers[language]


def terms(text: str) -> list[str]:
    """The index terms of ``text``, in order, stop words removed."""
    words = _WORD_RE.findall(text.lower())
    if all(word.isascii() for word in words):  # the common case, in one C call
        kept = [w for w in words if len(w) > 1 and w not in _STOP_WORDS]
        return _Stemmers.get(_LATIN).stemWords(kept)
    out: list[str] = []
    for word in words:
        script = _script(word)
        if script == _CYRILLIC:
            word = word.replace("ё", "е")
            if word in _RUSSIAN_STOP_WORDS or len(word) == 1:
                continue
        else:
            word = _fold(word)
            if word in _STOP_WORDS or (len(word) == 1 and word.isascii()):
                continue
        out.append(_Stemmers.get(script).stemWord(word))
    return out


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
