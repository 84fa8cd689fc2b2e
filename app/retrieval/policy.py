"""The query policy: how far to trust each retriever for one question, decided once per query.

Three decisions follow from the same few signals, so they are made together, by one pure
function (``profile_query``), and handed on as one record (``QueryProfile``):

* the dense weight of weighted fusion (``app.retrieval.fusion``);
* whether a lexical match alone makes a chunk relevant (the relevance floor, ``is_relevant``, which
  otherwise judges the calibrated relevance of ``app.retrieval.calibration``);
* whether the BM25 query is expanded with terms of the best dense hits (``app.retrieval.expansion``).

The signals:

* **readability**: model tokens per word of the question and the texts of its best dense hits.
  all-MiniLM-L6-v2 reads English prose at ~1.3 tokens per word; German (~2.4) and Russian (~5.6)
  it shreds into word pieces, and there its cosines are guesses. The question alone is too short
  to judge (a rare English word splits as much as a German one), so the hits' texts are read too:
  they are what the model would have had to understand. Measured once per query, before the
  lexical search, so expansion and fusion see the same figure.
* **identifiers**: a question naming an error code, version or symbol (``E6305``, ``x86_64``,
  ``getUserById``) wants that exact token; the model cannot tell it from its neighbours.
* **length**: the number of index terms (distinct words after stop words). Every extra
  distinctive word gives BM25 more to match, while the embedding of a long question blurs them.

Nothing here touches the store or the model: the caller passes the texts and a token counter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec

from app.records import ScoredChunk
from app.retrieval.calibration import JudgedChunk, relevance_of
from app.settings import RetrievalSettings, RetrieverMode

__all__ = [
    "LEXICAL_ALONE_MIN_SHARE",
    "QueryProfile",
    "dense_weight_for",
    "dense_weight_for_length",
    "has_identifier",
    "is_relevant",
    "profile_query",
    "relevant_candidates",
    "tokens_per_word",
]

ChunkT = TypeVar("ChunkT", bound=ScoredChunk)

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


class QueryProfile(msgspec.Struct, frozen=True, kw_only=True):
    """What the policy decided for one question, and why."""

    dense_weight: float
    """Weight of the dense side in weighted fusion; the lexical side gets the rest. 1.0 in dense
    mode, 0.0 in lexical mode (one retriever: nothing to weigh)."""

    lexical_alone: bool
    """Whether a positive BM25 score alone makes a chunk relevant, whatever its cosine."""

    expand: bool
    """Whether the question qualifies for lexical expansion from its best dense hits (the
    retriever still needs confident hits and term statistics to expand)."""

    tokens_per_word: float | None
    """Model tokens per word of the question and the texts read; None where not measured
    (single-retriever modes)."""

    identifier: bool
    """Whether the question names an identifier."""

    reason: str
    """The rule that chose ``dense_weight`` (for logs and debugging)."""


def profile_query(
    question: str,
    *,
    index_terms: int,
    texts: Sequence[str],
    count: Callable[[str], int],
    settings: RetrievalSettings,
    mode: RetrieverMode = "hybrid",
) -> QueryProfile:
    """The policy for ``question``: dense weight, lexical evidence, expansion.

    ``index_terms`` is the number of the question's BM25 terms (before any expansion); ``texts``
    are the texts of its best dense hits (the top three are enough), read with the question to
    judge readability; ``count`` is the embedding model's token counter.

    In hybrid mode:

    * with ``adaptive_weighting`` off, every question gets ``dense_weight`` and the cosine alone
      judges relevance;
    * a question naming an identifier gets ``opaque_dense_weight`` outright, and a lexical match
      counts alone: exact match is what its asker wants;
    * otherwise the lower of two weights wins: by readability (``dense_weight`` for readable
      text down to ``opaque_dense_weight`` for text the model shreds, linear in between) and by
      length (``dense_weight`` for short questions down to ``long_question_dense_weight``).
      Only unreadable text lets a lexical match count alone: a long question's common words
      match everywhere, and on readable text the cosine is the better judge.

    Expansion (hybrid only, ``expansion_terms`` > 0) is for short readable questions that name
    no identifier: a question of more than ``expansion_max_question_terms`` already names what
    it looks for, and feedback terms dilute it (expanding long questions cost pg-essays-qa a
    third of the answers found first); an identifier's asker wants that token, not its
    neighbours' vocabulary; on unreadable text the dense hits are no evidence.
    """
    identifier = has_identifier(question)
    if mode == "dense":
        return QueryProfile(
            dense_weight=1.0,
            lexical_alone=False,
            expand=False,
            tokens_per_word=None,
            identifier=identifier,
            reason="dense mode",
        )
    if mode == "lexical":
        return QueryProfile(
            dense_weight=0.0,
            lexical_alone=True,  # BM25 is the only evidence there is
            expand=False,
            tokens_per_word=None,
            identifier=identifier,
            reason="lexical mode",
        )
    s = settings
    reading = tokens_per_word([question, *texts], count)
    expand = (
        s.expansion_terms > 0
        and 0 < index_terms <= s.expansion_max_question_terms
        and not identifier
        and reading <= s.readable_tokens_per_word
    )
    weight, lexical_alone, reason = _weighting(s, identifier=identifier, terms=index_terms, reading=reading)
    return QueryProfile(
        dense_weight=weight,
        lexical_alone=lexical_alone,
        expand=expand,
        tokens_per_word=reading,
        identifier=identifier,
        reason=reason,
    )


def _weighting(
    s: RetrievalSettings, *, identifier: bool, terms: int, reading: float
) -> tuple[float, bool, str]:
    if not s.adaptive_weighting:
        return s.dense_weight, False, "fixed weight"
    if identifier:
        return s.opaque_dense_weight, True, "names an identifier"
    by_length = dense_weight_for_length(
        terms,
        short=s.short_question_terms,
        long=s.long_question_terms,
        short_weight=s.dense_weight,
        long_weight=s.long_question_dense_weight,
    )
    by_reading = dense_weight_for(
        reading,
        readable=s.readable_tokens_per_word,
        opaque=s.opaque_tokens_per_word,
        readable_weight=s.dense_weight,
        opaque_weight=s.opaque_dense_weight,
    )
    unreadable = by_reading < s.dense_weight
    if by_length < by_reading:
        reason = "long question"
    elif unreadable:
        reason = "text the model splits into word pieces"
    else:
        reason = "readable short question"
    return min(by_length, by_reading), unreadable, reason


LEXICAL_ALONE_MIN_SHARE = 0.2
"""Where a lexical match counts alone, the least share of the query's attainable BM25 score it
must have (``app.retrieval.calibration.lexical_share``): a chunk that matches only a common word
of the question is no evidence in any language. On this project's docs, whose code-heavy text
the model reads as opaque, unanswerable questions ("How do I configure SSO with Okta?") reach
shares up to about 0.15 through words like "configure"; answer chunks of answerable questions
0.25 and more (``python bench/noanswer.py --show``). de-kb, ar-kb and es-kb, where the lexical
side carries the answers, are the check that it loses none (docs/evaluation.md, "Calibration")."""


def is_relevant(
    chunk: ScoredChunk,
    *,
    floor: float,
    lexical_alone: bool,
    min_share: float = LEXICAL_ALONE_MIN_SHARE,
) -> bool:
    """The relevance floor: a calibrated relevance (``app.retrieval.calibration``) of at least
    ``floor``, or, where the profile lets a lexical match count alone, a lexical share of at
    least ``min_share`` (any positive BM25 score when the share is unknown: term statistics could
    not be sampled). Lexical mode passes 0: there BM25 is the only evidence there is. The one
    place relevance is decided: what fails it never reaches ranking, and nothing left makes
    retrieval ``empty``."""
    relevance = relevance_of(chunk)
    if relevance is not None and relevance >= floor:
        return True
    if not lexical_alone or chunk.lexical_score is None or chunk.lexical_score <= 0.0:
        return False
    share = chunk.lexical_share if isinstance(chunk, JudgedChunk) else None
    return share is None or share >= min_share


def relevant_candidates(
    candidates: Sequence[ChunkT],
    *,
    floor: float,
    companion_floor: float,
    lexical_alone: bool,
    min_share: float = LEXICAL_ALONE_MIN_SHARE,
) -> list[ChunkT]:
    """The relevant ones of a question's judged candidates, in their order; [] means ``empty``.

    Two questions are asked. Is anything relevant: at least one candidate must pass
    ``is_relevant`` at ``floor``, or the knowledge base has no answer. If so, which others come
    along: every candidate that passes at ``companion_floor`` (lower). A single high floor for
    both would drop the weaker relevant chunks of answerable questions and cost ranking quality
    (tests/data/eval/en-kb: nDCG@10 0.872 with the floor at 0.2 or below, 0.842 at 0.7); a low
    one for both would leave unrelated questions their best unrelated chunk."""
    keep = [
        c
        for c in candidates
        if is_relevant(c, floor=min(floor, companion_floor), lexical_alone=lexical_alone, min_share=min_share)
    ]
    if not any(is_relevant(c, floor=floor, lexical_alone=lexical_alone, min_share=min_share) for c in keep):
        return []
    return keep


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

    Why length matters: a passage that contains six of a question's nine rare words is almost
    surely the one it asks about, and the embedding of a long question, averaged over all its
    tokens, blurs those words together (all-MiniLM-L6-v2 was trained on short web queries). On
    long, specific questions about long documents BM25 alone finds the answer chunk first far
    more often than dense alone (bench/data/pg-essays-qa, docs/evaluation.md).
    """
    return _ramp(terms, short, long, short_weight, long_weight)
