"""Chunking rules, specified with a one-token-per-word tokenizer (no model).

The real tokenizer's guarantee (every chunk fits the model, heading path included) is checked in
tests/integration/test_chunking.py; here the rules read in whole words.
"""

from __future__ import annotations

import itertools

import pytest

from app.records import embedding_text
from ingest.chunking import chunk_document
from ingest.documents import LoadedDocument, Section
from tests.fakes.tokenizer import WordTokenizer

pytestmark = pytest.mark.unit

TOKENS = WordTokenizer()


def document(*sections: Section) -> LoadedDocument:
    return LoadedDocument(title="Doc", format="markdown", sections=sections)


def sentence(n: int, words: int = 6) -> str:
    return " ".join(f"w{n}x{i}" for i in range(words - 1)) + f" end{n}."


def test_every_chunk_fits_the_budget_with_its_heading_path() -> None:
    text = " ".join(sentence(n) for n in range(40))
    section = Section(heading_path=("Guide", "Install"), text=text)
    drafts = chunk_document(document(section), TOKENS, max_tokens=30, overlap_tokens=6)
    assert len(drafts) > 5
    assert all(TOKENS.count(embedding_text(d.heading_path, d.text)) <= 30 for d in drafts)


def test_no_word_is_lost_and_chunks_follow_the_text_in_order() -> None:
    text = " ".join(sentence(n) for n in range(20))
    drafts = chunk_document(document(Section(text=text)), TOKENS, max_tokens=25, overlap_tokens=0)
    assert " ".join(d.text for d in drafts).split() == text.split()


def test_sections_are_never_merged_and_keep_their_heading_path_and_page() -> None:
    sections = (
        Section(heading_path=("A",), text="tiny one.", page=1),
        Section(heading_path=("B",), text="tiny two.", page=2),
    )
    drafts = chunk_document(document(*sections), TOKENS, max_tokens=50)
    assert [(d.heading_path, d.text, d.page) for d in drafts] == [
        (("A",), "tiny one.", 1),
        (("B",), "tiny two.", 2),
    ]


def test_a_split_falls_between_sentences_never_inside_one() -> None:
    text = " ".join(sentence(n) for n in range(6))
    drafts = chunk_document(document(Section(text=text)), TOKENS, max_tokens=14, overlap_tokens=0)
    assert all(d.text.endswith(".") for d in drafts)


def test_overlap_repeats_whole_trailing_sentences_of_the_previous_chunk() -> None:
    text = " ".join(sentence(n, words=4) for n in range(12))
    drafts = chunk_document(
        document(Section(text=text)), TOKENS, max_tokens=16, overlap_tokens=4, min_tokens=0
    )
    assert len(drafts) >= 3
    for previous, current in itertools.pairwise(drafts):
        last_sentence = previous.text.rsplit(". ", 1)[-1]
        assert current.text.startswith(last_sentence.rstrip(".")), (previous.text, current.text)


def test_an_overlong_heading_path_keeps_its_innermost_headings() -> None:
    path = tuple(f"Heading number {n}" for n in range(10))
    (draft,) = chunk_document(
        document(Section(heading_path=path, text="body text here.")), TOKENS, max_tokens=30
    )
    assert draft.heading_path == path[-len(draft.heading_path) :]
    assert TOKENS.count(" > ".join(draft.heading_path)) <= 30 // 3
