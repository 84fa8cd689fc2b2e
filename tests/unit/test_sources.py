"""Named sources: how paths on the command line become source names and document paths, and when a
name already bound to another folder is refused. No model, no store: the store's view of its
documents is given as ``DocumentState`` values."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.store import DEFAULT_TENANT, DocumentState
from ingest.discovery import discover
from ingest.runner import doc_id_for
from ingest.sources import Root, SourceError, check_sources, resolve_roots, valid_source_name

pytestmark = pytest.mark.unit


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "checkout" / "docs"
    (folder / "guide").mkdir(parents=True)
    (folder / "index.md").write_text("# Index\n")
    (folder / "guide" / "install.md").write_text("# Install\n")
    (folder / "logo.png").write_bytes(b"\x89PNG")
    return folder


def doc_id(source: str) -> str:
    return doc_id_for(source, tenant=DEFAULT_TENANT)


def stored(source: str, name: str | None, root: str | None) -> tuple[str, DocumentState]:
    """One stored document as ``document_states()`` reports it (None: written by an older kb)."""
    return doc_id(source), DocumentState(source=source, source_name=name, source_root=root)


# --------------------------------------------------------------------------- naming


def test_a_folder_is_a_source_named_after_it_however_it_is_spelled(
    docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(docs.parent)
    spellings = [Path("docs"), Path("./docs/"), docs, Path("docs/guide/..")]

    roots = [resolve_roots([spelling])[0] for spelling in spellings]

    assert all(found == [Root(name="docs", folder=docs.resolve())] for found in roots)


def test_document_paths_are_the_source_name_plus_the_path_inside_the_folder(docs: Path) -> None:
    roots, _ = resolve_roots([docs])

    found = discover(roots, include=["**/*"], exclude=[], supported=[".md"])

    assert [f.source for f in found.files] == ["docs/guide/install.md", "docs/index.md"]
    assert found.unsupported == ["docs/logo.png"]


def test_source_names_the_folder_instead_of_its_own_name(docs: Path) -> None:
    roots, _ = resolve_roots([docs], source="handbook")

    found = discover(roots, include=["**/*"], exclude=[], supported=[".md"])

    assert {f.source for f in found.files} == {"handbook/index.md", "handbook/guide/install.md"}


def test_a_single_file_belongs_to_the_source_of_its_folder(docs: Path) -> None:
    roots, _ = resolve_roots([docs / "guide" / "install.md"])

    found = discover(roots, include=["**/*"], exclude=[], supported=[".md"])

    assert roots == [Root(name="guide", folder=docs / "guide", part=docs / "guide" / "install.md")]
    assert [f.source for f in found.files] == ["guide/install.md"]


def test_a_folder_given_with_one_of_its_files_is_one_root(docs: Path) -> None:
    roots, _ = resolve_roots([docs / "index.md", docs, Path(f"{docs}/")])
    assert roots == [Root(name="docs", folder=docs)]

    known = {"docs": docs}
    roots, _ = resolve_roots([docs / "guide" / "install.md", docs / "guide", docs / "index.md"], known=known)
    assert roots == [
        Root(name="docs", folder=docs, part=docs / "guide"),
        Root("docs", docs, docs / "index.md"),
    ]


def test_a_path_inside_a_folder_the_store_knows_belongs_to_that_source(docs: Path) -> None:
    known = {"docs": docs, "elsewhere": Path("/elsewhere")}

    (one_file,), _ = resolve_roots([docs / "guide" / "install.md"], known=known)
    (subfolder,), _ = resolve_roots([docs / "guide"], known=known)

    assert one_file == Root(name="docs", folder=docs, part=docs / "guide" / "install.md")
    assert subfolder == Root(name="docs", folder=docs, part=docs / "guide")
    found = discover([subfolder], include=["**/*"], exclude=[], supported=[".md"])
    assert [f.source for f in found.files] == ["docs/guide/install.md"]


def test_a_folder_the_store_knows_under_a_chosen_name_keeps_that_name(docs: Path) -> None:
    (root,), _ = resolve_roots([docs], known={"handbook": docs})
    assert root == Root(name="handbook", folder=docs)


def test_the_closest_known_folder_wins_and_an_explicit_name_chooses(docs: Path) -> None:
    known = {"docs": docs, "guide": docs / "guide"}
    install = docs / "guide" / "install.md"

    assert resolve_roots([install], known=known)[0][0].name == "guide"
    assert resolve_roots([install], known=known, source="docs")[0][0] == Root(
        name="docs", folder=docs, part=install
    )
    assert resolve_roots([install], known=known, source="new")[0][0] == Root(
        name="new", folder=docs / "guide", part=install
    )


def test_missing_paths_are_reported_not_named(docs: Path) -> None:
    roots, missing = resolve_roots([docs, docs / "nope"])
    assert [r.name for r in roots] == ["docs"]
    assert missing == [str(docs / "nope")]


def test_two_folders_with_one_name_in_one_run_are_refused(docs: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "docs"
    other.mkdir(parents=True)

    with pytest.raises(SourceError, match="--source NAME") as refused:
        resolve_roots([docs, other])
    assert str(docs) in refused.value.message and str(other) in refused.value.message

    with pytest.raises(SourceError, match="would both be source 'shared'"):
        resolve_roots([docs / "guide", other], source="shared")


@pytest.mark.parametrize("name", ["", "  ", "a/b", "a\\b", "..", " docs", "tab\there", "x" * 201])
def test_a_source_name_that_cannot_head_a_path_is_refused(name: str) -> None:
    with pytest.raises(SourceError, match="--source NAME"):
        valid_source_name(name)


def test_the_filesystem_root_needs_an_explicit_name() -> None:
    with pytest.raises(SourceError, match="needs a name"):
        resolve_roots([Path("/")])


def test_a_root_names_only_files_of_its_own_source_and_scope(docs: Path) -> None:
    folder = Root(name="docs", folder=docs)
    one_file = Root(name="docs", folder=docs, part=docs / "index.md")
    subfolder = Root(name="docs", folder=docs, part=docs / "guide")

    assert folder.file_of("docs/guide/install.md") == docs / "guide" / "install.md"
    assert folder.file_of("other/guide/install.md") is None
    assert folder.file_of("docs") is None
    assert one_file.file_of("docs/index.md") == docs / "index.md"
    assert one_file.file_of("docs/guide/install.md") is None
    assert subfolder.file_of("docs/guide/install.md") == docs / "guide" / "install.md"
    assert subfolder.file_of("docs/index.md") is None


# --------------------------------------------------------------------------- against the store


def test_a_name_the_store_knows_for_the_same_folder_is_fine(docs: Path) -> None:
    states = dict([stored("docs/index.md", "docs", str(docs)), stored("other/a.md", "other", "/x/other")])

    plan = check_sources([Root(name="docs", folder=docs)], states)

    assert plan.adoptions == [] and plan.unrecorded == []


def test_a_name_the_store_knows_for_another_folder_is_refused_with_both_ways_out(docs: Path) -> None:
    states = dict([stored("docs/index.md", "docs", "/demo/docs")])

    with pytest.raises(SourceError) as refused:
        check_sources([Root(name="docs", folder=docs)], states)

    message = refused.value.message
    assert "/demo/docs" in message and str(docs) in message
    assert "--source NAME" in message and "--adopt" in message


def test_adopt_rebinds_every_stored_document_of_the_name(docs: Path) -> None:
    states = dict(
        [
            stored("docs/index.md", "docs", "/old/docs"),
            stored("docs/gone.md", "docs", "/old/docs"),
            stored("other/a.md", "other", "/x/other"),
        ]
    )

    plan = check_sources([Root(name="docs", folder=docs)], states, adopt=True)

    (adoption,) = plan.adoptions
    assert adoption.name == "docs" and adoption.folder == docs
    assert adoption.previous == ["/old/docs"]
    assert sorted(adoption.doc_ids) == sorted([doc_id("docs/index.md"), doc_id("docs/gone.md")])


def test_documents_of_an_older_kb_under_the_name_are_not_claimed_silently(docs: Path) -> None:
    states = dict([stored("docs/index.md", None, None), stored("docs/guide/install.md", None, None)])

    with pytest.raises(SourceError, match="older kb") as refused:
        check_sources([Root(name="docs", folder=docs)], states)
    assert "2 document(s) under docs/" in refused.value.message
    assert "--adopt" in refused.value.message

    plan = check_sources([Root(name="docs", folder=docs)], states, adopt=True)
    assert plan.adoptions[0].previous == [] and len(plan.adoptions[0].doc_ids) == 2


def test_documents_of_an_older_kb_elsewhere_are_listed_but_do_not_block(docs: Path) -> None:
    states = dict([stored("notes/a.md", None, None), stored("README.md", None, None)])

    plan = check_sources([Root(name="docs", folder=docs)], states)

    assert plan.adoptions == []
    assert plan.unrecorded == ["README.md", "notes/a.md"]
