"""Named sources on the real model and the real embedded store: two folders with the same name never
overwrite or prune each other, the same folder however spelled is one source, a moved folder is
re-bound without re-embedding, and stores written before sources were recorded are taken over only
when asked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from qdrant_client import models

from app.cli import cli
from app.settings import Settings
from app.store import DEFAULT_TENANT, QdrantStore
from ingest.runner import Ingestor
from ingest.sources import SourceError

pytestmark = pytest.mark.integration


def write_docs(folder: Path, pages: dict[str, str]) -> Path:
    for name, body in pages.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(body)
    return folder


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The demo's docs folder."""
    return write_docs(
        tmp_path / "demo" / "docs",
        {
            "ingestion.md": "# Ingesting documents\n\nRun kb ingest on a folder of documents.\n",
            "asking.md": "# Asking\n\nPOST a question to /ask and read the answer.\n",
            "guide/install.md": "# Install\n\nCreate a virtual environment, then pip install.\n",
        },
    )


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """Another project's folder that happens to be called docs too."""
    return write_docs(
        tmp_path / "somewhere" / "else" / "docs",
        {"ingestion.md": "# Our ingestion\n\nWe ingest invoices every night.\n"},
    )


@pytest.fixture
def ingestor(store: QdrantStore, embedder, settings: Settings) -> Ingestor:
    return Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest)


def stored(store: QdrantStore) -> dict[str, tuple[str | None, str | None, dict[str, int]]]:
    """Document path → (source name, folder, points per content hash)."""
    return {
        s.source: (s.source_name, s.source_root, dict(s.points))
        for s in store.document_states(tenant=DEFAULT_TENANT).values()
    }


def texts_of(store: QdrantStore, source: str) -> str:
    points, _ = store.client.scroll(store.collection, limit=1000, with_payload=True)
    return " ".join(p.payload["text"] for p in points if p.payload["source"] == source)


# --------------------------------------------------------------------------- the defect


def test_another_folder_with_the_same_name_is_refused_and_changes_nothing(
    demo: Path, elsewhere: Path, ingestor: Ingestor, store: QdrantStore
) -> None:
    ingestor.ingest_paths([demo])
    before = stored(store)

    for dry_run in (True, False):
        with pytest.raises(SourceError) as refused:
            ingestor.ingest_paths([elsewhere], prune=True, dry_run=dry_run)
        assert str(demo) in refused.value.message and str(elsewhere) in refused.value.message
        assert "--source NAME" in refused.value.message

    assert stored(store) == before
    assert "virtual environment" in texts_of(store, "docs/guide/install.md")
    assert "kb ingest" in texts_of(store, "docs/ingestion.md")


def test_the_cli_names_the_way_out_and_exits_non_zero(
    demo: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("KB_DATA_DIR", settings.data_dir)
    assert CliRunner().invoke(cli, ["ingest", str(demo), "--quiet"]).exit_code == 0

    result = CliRunner().invoke(cli, ["ingest", str(elsewhere), "--prune", "--dry-run"])

    assert result.exit_code == 1
    assert "--source NAME" in result.output and "--adopt" in result.output
    assert "would prune" not in result.output and "would changed" not in result.output


def test_under_another_name_both_folders_are_kept_and_pruned_apart(
    demo: Path, elsewhere: Path, ingestor: Ingestor, store: QdrantStore
) -> None:
    ingestor.ingest_paths([demo])
    ours = ingestor.ingest_paths([elsewhere], source="invoices", prune=True)
    assert ours.new == 1 and ours.pruned == 0

    sources = stored(store)
    assert sources["invoices/ingestion.md"][:2] == ("invoices", str(elsewhere))
    assert sources["docs/ingestion.md"][:2] == ("docs", str(demo))
    assert "invoices" in texts_of(store, "invoices/ingestion.md")
    assert "kb ingest" in texts_of(store, "docs/ingestion.md")

    (elsewhere / "ingestion.md").unlink()
    pruned = ingestor.ingest_paths([elsewhere], source="invoices", prune=True)
    assert pruned.pruned == 1
    assert set(stored(store)) == {"docs/ingestion.md", "docs/asking.md", "docs/guide/install.md"}


def test_the_same_folder_however_given_is_one_source(
    demo: Path, ingestor: Ingestor, store: QdrantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(demo.parent)
    first = ingestor.ingest_paths([Path("docs")])
    for spelling in (Path("./docs/"), demo, Path("docs/guide/..")):
        again = ingestor.ingest_paths([spelling], prune=True)
        assert again.unchanged == first.new == 3, spelling
        assert again.embeddings_computed == 0 and again.pruned == 0
    one_file = ingestor.ingest_paths([demo / "asking.md"], prune=True)
    assert one_file.unchanged == 1 and one_file.pruned == 0
    assert len(stored(store)) == 3


def test_a_file_or_subfolder_of_a_source_updates_that_source(
    demo: Path, ingestor: Ingestor, store: QdrantStore
) -> None:
    ingestor.ingest_paths([demo])
    install = demo / "guide" / "install.md"
    install.write_text("# Install\n\nUse the installer from the downloads page.\n")
    (demo / "guide" / "upgrade.md").write_text("# Upgrade\n\nRun the installer again.\n")
    (demo / "asking.md").unlink()

    one_file = ingestor.ingest_paths([install], prune=True)
    subfolder = ingestor.ingest_paths([demo / "guide"], prune=True)

    assert (one_file.changed, one_file.new, one_file.pruned) == (1, 0, 0)
    assert (subfolder.unchanged, subfolder.new, subfolder.pruned) == (1, 1, 0), "prune stays in guide/"
    assert set(stored(store)) == {
        "docs/ingestion.md",
        "docs/asking.md",
        "docs/guide/install.md",
        "docs/guide/upgrade.md",
    }
    assert "installer" in texts_of(store, "docs/guide/install.md")


def test_a_folder_ingested_under_a_chosen_name_keeps_it(
    demo: Path, ingestor: Ingestor, store: QdrantStore
) -> None:
    ingestor.ingest_paths([demo], source="handbook")
    again = ingestor.ingest_paths([demo], prune=True)
    assert again.unchanged == 3 and again.new == 0
    assert {path.partition("/")[0] for path in stored(store)} == {"handbook"}


def test_several_roots_in_one_run_prune_only_their_own_documents(
    demo: Path, tmp_path: Path, ingestor: Ingestor, store: QdrantStore
) -> None:
    notes = write_docs(tmp_path / "notes", {"a.md": "# A\n\nAlpha notes.\n", "b.md": "# B\n\nBeta notes.\n"})
    kept = write_docs(tmp_path / "kept", {"c.md": "# C\n\nGamma notes.\n"})
    ingestor.ingest_paths([demo, notes, kept])
    (demo / "asking.md").unlink()
    (notes / "b.md").unlink()
    (kept / "c.md").unlink()

    report = ingestor.ingest_paths([demo, notes], prune=True)

    assert report.pruned == 2
    assert set(stored(store)) == {"docs/ingestion.md", "docs/guide/install.md", "notes/a.md", "kept/c.md"}


# --------------------------------------------------------------------------- a folder that moved


def test_a_moved_folder_is_refused_then_adopted_without_re_embedding(
    demo: Path, tmp_path: Path, ingestor: Ingestor, store: QdrantStore
) -> None:
    ingestor.ingest_paths([demo])
    moved = tmp_path / "new-home" / "docs"
    moved.parent.mkdir()
    shutil.move(demo, moved)
    (moved / "asking.md").unlink()

    with pytest.raises(SourceError, match="--adopt"):
        ingestor.ingest_paths([moved], prune=True)

    planned = ingestor.ingest_paths([moved], prune=True, adopt=True, dry_run=True)
    assert planned.adopted == 3 and planned.pruned == 1
    assert {s[1] for s in stored(store).values()} == {str(demo)}, "a dry run re-binds nothing"

    report = ingestor.ingest_paths([moved], prune=True, adopt=True)

    assert report.adopted == 3
    assert report.unchanged == 2 and report.pruned == 1
    assert report.embeddings_computed == 0
    assert {path: s[:2] for path, s in stored(store).items()} == {
        "docs/ingestion.md": ("docs", str(moved)),
        "docs/guide/install.md": ("docs", str(moved)),
    }
    assert ingestor.ingest_paths([moved]).unchanged == 2  # an ordinary run again


# --------------------------------------------------------------------------- stores of an older kb


def forget_sources(store: QdrantStore) -> None:
    """Make the store look written by a kb that did not record sources on its chunks."""
    store.client.delete_payload(
        store.collection,
        keys=["source_name", "source_root"],
        points=models.FilterSelector(filter=models.Filter()),
    )


def test_documents_of_an_older_kb_are_taken_over_only_when_asked(
    demo: Path, elsewhere: Path, ingestor: Ingestor, store: QdrantStore
) -> None:
    ingestor.ingest_paths([demo])
    forget_sources(store)
    before = stored(store)
    assert {s[:2] for s in before.values()} == {(None, None)}

    with pytest.raises(SourceError, match="older kb"):
        ingestor.ingest_paths([elsewhere], prune=True, dry_run=True)
    with pytest.raises(SourceError, match="older kb"):
        ingestor.ingest_paths([demo])
    assert stored(store) == before

    report = ingestor.ingest_paths([demo], adopt=True, prune=True)

    assert report.adopted == 3 and report.unchanged == 3
    assert report.embeddings_computed == 0 and report.pruned == 0
    assert {s[:2] for s in stored(store).values()} == {("docs", str(demo))}


def test_documents_of_an_older_kb_elsewhere_are_reported_on_every_run(
    demo: Path, tmp_path: Path, ingestor: Ingestor, store: QdrantStore
) -> None:
    ingestor.ingest_paths([demo])
    forget_sources(store)
    notes = write_docs(tmp_path / "notes", {"a.md": "# A\n\nAlpha notes.\n"})

    report = ingestor.ingest_paths([notes], prune=True)

    assert report.new == 1 and report.pruned == 0
    assert report.unrecorded == 3
    assert any("--adopt" in line for line in report.summary_lines())
    assert len(stored(store)) == 4
