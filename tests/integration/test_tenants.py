"""Tenant isolation on the real model and the real embedded store.

Two teams keep a folder called ``docs`` with the same file names and different content, and one
folder of policies is shared with everyone. A search as one tenant finds its own documents and
the shared ones, never the other's, whatever the request filters name; ingesting, pruning or
moving one tenant's documents leaves the other's untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from qdrant_client import models

from app.cli import cli
from app.retrieval import Retriever
from app.retrieval.bm25 import LexicalEncoder
from app.settings import Settings
from app.store import (
    SHARED_TENANT,
    TENANT_FIELD,
    QdrantStore,
    RetrievalFilters,
    TenantError,
    filter_for,
)
from ingest.runner import Ingestor
from ingest.sources import SourceError

pytestmark = pytest.mark.integration

QUESTION = "How many days of paid holiday do staff get, and what is the code name?"

ACME = {
    "handbook.md": "# Holidays\n\nAcme staff get 30 days of paid holiday a year.\n",
    "secret.md": "# Code name\n\nThe code name of the Acme launch is Redwood.\n",
}
BETA = {
    "handbook.md": "# Holidays\n\nBeta staff get 20 days of paid holiday a year.\n",
    "secret.md": "# Code name\n\nThe code name of the Beta merger is Bluebird.\n",
}
SHARED = {"security.md": "# Security\n\nStaff of every team take 2 days of paid security training.\n"}


def write_docs(folder: Path, pages: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    for name, body in pages.items():
        (folder / name).write_text(body)
    return folder


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """Each team's ``docs`` folder and the shared ``policies`` folder."""
    return {
        "acme": write_docs(tmp_path / "acme" / "docs", ACME),
        "beta": write_docs(tmp_path / "beta" / "docs", BETA),
        SHARED_TENANT: write_docs(tmp_path / "everyone" / "policies", SHARED),
    }


@pytest.fixture
def ingestor(store: QdrantStore, embedder, settings: Settings) -> Ingestor:
    return Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest)


@pytest.fixture
def ingested(ingestor: Ingestor, folders: dict[str, Path], store: QdrantStore) -> QdrantStore:
    for tenant, folder in folders.items():
        report = ingestor.ingest_paths([folder], tenant=tenant)
        assert report.new == len(list(folder.iterdir())) and report.ok, report
    return store


def points_of(store: QdrantStore, tenant: str) -> dict[str, dict[str, object]]:
    """Point id → payload of every chunk stored for ``tenant``."""
    points, _ = store.client.scroll(
        store.collection,
        scroll_filter=models.Filter(
            must=[models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant))]
        ),
        limit=1000,
        with_payload=True,
    )
    return {str(p.id): dict(p.payload or {}) for p in points}


def candidates(
    store: QdrantStore, embedder, tenant: str, filters: RetrievalFilters | None = None
) -> set[str]:
    """Point ids of every dense and lexical candidate a search as ``tenant`` gets from the store
    (before any relevance floor, far more than the corpus holds)."""
    dense, lexical = store.search(
        dense=embedder.embed([QUESTION])[0],
        sparse=LexicalEncoder().encode_query(QUESTION),
        limit=100,
        query_filter=filter_for(filters, tenant=tenant),
    )
    return {hit.record.point_id for hit in dense + lexical}


def retrieved_texts(store: QdrantStore, embedder, settings: Settings, tenant: str) -> str:
    """What the retriever (dense, lexical and the expanded lexical search) keeps for ``tenant``."""
    retriever = Retriever(store, embedder, settings.retrieval)
    try:
        found, _ = retriever.search(QUESTION, tenant=tenant)
    finally:
        retriever.close()
    return "\n".join(c.record.text for c in found)


def test_the_same_path_of_two_tenants_is_two_documents(ingested: QdrantStore) -> None:
    acme = ingested.document_states(tenant="acme")
    beta = ingested.document_states(tenant="beta")

    assert (
        {s.source for s in acme.values()}
        == {s.source for s in beta.values()}
        == {
            "docs/handbook.md",
            "docs/secret.md",
        }
    )
    assert not set(acme) & set(beta)  # document ids
    assert not set(points_of(ingested, "acme")) & set(points_of(ingested, "beta"))
    assert {s.source for s in ingested.document_states(tenant=SHARED_TENANT).values()} == {
        "policies/security.md"
    }


def test_a_search_finds_its_tenants_and_the_shared_documents_only(ingested: QdrantStore, embedder) -> None:
    acme, beta, shared = (set(points_of(ingested, t)) for t in ("acme", "beta", SHARED_TENANT))

    assert candidates(ingested, embedder, "acme") == acme | shared
    assert candidates(ingested, embedder, "beta") == beta | shared
    assert candidates(ingested, embedder, "gamma") == shared  # a tenant with no documents yet


def test_the_retriever_searches_as_the_tenant_it_is_given(ingested: QdrantStore, embedder, settings) -> None:
    acme = retrieved_texts(ingested, embedder, settings, "acme")
    beta = retrieved_texts(ingested, embedder, settings, "beta")

    # The same question, the same paths: each tenant's own answer, and the shared policy.
    assert "30 days" in acme and "security training" in acme and "20 days" not in acme
    assert "20 days" in beta and "security training" in beta and "30 days" not in beta


@pytest.mark.parametrize(
    "filters",
    [
        RetrievalFilters(sources=["docs/secret.md"]),
        RetrievalFilters(sources=["docs/handbook.md", "docs/secret.md", "policies/security.md"]),
        RetrievalFilters(source_prefix="docs"),
        RetrievalFilters(source_prefix="docs/secret.md", sources=["docs/secret.md"]),
    ],
    ids=["one-path", "every-path", "source-prefix", "both"],
)
def test_filters_naming_the_other_tenants_paths_find_nothing_of_theirs(
    ingested: QdrantStore, embedder, filters: RetrievalFilters
) -> None:
    beta = set(points_of(ingested, "beta"))

    found = candidates(ingested, embedder, "acme", filters)

    assert found and not found & beta  # the same paths, acme's chunks only


def test_re_ingesting_one_tenant_changes_and_prunes_its_documents_only(
    ingested: QdrantStore, ingestor: Ingestor, folders: dict[str, Path]
) -> None:
    beta_before = points_of(ingested, "beta")
    (folders["acme"] / "handbook.md").write_text("# Holidays\n\nAcme staff get 32 days of paid holiday.\n")
    (folders["acme"] / "secret.md").unlink()

    report = ingestor.ingest_paths([folders["acme"]], tenant="acme", prune=True)

    assert (report.changed, report.pruned, report.new) == (1, 1, 0)
    assert {s.source for s in ingested.document_states(tenant="acme").values()} == {"docs/handbook.md"}
    assert points_of(ingested, "beta") == beta_before  # same points, same payloads
    assert ingestor.ingest_paths([folders["beta"]], tenant="beta").unchanged == 2


def test_two_tenants_may_each_have_a_source_of_the_same_name(
    ingested: QdrantStore, ingestor: Ingestor, folders: dict[str, Path], tmp_path: Path
) -> None:
    """Both folders are called ``docs``; within one tenant a second such folder is refused, across
    tenants it is none of the other's business. Moving one tenant's folder re-binds only its own."""
    with pytest.raises(SourceError, match="--source NAME"):
        ingestor.ingest_paths([folders["beta"]], tenant="acme")
    moved = tmp_path / "moved" / "docs"
    shutil.move(folders["acme"], moved)
    beta_before = points_of(ingested, "beta")

    report = ingestor.ingest_paths([moved], tenant="acme", adopt=True, prune=True)

    assert (report.adopted, report.unchanged, report.pruned, report.embeddings_computed) == (2, 2, 0, 0)
    assert {p["source_root"] for p in points_of(ingested, "acme").values()} == {str(moved.resolve())}
    assert points_of(ingested, "beta") == beta_before


def test_a_run_without_a_tenant_is_for_the_configured_one(
    store: QdrantStore, embedder, settings: Settings, folders: dict[str, Path]
) -> None:
    configured = msgspec.structs.replace(settings.ingest, tenant="acme")
    report = Ingestor(store, embedder, chunking=settings.chunking, ingest=configured).ingest_paths(
        [folders["acme"]]
    )

    assert report.tenant == "acme" and "documents of tenant acme" in report.summary_lines()
    assert {p["tenant"] for p in points_of(store, "acme").values()} == {"acme"}
    assert store.count() == len(points_of(store, "acme"))


@pytest.mark.parametrize("tenant", ["", "acme/docs", "two words", "acme\n"])
def test_a_name_no_tenant_can_have_is_refused_before_anything_is_written(
    ingestor: Ingestor, store: QdrantStore, folders: dict[str, Path], tenant: str
) -> None:
    with pytest.raises(TenantError):
        ingestor.ingest_paths([folders["acme"]], tenant=tenant)
    assert not store.exists()


def test_query_expansion_weighs_terms_by_the_documents_the_tenant_may_see(
    ingested: QdrantStore, embedder, settings
) -> None:
    acme, shared = (set(points_of(ingested, t)) for t in ("acme", SHARED_TENANT))
    dense_hits, _ = ingested.search(
        dense=embedder.embed([QUESTION])[0],
        sparse=None,
        limit=10,
        query_filter=filter_for(None, tenant="acme"),
        with_sparse=True,
    )
    retriever = Retriever(ingested, embedder, settings.retrieval)
    try:
        retriever.expand(LexicalEncoder().encode_query(QUESTION), dense_hits, tenant="acme")
        # Built by the expansion just now (and fresh, so this reads no store).
        frequencies = retriever.statistics.of("acme").get(ingested)
    finally:
        retriever.close()

    assert frequencies is not None and frequencies.documents == len(acme | shared)


def test_kb_ingest_ingests_for_the_tenant_given(
    folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_DATA_DIR", str(tmp_path / "cli-data"))

    result = CliRunner().invoke(cli, ["ingest", str(folders["acme"]), "--tenant", "acme", "--json"])

    assert result.exit_code == 0, result.output
    assert msgspec.json.decode(result.stdout)["tenant"] == "acme"


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--tenant", "two words"], "is not valid"),
        (["--tenant", SHARED_TENANT], "--shared"),
        (["--tenant", "acme", "--shared"], "not both"),
    ],
)
def test_kb_ingest_refuses_a_tenant_it_cannot_use_before_loading_anything(
    folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str], says: str
) -> None:
    monkeypatch.setenv("KB_DATA_DIR", str(tmp_path / "cli-data"))

    result = CliRunner().invoke(cli, ["ingest", str(folders["acme"]), *arguments])

    assert result.exit_code != 0 and says in result.output
    assert not (tmp_path / "cli-data").exists()  # not even the store was opened
