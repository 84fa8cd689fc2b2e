"""``kb ingest --shard K/N``: N runs split one corpus by document identity, with no coordinator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.config import load_settings
from app.settings import Settings
from app.store import DEFAULT_TENANT, QdrantStore, open_store
from ingest.items import Shard
from ingest.runner import Ingestor

pytestmark = pytest.mark.integration

SHARDS = 3


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Small documents, enough that every one of three shards gets some."""
    folder = tmp_path / "handbook"
    folder.mkdir()
    for n in range(12):
        (folder / f"topic-{n:02d}.md").write_text(
            f"# Topic {n}\n\nTopic {n} explains how team {n} deploys service number {n} to production.\n"
        )
    return folder


def open_other_store(tmp_path: Path, name: str) -> tuple[Settings, QdrantStore]:
    settings = load_settings(environ={"KB_DATA_DIR": str(tmp_path / name)})
    return settings, open_store(settings)


@pytest.fixture
def sharded_store(tmp_path: Path) -> Iterator[tuple[Settings, QdrantStore]]:
    settings, store = open_other_store(tmp_path, "sharded")
    yield settings, store
    store.close()


def points_of(store: QdrantStore) -> dict[str, dict[str, object]]:
    """Point id → payload, without the time each was written (the only field two runs differ in)."""
    points, _ = store.client.scroll(store.collection, limit=10_000, with_payload=True)
    return {str(p.id): {k: v for k, v in (p.payload or {}).items() if k != "ingested_at"} for p in points}


def owners(source: str) -> list[int]:
    return [k for k in range(SHARDS) if Shard(k, SHARDS).owns(source, tenant=DEFAULT_TENANT)]


def test_every_document_belongs_to_exactly_one_shard() -> None:
    sources = [f"handbook/topic-{n:02d}.md" for n in range(200)]
    assert all(len(owners(source)) == 1 for source in sources)
    per_shard = [sum(owners(s) == [k] for s in sources) for k in range(SHARDS)]
    assert all(count > 30 for count in per_shard), per_shard  # spread, not all in one


def test_the_split_depends_on_the_tenant_and_path_only() -> None:
    assert Shard(1, 3).owns("a/b.md", tenant="acme") == Shard(1, 3).owns("a/b.md", tenant="acme")
    split = {t: [Shard(0, 2).owns(f"a/{n}.md", tenant=t) for n in range(40)] for t in ("acme", "globex")}
    assert split["acme"] != split["globex"]


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0", "1", "a/b", "1/3/5", ""])
def test_a_malformed_or_out_of_range_shard_is_refused_before_anything_runs(text: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["ingest", "--shard", text, str(tmp_path)], env={"KB_DATA_DIR": str(tmp_path / "d")}
    )
    assert result.exit_code == 2, result.output
    assert "--shard" in result.output
    assert not (tmp_path / "d").exists()  # no store opened, no model loaded


def test_three_shards_one_after_another_store_exactly_what_one_run_stores(
    corpus: Path, store, embedder, settings, sharded_store
) -> None:
    whole = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
        [corpus]
    )
    shard_settings, shard_store = sharded_store
    ingestor = Ingestor(shard_store, embedder, chunking=shard_settings.chunking, ingest=shard_settings.ingest)

    reports = [ingestor.ingest_paths([corpus], shard=Shard(k, SHARDS)) for k in range(SHARDS)]

    assert all(report.new > 0 for report in reports)  # each shard had work of its own
    assert sum(report.new for report in reports) == whole.new == 12
    assert sum(report.files_seen for report in reports) == whole.files_seen
    assert points_of(shard_store) == points_of(store)


def test_prune_in_one_shard_leaves_the_documents_of_the_others(
    corpus: Path, store, embedder, settings
) -> None:
    ingestor = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest)
    for k in range(SHARDS):
        ingestor.ingest_paths([corpus], shard=Shard(k, SHARDS))
    gone_here = next(n for n in range(12) if owners(f"handbook/topic-{n:02d}.md") == [0])
    gone_elsewhere = next(n for n in range(12) if owners(f"handbook/topic-{n:02d}.md") != [0])
    (corpus / f"topic-{gone_here:02d}.md").unlink()
    (corpus / f"topic-{gone_elsewhere:02d}.md").unlink()

    report = ingestor.ingest_paths([corpus], prune=True, shard=Shard(0, SHARDS))

    assert report.pruned == 1
    assert report.new == report.changed == 0
    sources = {state.source for state in store.document_states(tenant=DEFAULT_TENANT).values()}
    assert f"handbook/topic-{gone_here:02d}.md" not in sources
    assert f"handbook/topic-{gone_elsewhere:02d}.md" in sources  # shard 1 or 2 decides about it
    assert len(sources) == 11
