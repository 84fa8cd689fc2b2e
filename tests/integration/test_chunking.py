"""Chunking specification, checked with the real all-MiniLM-L6-v2 tokenizer."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest

from app.embedding import SentenceTransformerEmbedder
from app.records import ChunkRecord
from ingest.chunking import ChunkDraft, chunk_document, chunk_document_ids
from ingest.documents import LoadedDocument, Section
from ingest.loaders import LoadError, load_document

pytestmark = pytest.mark.integration

Embedder = SentenceTransformerEmbedder
MIXED = Path(__file__).parents[1] / "data" / "mixed"
WORDS = (
    "the agent copies nightly snapshots to object storage while operators watch latency"
    " dashboards and answer pages from teams about missing search results in the knowledge"
    " base service"
).split()


def embedding_text(draft: ChunkDraft) -> str:
    """Exactly what ingestion embeds for a draft (the ChunkRecord rule)."""
    record = ChunkRecord(
        point_id="p",
        doc_id="d",
        source="s",
        title="t",
        heading_path=draft.heading_path,
        chunk_index=0,
        chunk_count=1,
        text=draft.text,
        doc_hash="h",
        text_hash="h",
        ingested_at="now",
    )
    return record.embedding_text()


def document(*sections: Section) -> LoadedDocument:
    return LoadedDocument(title="Doc", format="markdown", sections=sections)


def chunk_text(text: str, embedder: Embedder, **options: int) -> list[ChunkDraft]:
    return chunk_document(document(Section(text=text)), embedder, **options)


def sentences(count: int, seed: int = 0, words: tuple[int, int] = (4, 12)) -> list[str]:
    """Distinct sentences (numbered, so each is findable) of a varying number of words."""
    rng = random.Random(seed)
    return [
        f"Step {index} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) + "."
        for index in range(count)
    ]


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def assert_faithful_and_complete(source: str, drafts: list[ChunkDraft]) -> None:
    """Each draft is a slice of the source (whitespace aside); in order they cover all of it."""
    whole = squash(source)
    covered = 0
    for draft in drafts:
        piece = squash(draft.text)
        assert piece in whole, f"draft is not a slice of its section: {draft.text[:80]!r}"
        # It must continue the text covered so far: start at or before its end, and go past it.
        start = whole.find(piece, max(0, covered - len(piece) + 1), covered + len(piece))
        assert start != -1, f"text lost or repeated before draft {draft.text[:80]!r}"
        covered = start + len(piece)
    assert covered == len(whole)


def sentence_runs(drafts: list[ChunkDraft], all_sentences: list[str]) -> list[tuple[int, int]]:
    """For each draft, the (first, last + 1) indices of the whole sentences it consists of."""
    runs = []
    for draft in drafts:
        first = next(i for i, s in enumerate(all_sentences) if draft.text.startswith(s))
        ends = [
            end
            for end in range(first + 1, len(all_sentences) + 1)
            if " ".join(all_sentences[first:end]) == draft.text
        ]
        assert ends, f"draft is not a run of whole sentences: {draft.text!r}"
        runs.append((first, ends[0]))
    return runs


# --- the hard guarantee ------------------------------------------------------------------------

_rng = random.Random(7)
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
VARIED_TEXTS = {
    "prose paragraphs": "\n\n".join(" ".join(sentences(n, seed=n)) for n in (3, 40, 1, 25)),
    "3000-char word": "a" * 3000,
    "3000-char url": "https://example.com/"
    + "/".join(f"{_rng.choice(WORDS)}-{_rng.randint(0, 99999)}" for _ in range(200)),
    "long alphanumeric words": " ".join("".join(_rng.choice(_ALNUM) for _ in range(90)) for _ in range(30)),
    "no sentence punctuation": " ".join(f"{_rng.choice(WORDS)}{i}" for i in range(1500)),
    "cjk with punctuation": "".join(
        "".join(chr(_rng.randint(0x4E00, 0x4FFF)) for _ in range(_rng.randint(5, 40))) + "。"
        for _ in range(60)
    ),
    "cjk without punctuation": "".join(chr(_rng.randint(0x4E00, 0x4FFF)) for _ in range(1500)),
    "code block": "\n".join(
        f"def handler_{i}(event):\n    # route {i}\n    return dispatch(event, retries={i})"
        for i in range(80)
    ),
    "table": "\n".join(
        f"row-{i} | {_rng.choice(WORDS)} | {_rng.randint(0, 10**6)} | {_rng.choice(WORDS)}"
        for i in range(150)
    ),
    "mixed scripts and emoji": " ".join(
        f"Ünïcödé {i} 🚀 مرحبا {i} שלום naïve résumé façade" for i in range(120)
    ),
}
HEADING_PATHS = {
    "no heading": (),
    "nested headings": ("Deployment Guide", "Installation", "Linux"),
    "very long headings": tuple(" ".join(WORDS) + f" part {i}" for i in range(4)),
}


@pytest.mark.parametrize("max_tokens", [16, 48, 254])
@pytest.mark.parametrize("path", HEADING_PATHS.values(), ids=HEADING_PATHS.keys())
@pytest.mark.parametrize("text", VARIED_TEXTS.values(), ids=VARIED_TEXTS.keys())
def test_every_draft_fits_max_tokens_including_its_heading_path_and_loses_no_text(
    embedder: Embedder, text: str, path: tuple[str, ...], max_tokens: int
) -> None:
    section = Section(heading_path=path, text=text)
    drafts = chunk_document(document(section), embedder, max_tokens=max_tokens)

    assert drafts
    assert all(embedder.count(embedding_text(draft)) <= max_tokens for draft in drafts)
    assert all(draft.text.strip() for draft in drafts)
    assert_faithful_and_complete(text, drafts)


def test_the_model_limit_holds_for_the_mixed_fixture_folder(embedder: Embedder) -> None:
    for path in sorted(MIXED.iterdir()):
        try:
            loaded = load_document(path)
        except LoadError:
            continue
        drafts = chunk_document(loaded, embedder, max_tokens=embedder.max_tokens)
        assert drafts, path.name
        assert all(embedder.count(embedding_text(d)) <= embedder.max_tokens for d in drafts)


# --- heading paths and sections ----------------------------------------------------------------


def test_drafts_carry_their_sections_heading_path_and_page(embedder: Embedder) -> None:
    sections = (
        Section(heading_path=("Guide", "Install"), text="Run the installer."),
        Section(text="Page one text.", page=1),
    )

    assert chunk_document(document(*sections), embedder, max_tokens=64) == [
        ChunkDraft(("Guide", "Install"), "Run the installer."),
        ChunkDraft((), "Page one text.", page=1),
    ]


def test_sections_are_never_merged_even_when_tiny(embedder: Embedder) -> None:
    sections = (
        Section(heading_path=("A",), text="One."),
        Section(heading_path=("A", "B"), text="Two."),
        Section(heading_path=("C",), text="Three."),
        Section(text="Page four.", page=4),
        Section(text="Page five.", page=5),
    )
    drafts = chunk_document(document(*sections), embedder, max_tokens=254, min_tokens=24)

    assert [(draft.heading_path, draft.text, draft.page) for draft in drafts] == [
        (section.heading_path, section.text, section.page) for section in sections
    ]


def test_a_heading_path_over_a_third_of_the_budget_keeps_its_innermost_headings(
    embedder: Embedder,
) -> None:
    path = ("Operations handbook for the knowledge base", "Backups", "Restoring", "Linux")
    section = Section(heading_path=path, text="Body.")
    (draft,) = chunk_document(document(section), embedder, max_tokens=30)

    assert 0 < len(draft.heading_path) < len(path)
    assert draft.heading_path == path[-len(draft.heading_path) :]
    assert embedder.count(" > ".join(draft.heading_path)) <= 30 // 3


def test_a_single_overlong_heading_is_cut_at_a_word_boundary(embedder: Embedder) -> None:
    heading = " ".join(WORDS)
    section = Section(heading_path=(heading,), text="Body.")
    (draft,) = chunk_document(document(section), embedder, max_tokens=30)

    (kept,) = draft.heading_path
    assert heading.startswith(kept)
    assert heading[len(kept)] == " "
    assert 0 < embedder.count(kept) <= 30 // 3


def test_empty_and_whitespace_only_sections_produce_nothing(embedder: Embedder) -> None:
    empty = document(Section(heading_path=("A",), text=""), Section(text=" \n\n\t "))

    assert chunk_document(empty, embedder, max_tokens=64) == []


# --- paragraphs, sentences, overlap ------------------------------------------------------------


def test_whole_paragraphs_are_packed_together_while_they_fit(embedder: Embedder) -> None:
    paragraphs = ["First paragraph here.", "Second one\nwith two lines.", "Third."]
    (draft,) = chunk_text("\n\n \n".join(paragraphs), embedder, max_tokens=64)

    assert draft.text == "\n\n".join(paragraphs)


def test_a_paragraph_that_does_not_fit_moves_whole_to_the_next_chunk(embedder: Embedder) -> None:
    paragraphs = [" ".join(sentences(4, seed=seed)) for seed in range(5)]
    assert all(embedder.count(paragraph) <= 60 for paragraph in paragraphs)
    drafts = chunk_text("\n\n".join(paragraphs), embedder, max_tokens=100, overlap_tokens=0)

    assert len(drafts) > 1
    assert [part for draft in drafts for part in draft.text.split("\n\n")] == paragraphs


def test_an_oversized_paragraph_is_split_between_sentences(embedder: Embedder) -> None:
    parts = sentences(60, seed=1)
    drafts = chunk_text(" ".join(parts), embedder, max_tokens=64, overlap_tokens=0)

    runs = sentence_runs(drafts, parts)
    assert len(runs) > 3
    assert [start for start, _ in runs[1:]] == [end for _, end in runs[:-1]]  # no gap, no repeat
    assert runs[-1][1] == len(parts)


def test_overlap_repeats_whole_trailing_sentences_within_overlap_tokens(embedder: Embedder) -> None:
    parts = sentences(60, seed=2, words=(3, 6))
    drafts = chunk_text(" ".join(parts), embedder, max_tokens=64, overlap_tokens=20)

    runs = sentence_runs(drafts, parts)
    assert len(runs) > 3
    for (_, previous_end), (start, end) in itertools.pairwise(runs):
        repeated = parts[start:previous_end]
        assert repeated, "every boundary between short sentences carries overlap"
        assert embedder.count(" ".join(repeated)) <= 20
        assert end > previous_end, "each chunk adds new text"
    assert all(embedder.count(draft.text) <= 64 for draft in drafts)


def test_overlap_is_skipped_rather_than_cutting_a_sentence(embedder: Embedder) -> None:
    parts = sentences(20, seed=3, words=(14, 18))
    assert all(embedder.count(sentence) > 12 for sentence in parts)
    drafts = chunk_text(" ".join(parts), embedder, max_tokens=64, overlap_tokens=12)

    runs = sentence_runs(drafts, parts)
    assert [start for start, _ in runs[1:]] == [end for _, end in runs[:-1]]


def test_overlap_never_crosses_sections(embedder: Embedder) -> None:
    first = " ".join(sentences(30, seed=4))
    second = " ".join(sentences(30, seed=5)).replace("Step", "Stage")
    sections = (
        Section(heading_path=("One",), text=first),
        Section(heading_path=("Two",), text=second),
    )
    drafts = chunk_document(document(*sections), embedder, max_tokens=64)

    assert all("Stage" not in draft.text for draft in drafts if draft.heading_path == ("One",))
    assert all("Step" not in draft.text for draft in drafts if draft.heading_path == ("Two",))


def test_a_sentence_longer_than_the_budget_is_cut_at_whitespace(embedder: Embedder) -> None:
    words = [f"{WORDS[i % len(WORDS)]}{i}" for i in range(200)]
    drafts = chunk_text(" ".join(words), embedder, max_tokens=32, overlap_tokens=0)

    assert len(drafts) > 5
    assert [word for draft in drafts for word in draft.text.split(" ")] == words


def test_code_keeps_its_line_breaks_and_indentation(embedder: Embedder) -> None:
    code = "def handler(event):\n    if event.ok:\n        return 1\n    return 0"

    assert [draft.text for draft in chunk_text(code, embedder, max_tokens=64)] == [code]


# --- min_tokens --------------------------------------------------------------------------------


def test_a_tiny_last_piece_takes_whole_sentences_from_the_chunk_before_it(
    embedder: Embedder,
) -> None:
    # Four 12-token sentences fill a 48-token chunk exactly; "Done." (2 tokens) is left over.
    parts = [f"Step {i} copies nightly snapshots to the object store." for i in range(4)]
    parts.append("Done.")
    assert [embedder.count(part) for part in parts] == [12, 12, 12, 12, 2]
    text = " ".join(parts)

    alone = chunk_text(text, embedder, max_tokens=48, overlap_tokens=0, min_tokens=0)
    settled = chunk_text(text, embedder, max_tokens=48, overlap_tokens=0, min_tokens=8)

    assert alone[-1].text == "Done."
    assert settled[-1].text == f"{parts[3]} Done."
    assert " ".join(draft.text for draft in settled) == text


def test_a_lead_in_sentence_is_not_stranded_before_a_paragraph_that_only_fits_alone(
    embedder: Embedder,
) -> None:
    lead_in = "Install it like this:"
    code = "\n".join(f"pip install package-{i}" for i in range(12))
    # The code fits a chunk of its own, but not together with its lead-in.
    assert embedder.count(code) <= 62 < embedder.count(lead_in) + embedder.count(code)
    text = f"{lead_in}\n\n{code}"

    stranded = chunk_text(text, embedder, max_tokens=62, overlap_tokens=0, min_tokens=0)
    kept = chunk_text(text, embedder, max_tokens=62, overlap_tokens=0, min_tokens=24)

    assert [draft.text for draft in stranded] == [lead_in, code]
    assert kept[0].text.startswith(f"{lead_in}\n\npip install package-0\n")
    assert "\n".join(draft.text for draft in kept) == text  # the code is split between lines


# --- contract ----------------------------------------------------------------------------------


def test_chunking_is_deterministic(embedder: Embedder) -> None:
    sections = [Section(heading_path=(name,), text=text) for name, text in VARIED_TEXTS.items()]

    first = chunk_document(document(*sections), embedder, max_tokens=48)
    assert chunk_document(document(*sections), embedder, max_tokens=48) == first


class CountingTokenizer:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.calls: list[str] = []

    def count(self, text: str) -> int:
        self.calls.append("count")
        return self.embedder.count(text)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        self.calls.append("offsets")
        return self.embedder.offsets(text)


def test_tokenizes_each_section_once_and_counts_each_draft_once(embedder: Embedder) -> None:
    sections = [
        Section(heading_path=("Guide", f"Part {i}"), text=" ".join(sentences(80, seed=i))) for i in range(3)
    ]
    counter = CountingTokenizer(embedder)
    drafts = chunk_document(document(*sections), counter, max_tokens=64)

    assert counter.calls.count("offsets") == len(sections)
    # One count per draft (the final check) and one per heading path, nothing more.
    assert counter.calls.count("count") == len(drafts) + len(sections)


def test_rejects_a_max_tokens_too_small_to_hold_anything(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("x", embedder, max_tokens=4)


class CountingIdTokenizer(CountingTokenizer):
    def ids(self, text: str) -> list[int]:
        self.calls.append("ids")
        return self.embedder.ids(text)


def test_drafts_come_with_the_model_tokenizers_ids_of_their_embedding_text(embedder: Embedder) -> None:
    sections = [Section(heading_path=(name,), text=text) for name, text in VARIED_TEXTS.items()]
    counter = CountingIdTokenizer(embedder)
    encoded = chunk_document_ids(document(*sections), counter, max_tokens=48)

    # The same drafts as with a counter that only counts; the final check used ids instead.
    assert [draft for draft, _ in encoded] == chunk_document(document(*sections), embedder, max_tokens=48)
    # One ids call per draft checked (a re-planned section is checked again), never a count.
    assert counter.calls.count("ids") >= len(encoded)
    assert counter.calls.count("count") == len({section.heading_path for section in sections})
    for draft, ids in encoded:
        expected = embedder._tokenizer(embedding_text(draft), add_special_tokens=False)["input_ids"]
        assert ids == list(expected)
        assert len(ids) <= 48
    # A counter without ids gives none, and the same drafts.
    plain = chunk_document_ids(document(*sections), CountingTokenizer(embedder), max_tokens=48)
    assert plain == [(draft, None) for draft, _ in encoded]
