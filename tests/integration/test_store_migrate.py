"""An earlier kb's store (qdrant-client local mode) is detected, and ``kb store migrate`` copies it.

Opening the Edge store while only the local-mode store holds the collection is refused with
what to do; the migration copies points as they are (no model is loaded), so the copy answers
exactly as the original did and records the same embedding model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from app.config import load_settings
from app.errors import ModelMismatchError, StoreLockedError
from app.settings import Settings
from app.store import DEFAULT_TENANT, LegacyStoreError, QdrantStore, edge_path, filter_for, open_store
from app.store.edge import EdgeClient
from app.store.opening import open_local_store
from tests.integration.test_store_contract import DIM, MODEL, chunk, terms, vectors

POINTS = 300


def kb(data: Path, *args: str) -> Result:
    env = {"KB_DATA_DIR": str(data), "QDRANT_URL": "", "REDIS_URL": ""}
    return CliRunner().invoke(cli, ["store", *args], env=env, catch_exceptions=False)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environ={"KB_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
def old_store(settings: Settings) -> Path:
    """The data folder of an earlier kb: its collection in local mode, nothing in Edge."""
    store = open_local_store(settings)
    store.ensure_collection(model_name=MODEL, dimension=DIM, lexical_version="t1")
    records = [chunk(f"docs/{i // 3}.md", i % 3, count=3) for i in range(POINTS)]
    store.upsert(records, vectors(POINTS, 5), terms(POINTS, 5), tenant=DEFAULT_TENANT)
    store.close()
    return settings.data_path


def answers(store: QdrantStore) -> list[list[str]]:
    out = []
    for query, probe in zip(vectors(10, 50), terms(10, 51), strict=True):
        dense, lexical = store.search(
            dense=query, sparse=probe, limit=10, query_filter=filter_for(None, tenant=DEFAULT_TENANT)
        )
        out.append([h.record.point_id for h in dense + lexical])
    return out


def test_an_old_store_is_detected_and_the_message_says_what_to_do(
    old_store: Path, settings: Settings
) -> None:
    with pytest.raises(LegacyStoreError) as raised:
        open_store(settings)
    message = raised.value.message
    assert "kb store migrate" in message and "kb ingest" in message and str(settings.qdrant_path) in message
    EdgeClient(edge_path(settings)).close()  # the refusal released the Edge store's lock


def test_migrate_copies_every_point_without_re_embedding_and_answers_the_same(
    old_store: Path, settings: Settings
) -> None:
    local = open_local_store(settings)
    before, states = answers(local), local.document_states(tenant=DEFAULT_TENANT)
    local.close()

    result = kb(old_store, "migrate")

    assert result.exit_code == 0 and f"copied {POINTS} points" in result.output
    edge = open_store(settings)
    try:
        assert edge.count() == POINTS
        assert answers(edge) == before
        assert edge.document_states(tenant=DEFAULT_TENANT) == states
        with pytest.raises(ModelMismatchError):
            edge.check_model(model_name="another-model", dimension=DIM)
    finally:
        edge.close()
    info = kb(old_store, "info", "--json")
    assert '"engine": "edge"' in info.output and f'"points": {POINTS}' in info.output


def test_migrate_refuses_to_overwrite_a_collection_edge_already_has(
    old_store: Path, settings: Settings
) -> None:
    assert kb(old_store, "migrate").exit_code == 0
    again = kb(old_store, "migrate")
    assert again.exit_code != 0 and "already exists" in again.output


def test_a_migration_left_unfinished_is_started_over(old_store: Path, settings: Settings) -> None:
    leftover = EdgeClient(edge_path(settings))
    QdrantStore(leftover, "kb.migrating").ensure_collection(model_name=MODEL, dimension=DIM)
    leftover.close()

    assert kb(old_store, "migrate").exit_code == 0
    edge = open_store(settings)
    assert edge.count() == POINTS and not edge.client.collection_exists("kb.migrating")
    edge.close()


def test_migrate_while_the_old_store_is_in_use_is_refused_at_once(
    old_store: Path, settings: Settings
) -> None:
    holder = open_local_store(settings)
    try:
        with pytest.raises(StoreLockedError):
            open_local_store(settings)
        result = kb(old_store, "migrate")
        assert result.exit_code != 0 and "in use by another process" in result.output
    finally:
        holder.close()


def test_with_nothing_to_migrate_the_command_says_so(tmp_path: Path) -> None:
    result = kb(tmp_path / "data", "migrate")
    assert result.exit_code != 0 and "no collection 'kb'" in result.output
