"""Rank and prune: near-duplicates, MMR, and fitting a token budget. (Relevance is decided before,
by the retriever's floor: tests/unit/test_policy.py.)"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from app.ranking import fit_to_budget, rank, text_words
from app.records import ScoredChunk
from app.text.sentences import split_sentences
from app.text.tokens import ClaudeTokenEstimate
from tests.factories import chunk_record

pytestmark = pytest.mark.unit


def chunk(
    name: str,
    score: float,
    *,
    dense: float | None = 0.5,
    lexical: float | None = None,
    vector: tuple[float, ...] | None = None,
    text: str | None = None,
) -> ScoredChunk:
    record = chunk_record(
        name,
        text=text if text is not None else f"Distinct text about {name} number {score}.",
        title=name.title(),
        source=f"/kb/{name}.md",
    )
    return ScoredChunk(record=record, score=score, dense_score=dense, lexical_score=lexical, vector=vector)


def at_angle(degrees: float) -> tuple[float, float, float]:
    """A unit vector in the x-y plane: cosine between two of them is cos(angle difference)."""
    rad = math.radians(degrees)
    return (math.cos(rad), math.sin(rad), 0.0)


def names(chunks: list[ScoredChunk]) -> list[str]:
    return [c.record.point_id for c in chunks]


def run(
    candidates: list[ScoredChunk], *, top_k: int = 6, mmr_lambda: float = 1.0, dup: float = 0.95
) -> list[str]:
    selected = rank(
        candidates,
        top_k=top_k,
        mmr_lambda=mmr_lambda,
        duplicate_threshold=dup,
    )
    return names(selected)


# --- what reaches rank is relevant already ------------------------------------------------------


def test_rank_applies_no_relevance_floor_of_its_own() -> None:
    # The retriever's floor decided these are evidence (say, exact-term matches on text the
    # model cannot read): ranking must not second-guess it with a rule of its own.
    candidates = [
        chunk("weak-cosine", 0.9, dense=0.01),
        chunk("negative-cosine", 0.8, dense=-0.2, lexical=3.0),
        chunk("no-scores", 0.7, dense=None, lexical=None),
    ]
    assert run(candidates) == ["weak-cosine", "negative-cosine", "no-scores"]


def test_no_candidates_give_an_empty_list() -> None:
    assert run([]) == []


# --- near-duplicates ---------------------------------------------------------------------------


def test_a_near_copy_of_a_better_chunk_is_dropped() -> None:
    candidates = [
        chunk("copy", 0.8, vector=at_angle(5)),  # cos 0.996 to "original"
        chunk("original", 0.9, vector=at_angle(0)),
        chunk("other", 0.7, vector=at_angle(60)),
    ]
    assert run(candidates) == ["original", "other"]


def test_similar_but_not_duplicate_chunks_are_both_kept() -> None:
    # cos(a, b) = 0.906
    candidates = [chunk("a", 0.9, vector=at_angle(0)), chunk("b", 0.8, vector=at_angle(25))]
    assert run(candidates, dup=0.95) == ["a", "b"]


def test_duplicates_are_judged_against_kept_chunks_only() -> None:
    # b copies a, c copies b, but c is not a copy of a: with b gone, c stays.
    candidates = [
        chunk("a", 0.9, vector=at_angle(0)),
        chunk("b", 0.8, vector=at_angle(10)),  # cos(a, b) = 0.985
        chunk("c", 0.7, vector=at_angle(20)),  # cos(b, c) = 0.985, cos(a, c) = 0.940
    ]
    assert run(candidates, dup=0.95) == ["a", "c"]


def test_vectors_need_not_be_unit_length() -> None:
    scaled = [
        chunk("original", 0.9, vector=tuple(3 * x for x in at_angle(0))),
        chunk("copy", 0.8, vector=tuple(0.5 * x for x in at_angle(5))),
    ]
    assert run(scaled) == ["original"]


PARAGRAPH = (
    "Production deploys run from the release branch. Every deploy needs a green pipeline and an "
    "approval from the on-call engineer. Rollbacks use the previous image tag and take about two "
    "minutes. Database migrations must be backwards compatible for one release."
)


def test_text_contained_in_a_better_chunk_is_dropped_even_with_a_different_vector() -> None:
    candidates = [
        chunk("section", 0.9, vector=at_angle(0), text=f"## Deploys\n{PARAGRAPH} Ask in #ops."),
        chunk("paragraph", 0.8, vector=at_angle(40), text=PARAGRAPH),
        chunk("unrelated", 0.7, vector=at_angle(80)),
    ]
    assert run(candidates) == ["section", "unrelated"]


def test_the_same_paragraph_from_two_files_is_kept_once() -> None:
    # Different markup and case, same words: one copy is enough.
    candidates = [
        chunk("wiki", 0.9, dense=0.7, text=PARAGRAPH),
        chunk("pdf", 0.85, dense=0.7, text=PARAGRAPH.upper().replace(". ", ".\n")),
    ]
    assert run(candidates) == ["wiki"]


def test_neighbouring_chunks_that_share_only_their_overlap_are_both_kept() -> None:
    words = PARAGRAPH.split()
    first = " ".join(words[:30])
    second = " ".join(words[22:])  # 8 words of overlap, as chunk overlap produces
    candidates = [chunk("first", 0.9, text=first), chunk("second", 0.8, text=second)]
    assert run(candidates) == ["first", "second"]


def test_short_identical_texts_are_duplicates() -> None:
    candidates = [
        chunk("a", 0.9, text="Restart the server."),
        chunk("b", 0.8, text="restart the  server"),
    ]
    assert run(candidates) == ["a"]


def test_a_dropped_duplicate_does_not_cost_a_slot() -> None:
    candidates = [
        chunk("a", 0.9, text=PARAGRAPH),
        chunk("a-again", 0.85, text=PARAGRAPH),
        chunk("b", 0.8),
        chunk("c", 0.7),
    ]
    assert run(candidates, top_k=3) == ["a", "b", "c"]


# --- MMR ---------------------------------------------------------------------------------------


def diverse_candidates() -> list[ScoredChunk]:
    return [
        chunk("best", 1.0, vector=at_angle(0)),
        chunk("similar-to-best", 0.95, vector=at_angle(25)),  # cos 0.906: redundant, not a copy
        chunk("different", 0.8, vector=at_angle(90)),
    ]


def test_mmr_prefers_a_different_chunk_over_a_redundant_better_one() -> None:
    assert run(diverse_candidates(), top_k=2, mmr_lambda=0.5) == ["best", "different"]


def test_mmr_lambda_one_is_pure_relevance() -> None:
    assert run(diverse_candidates(), top_k=2, mmr_lambda=1.0) == ["best", "similar-to-best"]


def test_without_vectors_selection_is_by_score() -> None:
    candidates = [chunk("c", 0.5), chunk("a", 0.9), chunk("d", 0.4), chunk("b", 0.7)]
    assert run(candidates, top_k=3, mmr_lambda=0.5) == ["a", "b", "c"]


def test_equal_scores_keep_retrieval_order() -> None:
    candidates = [chunk(n, 0.5) for n in ("first", "second", "third")]
    assert run(candidates, mmr_lambda=0.5) == ["first", "second", "third"]


def test_top_k_limits_the_result() -> None:
    candidates = [chunk(f"c{i}", 1.0 - i / 100, vector=at_angle(i * 7)) for i in range(12)]
    assert len(run(candidates, top_k=4, mmr_lambda=0.75, dup=0.999)) == 4
    assert run(candidates, top_k=0) == []
    with pytest.raises(ValueError):
        run(candidates, top_k=-1)


def test_returns_the_candidate_objects_themselves() -> None:
    candidates = [chunk("a", 0.9), chunk("b", 0.8)]
    result = rank(candidates, top_k=2, mmr_lambda=0.75, duplicate_threshold=0.95)
    assert result[0] is candidates[0] and result[1] is candidates[1]


def test_texts_are_read_through_words_of_and_only_as_mmr_reaches_them() -> None:
    read: list[str] = []

    def words_of(text: str) -> tuple[str, ...]:
        read.append(text)
        return text_words(text)

    candidates = [chunk(f"c{i}", 1.0 - i / 10, vector=at_angle(i * 30)) for i in range(6)]
    chosen = rank(candidates, top_k=2, mmr_lambda=0.75, duplicate_threshold=0.95, words_of=words_of)
    assert len(chosen) == 2
    assert sorted(read) == sorted(c.record.text for c in chosen)  # not the four left out


def test_a_chain_of_copies_drops_only_what_a_kept_chunk_copies() -> None:
    # a-b and b-c are copies, a-c are not: b goes (a copies it), so c stays; d copies nothing.
    candidates = [
        chunk("a", 0.9, vector=at_angle(0)),
        chunk("b", 0.8, vector=at_angle(4)),
        chunk("c", 0.7, vector=at_angle(8)),
        chunk("d", 0.6, vector=at_angle(70)),
        chunk("no-vector", 0.5),
    ]
    assert run(candidates, top_k=5, mmr_lambda=1.0, dup=0.9965) == ["a", "c", "d", "no-vector"]


# --- sentences ---------------------------------------------------------------------------------


def test_sentences_split_on_final_punctuation_paragraphs_and_list_items() -> None:
    text = (
        "Keys expire after 90 days, e.g. API keys. Rotate them! Why? Audits.\n\n"
        "- Step one\n- Step two spans\na wrapped line.\n"
        "知识库。搜索失败。 Version 3.5 works."
    )
    assert split_sentences(text) == [
        "Keys expire after 90 days, e.g. API keys.",
        "Rotate them!",
        "Why?",
        "Audits.",
        "- Step one",
        "- Step two spans\na wrapped line.",
        "知识库。",
        "搜索失败。",
        "Version 3.5 works.",
    ]


# --- fitting the budget ------------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def sentences_chunk(name: str, n: int, words_each: int = 5) -> ScoredChunk:
    sentence = " ".join(["word"] * (words_each - 1))
    text = " ".join(f"{name.title()} {sentence}." for _ in range(n))
    return chunk(name, 0.5, text=text)


def test_all_chunks_that_fit_are_kept_unchanged() -> None:
    chunks = [sentences_chunk("a", 2), sentences_chunk("b", 2)]  # 10 words each
    assert fit_to_budget(chunks, 20, words) == chunks


def test_the_first_chunk_that_does_not_fit_is_cut_at_a_sentence_boundary_and_then_stop() -> None:
    chunks = [sentences_chunk("a", 2), sentences_chunk("b", 4), sentences_chunk("c", 1)]
    kept = fit_to_budget(chunks, 27, words)  # 10 + 17 left for b: three of its 5-word sentences
    assert names(kept) == ["a", "b"]  # c would fit in what is left, but it ranks below b
    cut = kept[1]
    assert cut.record.text == "B word word word word. B word word word word. B word word word word."
    assert cut.record.point_id == "b" and cut.score == chunks[1].score
    assert chunks[1].record.text.count(".") == 4  # the original is untouched


def test_a_chunk_whose_first_sentence_does_not_fit_is_dropped() -> None:
    chunks = [
        sentences_chunk("a", 2),
        sentences_chunk("b", 3, words_each=8),
        sentences_chunk("c", 1),
    ]
    assert names(fit_to_budget(chunks, 15, words)) == ["a"]


def test_per_chunk_overhead_is_charged_for_every_chunk() -> None:
    chunks = [sentences_chunk("a", 2), sentences_chunk("b", 2)]
    assert names(fit_to_budget(chunks, 20, words, per_chunk_overhead=1)) == ["a", "b"]
    cut = fit_to_budget(chunks, 20, words, per_chunk_overhead=1)[1]
    assert cut.record.text == "B word word word word."
    assert fit_to_budget(chunks, 5, words, per_chunk_overhead=5) == []


def test_nothing_fits_a_zero_budget() -> None:
    assert fit_to_budget([sentences_chunk("a", 2)], 0, words) == []


@pytest.mark.parametrize("counter", [words, ClaudeTokenEstimate().count], ids=["words", "claude-estimate"])
def test_the_budget_is_never_exceeded(counter: Callable[[str], int]) -> None:
    texts = [
        PARAGRAPH,
        "Short one. " * 7,
        "A single very long sentence without any full stop " * 6,
        "知识库暂时无法搜索。请稍后再试。" * 4,
        "def f(x):\n    return x[0] + x[1]\n\nCall f(xs). It returns a sum.",
    ]
    chunks = [chunk(f"c{i}", 1.0 - i / 10, text=t) for i, t in enumerate(texts)]
    for overhead in (0, 7):
        for budget in range(0, 400, 3):
            kept = fit_to_budget(chunks, budget, counter, per_chunk_overhead=overhead)
            total = sum(counter(c.record.text) + overhead for c in kept)
            assert total <= budget
            for original, got in zip(chunks, kept, strict=False):
                assert original.record.text.startswith(got.record.text)
            # Only the last chunk may be cut: everything before it is whole.
            assert all(g.record.text == o.record.text for o, g in zip(chunks, kept[:-1], strict=False))
