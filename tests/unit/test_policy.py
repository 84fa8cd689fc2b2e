"""The query policy: one decision per question about the dense weight, lexical evidence and
expansion, from the question, its index-term count and the texts of its best dense hits."""

from __future__ import annotations

import msgspec
import pytest

from app.records import ScoredChunk
from app.retrieval.bm25 import LexicalEncoder
from app.retrieval.calibration import JudgedChunk
from app.retrieval.policy import (
    LEXICAL_ALONE_MIN_SHARE,
    QueryProfile,
    dense_weight_for,
    dense_weight_for_length,
    has_identifier,
    is_relevant,
    profile_query,
    tokens_per_word,
)
from app.settings import RetrievalSettings, RetrieverMode
from tests.factories import chunk_record

pytestmark = pytest.mark.unit

SETTINGS = RetrievalSettings()
ENGLISH_HITS = ("Keys are rotated every ninety days by the security team.", "Rotate a key with kb-keys.")
GERMAN_HITS = ("Urlaub beantragen Sie im Personalportal.", "Der Antrag geht an die Führungskraft.")
LONG = "which cheap watch brand keeps better time than an expensive Patek Philippe with quartz movements"


class PiecesPerWord:
    """A stand-in tokenizer that splits every word into ``pieces`` tokens."""

    def __init__(self, pieces: float) -> None:
        self.pieces = pieces
        self.calls = 0

    def count(self, text: str) -> int:
        self.calls += 1
        return round(len(text.split()) * self.pieces)


def profile(
    question: str,
    *,
    pieces: float = 1.3,
    texts: tuple[str, ...] = ENGLISH_HITS,
    mode: RetrieverMode = "hybrid",
    **settings: object,
) -> QueryProfile:
    return profile_query(
        question,
        index_terms=len(LexicalEncoder().encode_query(question)),
        texts=texts,
        count=PiecesPerWord(pieces).count,
        settings=msgspec.structs.replace(SETTINGS, **settings),
        mode=mode,
    )


# --- the three decisions, by kind of question ---------------------------------------------------


def test_a_short_readable_question_trusts_the_model_and_is_expanded() -> None:
    p = profile("how do I rotate keys")
    assert p.dense_weight == SETTINGS.dense_weight
    assert p.lexical_alone is False  # on readable text a shared common word is no evidence
    assert p.expand is True
    assert p.tokens_per_word == pytest.approx(1.3, abs=0.05)
    assert p.identifier is False


def test_a_question_naming_an_identifier_gets_the_opaque_weight_and_lets_lexical_count_alone() -> None:
    p = profile("what does E6305 mean")
    assert p.identifier is True
    assert p.dense_weight == SETTINGS.opaque_dense_weight
    assert p.lexical_alone is True
    assert p.expand is False  # its asker wants that exact token, not its neighbours' vocabulary
    assert "identifier" in p.reason


def test_a_long_question_leans_on_bm25_but_the_cosine_still_judges_relevance() -> None:
    assert len(LexicalEncoder().encode_query(LONG)) >= SETTINGS.long_question_terms
    p = profile(LONG)
    assert p.dense_weight == SETTINGS.long_question_dense_weight
    assert p.lexical_alone is False  # its common words match everywhere
    assert p.expand is False  # it already names what it looks for
    assert p.reason == "long question"


def test_german_text_gets_the_opaque_weight_lets_lexical_count_alone_and_is_not_expanded() -> None:
    p = profile("Wie beantrage ich Urlaub", pieces=2.4, texts=GERMAN_HITS)
    assert p.dense_weight == pytest.approx(SETTINGS.opaque_dense_weight)
    assert p.lexical_alone is True
    assert p.expand is False  # dense hits the model cannot read are no evidence to expand from
    assert p.tokens_per_word == pytest.approx(2.4, abs=0.1)


def test_readability_is_read_from_the_question_and_its_hits_together() -> None:
    # An English question whose best hits the model shreds (codes, another language) is judged
    # by those hits too: that is the text the model would have had to understand.
    question = "how do I request leave"  # 5 words, 1 token each

    def count(text: str) -> int:
        return len(text.split()) * (1 if text == question else 3)

    p = profile_query(question, index_terms=2, texts=GERMAN_HITS, count=count, settings=SETTINGS)
    assert p.tokens_per_word == pytest.approx((5 + 3 * 11) / 16)  # the hits have 5 and 6 words
    assert p.dense_weight == pytest.approx(SETTINGS.opaque_dense_weight)
    assert profile_query(question, index_terms=2, texts=(), count=count, settings=SETTINGS).dense_weight == (
        SETTINGS.dense_weight
    )


def test_readability_is_measured_once_per_question() -> None:
    counter = PiecesPerWord(1.3)
    profile_query(
        "how do I rotate keys", index_terms=2, texts=ENGLISH_HITS, count=counter.count, settings=SETTINGS
    )
    assert counter.calls == 1 + len(ENGLISH_HITS)  # one tokenizer pass per text read, no second round


def test_text_half_way_to_opaque_gets_a_weight_half_way() -> None:
    p = profile("rotate keys every quarter", pieces=1.75, texts=())  # 7 tokens for 4 words
    assert p.dense_weight == pytest.approx((SETTINGS.dense_weight + SETTINGS.opaque_dense_weight) / 2)
    assert p.lexical_alone is True
    assert p.expand is False


# --- switches -------------------------------------------------------------------------------------


def test_weighting_off_gives_the_fixed_weight() -> None:
    for question, pieces in (("what does E6305 mean", 1.3), (LONG, 1.3), ("Wie beantrage ich Urlaub", 2.4)):
        p = profile(question, pieces=pieces, adaptive_weighting=False)
        assert p.dense_weight == SETTINGS.dense_weight, question
        assert p.lexical_alone is False, question
        assert p.reason == "fixed weight"


def test_weighting_off_leaves_expansion_to_its_own_settings() -> None:
    assert profile("how do I rotate keys", adaptive_weighting=False).expand is True
    assert profile("how do I rotate keys", expansion_terms=0).expand is False


def test_a_question_with_no_index_terms_is_not_expanded() -> None:
    assert profile("how do I", texts=ENGLISH_HITS).expand is False


def test_the_expansion_length_limit_is_a_setting() -> None:
    assert profile(LONG, expansion_max_question_terms=100).expand is True


def test_single_retriever_modes_have_nothing_to_weigh() -> None:
    dense = profile("what does E6305 mean", mode="dense")
    lexical = profile("how do I rotate keys", mode="lexical")
    assert (dense.dense_weight, dense.lexical_alone, dense.expand) == (1.0, False, False)
    assert (lexical.dense_weight, lexical.lexical_alone, lexical.expand) == (0.0, True, False)
    assert dense.tokens_per_word is None and lexical.tokens_per_word is None  # not measured


# --- the relevance floor ----------------------------------------------------------------------------

FLOOR = SETTINGS.relevance_floor


def scored(*, relevance: float | None, lexical: float | None, share: float | None = None) -> ScoredChunk:
    record = chunk_record("p", text="text", title="T", source="kb/t.md")
    if relevance is None:
        return ScoredChunk(record=record, score=0.5, dense_score=0.1, lexical_score=lexical)
    return JudgedChunk(
        record=record,
        score=0.5,
        dense_score=0.1,
        lexical_score=lexical,
        relevance=relevance,
        lexical_share=share,
    )


def test_a_relevance_at_the_floor_is_relevant_whatever_the_profile() -> None:
    assert is_relevant(scored(relevance=FLOOR, lexical=None), floor=FLOOR, lexical_alone=False)
    assert not is_relevant(scored(relevance=FLOOR - 0.01, lexical=None), floor=FLOOR, lexical_alone=True)


def test_the_fused_score_is_not_relevance() -> None:
    # score 0.5 is what min-max fusion gives a middling candidate of any question
    assert not is_relevant(scored(relevance=None, lexical=None), floor=0.0, lexical_alone=False)


def test_a_lexical_match_below_the_floor_counts_only_where_the_profile_says_so() -> None:
    weak_but_exact = scored(relevance=0.05, lexical=3.2)
    assert is_relevant(weak_but_exact, floor=FLOOR, lexical_alone=True)
    assert not is_relevant(weak_but_exact, floor=FLOOR, lexical_alone=False)
    assert not is_relevant(scored(relevance=0.05, lexical=0.0), floor=FLOOR, lexical_alone=True)
    assert not is_relevant(scored(relevance=0.05, lexical=None), floor=FLOOR, lexical_alone=True)


def test_a_lexical_match_alone_needs_a_share_of_what_the_query_could_score() -> None:
    common_word_only = scored(relevance=0.05, lexical=0.4, share=LEXICAL_ALONE_MIN_SHARE - 0.01)
    distinctive = scored(relevance=0.05, lexical=3.2, share=LEXICAL_ALONE_MIN_SHARE)
    assert not is_relevant(common_word_only, floor=FLOOR, lexical_alone=True)
    assert is_relevant(distinctive, floor=FLOOR, lexical_alone=True)
    # lexical mode: BM25 is all there is, any match counts
    assert is_relevant(common_word_only, floor=FLOOR, lexical_alone=True, min_share=0.0)


# --- the building blocks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tpw", "expected"),
    [(1.2, 0.9), (1.5, 0.9), (1.75, 0.55), (2.0, 0.2), (3.1, 0.2)],
)
def test_dense_weight_moves_linearly_from_readable_to_opaque(tpw: float, expected: float) -> None:
    weight = dense_weight_for(tpw, readable=1.5, opaque=2.0, readable_weight=0.9, opaque_weight=0.2)
    assert weight == pytest.approx(expected)


def test_dense_weight_falls_linearly_with_question_length() -> None:
    weights = [
        dense_weight_for_length(n, short=4, long=8, short_weight=0.9, long_weight=0.5) for n in range(1, 11)
    ]
    assert weights[:4] == [0.9] * 4
    assert weights[5] == pytest.approx(0.7)  # 6 terms: half way
    assert weights[7:] == [0.5] * 3
    assert weights == sorted(weights, reverse=True)


def test_tokens_per_word_counts_model_tokens_over_words() -> None:
    count = {"ein Satz": 4, "plain words here": 3, "": 0}.__getitem__
    assert tokens_per_word(["ein Satz", "plain words here", ""], count) == pytest.approx(7 / 5)
    assert tokens_per_word([], count) == 0.0


@pytest.mark.parametrize(
    "text",
    ["E6305", "what does ERR-4471 mean", "x86_64 build fails", "getUserById", "max_retries", "order 1234567"],
)
def test_identifiers_are_recognised(text: str) -> None:
    assert has_identifier(text)


@pytest.mark.parametrize(
    "text",
    [
        "films from 1991",
        "Which U.S. state",
        "part of _____.",
        "civic-military airports",
        "Formula 1 drivers",
        "Überfahrt",
        "why did the us enter ww1",
        "headquarters of the MI6",
        "5G rollout",
        "vitamin B12",
    ],
)
def test_ordinary_words_years_and_abbreviations_are_not_identifiers(text: str) -> None:
    assert not has_identifier(text)
