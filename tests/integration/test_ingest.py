"""Ingestion end to end on the real model and the real embedded Qdrant store."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from app.cli import cli
from app.embedding import Embedder
from app.errors import ModelMismatchError
from app.settings import Settings
from app.store import DEFAULT_TENANT, DocumentState, QdrantStore
from ingest.loaders import load_document
from ingest.progress import RichProgress, progress_for
from ingest.runner import IngestItem, Ingestor, doc_id_for

pytestmark = pytest.mark.integration

MIXED = Path(__file__).parents[1] / "data" / "mixed"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    target = tmp_path / "kb-docs"
    shutil.copytree(MIXED, target)
    return target


def states_of(store: QdrantStore) -> dict[str, DocumentState]:
    return store.document_states(tenant=DEFAULT_TENANT)


def doc_id(source: str) -> str:
    return doc_id_for(source, tenant=DEFAULT_TENANT)


def make_ingestor(store: QdrantStore, embedder, settings: Settings) -> Ingestor:
    return Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest)


def assert_consistent(store: QdrantStore) -> None:
    """Every document has exactly one complete version: no stale, no duplicate, no missing chunk."""
    for _doc_id, state in states_of(store).items():
        assert len(state.points) == 1, f"{state.source} has several versions: {state.points}"
        (doc_hash,) = state.points
        assert state.is_complete(doc_hash), f"{state.source} is incomplete"


def test_mixed_folder_ingests_good_files_and_reports_the_corrupt_pdf(
    corpus: Path, store, embedder, settings
) -> None:
    report = make_ingestor(store, embedder, settings).ingest_paths([corpus])

    assert [f.path for f in report.failed] == ["kb-docs/broken.pdf"]
    assert report.failed[0].reason
    assert report.new == 4
    sources = {state.source for state in states_of(store).values()}
    assert sources == {"kb-docs/guide.md", "kb-docs/notes.txt", "kb-docs/page.html", "kb-docs/manual.pdf"}
    assert report.chunks_written == store.count() > 0
    assert_consistent(store)


def test_payload_carries_what_retrieval_and_citations_need(corpus: Path, store, embedder, settings) -> None:
    make_ingestor(store, embedder, settings).ingest_paths([corpus])
    points, _ = store.client.scroll(store.collection, limit=1000, with_payload=True)
    pdf_pages = {p.payload["page"] for p in points if p.payload["source"].endswith(".pdf")}
    assert pdf_pages >= {1, 2}
    guide = [p.payload for p in points if p.payload["source"].endswith("guide.md")]
    assert all(payload["heading_path"][0] == payload["title"] for payload in guide)
    assert any(len(payload["heading_path"]) >= 3 for payload in guide)
    for field in ("doc_id", "chunk_index", "text", "doc_hash", "text_hash", "ingested_at"):
        assert all(field in p.payload for p in points)
    assert all(p.payload["tenant"] == DEFAULT_TENANT for p in points)  # ingest.tenant by default


def test_second_run_reports_unchanged_and_computes_no_embeddings(
    corpus: Path, store, embedder, settings
) -> None:
    ingestor = make_ingestor(store, embedder, settings)
    first = ingestor.ingest_paths([corpus])
    second = ingestor.ingest_paths([corpus])
    assert second.unchanged == first.new == 4
    assert second.new == second.changed == 0
    assert second.embeddings_computed == 0
    assert second.chunks_written == 0
    assert store.count() == first.chunks_written


def test_editing_one_file_re_embeds_only_that_file_and_leaves_no_stale_chunk(
    corpus: Path, store, embedder, settings
) -> None:
    ingestor = make_ingestor(store, embedder, settings)
    ingestor.ingest_paths([corpus])
    notes = corpus / "notes.txt"
    notes.write_text("Completely new notes.\n\nThe rollout happens on Tuesdays at noon.\n")

    report = ingestor.ingest_paths([corpus])

    assert report.changed == 1 and report.unchanged == 3
    states = states_of(store)
    notes_state = states[doc_id("kb-docs/notes.txt")]
    assert report.embeddings_computed == sum(notes_state.points.values())
    assert_consistent(store)
    points, _ = store.client.scroll(store.collection, limit=1000, with_payload=True)
    notes_texts = " ".join(p.payload["text"] for p in points if p.payload["source"] == "kb-docs/notes.txt")
    assert "Tuesdays" in notes_texts


def test_prune_removes_documents_whose_file_is_gone(corpus: Path, store, embedder, settings) -> None:
    ingestor = make_ingestor(store, embedder, settings)
    ingestor.ingest_paths([corpus])
    (corpus / "page.html").unlink()

    without_prune = ingestor.ingest_paths([corpus])
    assert without_prune.pruned == 0
    assert doc_id("kb-docs/page.html") in states_of(store)

    pruned = ingestor.ingest_paths([corpus], prune=True)
    assert pruned.pruned == 1
    assert doc_id("kb-docs/page.html") not in states_of(store)
    assert_consistent(store)


def test_prune_leaves_documents_of_other_roots_alone(
    corpus: Path, tmp_path: Path, store, embedder, settings
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "faq.md").write_text("# FAQ\n\nAnswers live here.\n")
    ingestor = make_ingestor(store, embedder, settings)
    ingestor.ingest_paths([corpus, other])
    report = ingestor.ingest_paths([corpus], prune=True)
    assert report.pruned == 0
    assert doc_id("other/faq.md") in states_of(store)


def test_dry_run_prints_the_plan_and_writes_nothing(corpus: Path, store, embedder, settings) -> None:
    report = make_ingestor(store, embedder, settings).ingest_paths([corpus], dry_run=True)
    assert report.dry_run and report.new == 4
    assert {step["source"] for step in report.plan if step["action"] == "new"} == {
        "kb-docs/guide.md",
        "kb-docs/notes.txt",
        "kb-docs/page.html",
        "kb-docs/manual.pdf",
    }
    assert store.count() == 0
    assert report.embeddings_computed == 0


def test_interrupted_version_change_is_completed_without_duplicates(
    corpus: Path, store, embedder, settings
) -> None:
    """Old version complete + part of the new one written (a kill between batches)."""
    ingestor = make_ingestor(store, embedder, settings)
    ingestor.ingest_paths([corpus])
    guide = corpus / "guide.md"
    guide.write_text(guide.read_text() + "\n\n## Appendix\n\nA new section about backups and restores.\n")
    item = IngestItem(
        source="kb-docs/guide.md",
        content=guide.read_bytes(),
        load=lambda: load_document(guide),
        source_name="kb-docs",
        source_root=str(corpus.resolve()),
    )
    new_hash_records, _ = ingestor._encoded_records(  # what the next run would write for the new version
        item.load(), item, doc_id("kb-docs/guide.md"), "partial-version"
    )
    partial = new_hash_records[:1]
    store.upsert(
        partial,
        embedder.embed([r.embedding_text() for r in partial]),
        [ingestor.lexical.encode_document(r.text) for r in partial],
        tenant=DEFAULT_TENANT,
    )
    assert len(states_of(store)[doc_id("kb-docs/guide.md")].points) == 2

    report = ingestor.ingest_paths([corpus])

    assert report.changed == 1
    assert_consistent(store)


def test_store_filled_by_another_model_is_refused(corpus: Path, store, embedder, settings) -> None:
    store.ensure_collection(model_name="some-other-model", dimension=embedder.dimension)
    with pytest.raises(ModelMismatchError, match="some-other-model"):
        make_ingestor(store, embedder, settings).ingest_paths([corpus])


def test_cli_exits_non_zero_and_names_the_bad_file(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KB_DATA_DIR", str(tmp_path / "cli-data"))
    result = CliRunner().invoke(cli, ["ingest", str(corpus), "--json"])
    assert result.exit_code == 1, result.output
    summary = msgspec.json.decode(result.stdout)
    for key in (
        "files_seen",
        "new",
        "changed",
        "unchanged",
        "failed",
        "pruned",
        "chunks_written",
        "seconds",
        "chunks_per_second",
    ):
        assert key in summary
    assert summary["failed"][0]["path"] == "kb-docs/broken.pdf"

    again = CliRunner().invoke(cli, ["ingest", str(corpus)])
    assert "unchanged 4" in again.output


def test_cli_fails_at_once_when_the_embedded_store_is_held(
    corpus: Path, tmp_path: Path, monkeypatch, settings
) -> None:
    from app.store import open_store

    monkeypatch.setenv("KB_DATA_DIR", settings.data_dir)
    holder = open_store(settings)  # what a running `kb serve` does
    try:
        result = CliRunner().invoke(cli, ["ingest", str(corpus)])
    finally:
        holder.close()
    assert result.exit_code != 0
    assert "in use by another process" in result.output
    assert "QDRANT_URL" in result.output


def test_oversized_file_is_reported_and_the_rest_ingested(corpus: Path, store, embedder, settings) -> None:
    small_limit = msgspec.structs.replace(settings.ingest, max_file_bytes=1024)
    (corpus / "huge.txt").write_text("word " * 1000)
    report = Ingestor(store, embedder, chunking=settings.chunking, ingest=small_limit).ingest_paths([corpus])
    failed = {f.path: f.reason for f in report.failed}
    assert "larger than ingest.max_file_bytes" in failed["kb-docs/huge.txt"]
    assert (corpus / "notes.txt").stat().st_size < 1024
    assert doc_id("kb-docs/notes.txt") in states_of(store)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_on_a_terminal_count_every_file_and_chunk(
    corpus: Path, store: QdrantStore, embedder: Embedder, settings: Settings
) -> None:
    terminal = _Terminal()
    progress = progress_for(quiet=False, stream=terminal)
    assert isinstance(progress, RichProgress)

    report = Ingestor(
        store, embedder, chunking=settings.chunking, ingest=settings.ingest, progress=progress
    ).ingest_paths([corpus])

    drawn = terminal.getvalue()
    assert report.chunks_written > 0
    # The last redraw (on close) shows the final counts, however rarely the bars redraw meanwhile.
    assert (
        f"{report.files_seen - len(report.unsupported)}/{report.files_seen - len(report.unsupported)}"
        in drawn
    )
    assert f"{report.chunks_written}/{report.chunks_written}" in drawn
