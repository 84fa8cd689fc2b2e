"""complete_sections: a section whose own heading names the question's rarest term is brought
into the context whole, from the candidates, in reading order, within ``top_k``."""

from __future__ import annotations

import msgspec
import pytest

from app.ranking import complete_sections
from app.records import ScoredChunk
from tests.factories import chunk_record

pytestmark = pytest.mark.unit

QUESTION = "Which file formats can I ingest?"
GUIDE = ("Ingesting documents", "Supported formats")


def chunk(
    name: str,
    score: float,
    text: str,
    *,
    doc: str = "ingestion",
    heading_path: tuple[str, ...] = GUIDE,
    index: int = 0,
    title: str = "Ingesting documents",
    doc_hash: str = "h",
) -> ScoredChunk:
    record = chunk_record(name, text=text, title=title, source=f"docs/{doc}.md", heading_path=heading_path)
    record = msgspec.structs.replace(record, doc_id=doc, chunk_index=index, doc_hash=doc_hash)
    return ScoredChunk(record=record, score=score)


def ids(chunks: list[ScoredChunk]) -> list[str]:
    return [c.record.point_id for c in chunks]


# The case: the section's last chunk ranks first, its list of formats far below other
# documents' chunks that share the question's common words ("file", "ingest") but not "format".
FORMATS_LIST = chunk("list", 0.52, "Markdown, plain text, HTML and PDF are read.", index=1)
FORMATS_MORE = chunk("more", 0.49, "Word and PowerPoint documents are read too.", index=2)
FORMATS_TAIL = chunk("tail", 0.98, "Other file types are skipped when you ingest a folder.", index=3)
INTRO = chunk("intro", 0.94, "kb ingest loads every file of a folder.", heading_path=GUIDE[:1])
BENCH = [
    chunk(
        f"bench{i}",
        0.9 - i / 100,
        f"Ingest benchmark round {i}: the files were ingested in rounds.",
        doc="embedding",
        heading_path=("Embedding", "Ingestion benchmark"),
        index=i,
        title="Embedding",
    )
    for i in range(4)
]
SELECTED = [FORMATS_TAIL, INTRO, *BENCH]
CANDIDATES = [*SELECTED, FORMATS_LIST, FORMATS_MORE]


def test_the_section_naming_the_rarest_term_comes_in_whole_in_reading_order() -> None:
    pull = complete_sections(SELECTED, CANDIDATES, QUESTION, top_k=6)
    assert pull.rare_terms == {"format"}  # "file" and "ingest" are in nearly every candidate
    assert pull.sections == (("ingestion", "h", GUIDE),)
    assert ids(pull.chunks) == ["list", "more", "tail", "intro", "bench0", "bench1"]
    assert pull.pulled == ("list", "more")


def test_pulled_chunks_displace_the_lowest_ranked_never_one_above_their_section() -> None:
    selected = [INTRO, *BENCH[:3], FORMATS_TAIL]  # the section's chunk ranked last
    pull = complete_sections(selected, CANDIDATES, QUESTION, top_k=5)
    assert ids(pull.chunks) == ["intro", "bench0", "bench1", "bench2", "list"]
    assert pull.pulled == ("list",)


def test_a_heading_with_only_a_common_term_of_the_question_pulls_nothing() -> None:
    # "ingest" is in the heading, but "format" (in one candidate's text) is the rarer term.
    heading = ("Ingesting documents", "Ingesting a folder")
    selected = [chunk("a", 0.9, "kb ingest reads a folder of files.", heading_path=heading, index=5)]
    candidates = [
        *selected,
        chunk("b", 0.5, "More about how to ingest a folder of files.", heading_path=heading, index=6),
        chunk("c", 0.4, "The format of each file is told by its extension.", doc="other", heading_path=()),
    ]
    pull = complete_sections(selected, candidates, QUESTION, top_k=6)
    assert pull.rare_terms == {"format"}
    assert ids(pull.chunks) == ["a"] and pull.pulled == () and pull.sections == ()


def test_a_heading_that_is_the_document_title_names_the_whole_document_not_a_section() -> None:
    # An essay's chunks all carry its title as their only heading: that is no section to complete.
    essay = ("Formats of essays",)
    selected = [
        chunk("e1", 0.9, "One ingests a file.", heading_path=essay, index=3, title="Formats of essays")
    ]
    candidates = [
        *selected,
        chunk("e2", 0.3, "Another file to ingest.", heading_path=essay, index=4, title="Formats of essays"),
    ]
    pull = complete_sections(selected, candidates, QUESTION, top_k=6)
    assert ids(pull.chunks) == ["e1"] and pull.rare_terms == frozenset()


def test_only_the_same_section_of_the_same_document_version_is_pulled() -> None:
    other_doc = chunk("other-doc", 0.5, "Markdown and PDF in another guide.", doc="howto", index=1)
    old_version = chunk("old", 0.5, "Markdown and PDF, as an older copy said.", index=1, doc_hash="old")
    other_section = chunk("sibling", 0.5, "Chunking by heading.", heading_path=(*GUIDE[:1], "Chunking"))
    candidates = [*SELECTED, other_doc, old_version, other_section]
    pull = complete_sections(SELECTED, candidates, QUESTION, top_k=6)
    assert pull.pulled == () and ids(pull.chunks) == ids(SELECTED)


def test_a_candidate_whose_text_the_context_holds_already_is_not_pulled() -> None:
    copy = chunk("copy", 0.5, FORMATS_TAIL.record.text, index=4)  # the same paragraph twice
    pull = complete_sections(SELECTED, [*CANDIDATES, copy], QUESTION, top_k=8)
    assert "copy" not in ids(pull.chunks)
    assert pull.pulled == ("list", "more")


def test_without_a_question_term_in_any_heading_the_selection_is_kept_as_it_is() -> None:
    pull = complete_sections(SELECTED, CANDIDATES, "How fast is the encoder?", top_k=6)
    assert ids(pull.chunks) == ids(SELECTED)
    assert pull.rare_terms == frozenset() and pull.sections == () and pull.pulled == ()


def test_nothing_selected_or_no_index_terms_is_no_section_to_complete() -> None:
    assert complete_sections([], CANDIDATES, QUESTION, top_k=6).chunks == []
    assert ids(complete_sections(SELECTED, CANDIDATES, "Which can I?", top_k=6).chunks) == ids(SELECTED)


def test_a_section_with_nothing_left_to_pull_stays_as_ranked() -> None:
    # Both chunks of the section are selected already: regrouping them would only renumber sources.
    selected = [FORMATS_TAIL, INTRO, FORMATS_LIST]
    pull = complete_sections(selected, selected, QUESTION, top_k=6)
    assert ids(pull.chunks) == ["tail", "intro", "list"]
    assert "format" in pull.rare_terms and pull.sections == () and pull.pulled == ()
