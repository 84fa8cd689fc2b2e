"""Index terms of a text: Unicode words, lower-cased, stop words removed, Snowball stemmed.

Each word is stemmed with the rules of its script: Cyrillic words by the Russian stemmer (which
also serves the closely related languages acceptably), Greek by the Greek one, everything else by
the English one (words of other Latin-script languages pass through mostly unchanged, which keeps
them matchable). Stemming is what lets "отпуска" find "отпуском": Russian inflects every noun, and
without it a query matches only documents that happen to use the same case. Accents are folded on
Latin and Greek words (café = cafe) but not on Cyrillic ones, where "й" is a letter of its own,
not an accented "и".

BM25 (``app.retrieval.bm25``), query expansion and the extractive answerer all count terms this
one way.
"""

from __future__ import annotations

import re
import threading
import unicodedata

import Stemmer

__all__ = ["terms"]

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

_LATIN, _CYRILLIC, _GREEK = "english", "russian", "greek"


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
        stemmed: list[str] = _Stemmers.get(_LATIN).stemWords(kept)
        return stemmed
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
