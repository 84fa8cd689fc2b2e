"""The answer cache on the real shared stores (a real redis-server, the local state file): an
answer cached through one store connection is served through another, an ingest's index bump
retires it, and a Redis that is down is a miss, never an error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from app.answers import IndexVersion, StateAnswerCache, bump_index_version
from app.cli import cli
from app.config import load_settings
from app.errors import StateUnavailableError
from app.pipeline import AnswerKey, CachedAnswer
from app.settings import Settings
from app.state import StateStore, open_state_store
from tests.fakes.anthropic_server import closed_port_url
from tests.fakes.state import Backend, state_backend
from tests.services.redis import RedisServer

__all__ = ["state_backend"]  # the fixture, found by name in this module

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KEY = AnswerKey(
    question="how do i rotate an api key?",
    filters=None,
    top_k=6,
    tenant="default",
    prompt="answer@v1",
    model="extractive-v1",
)
ANSWER = CachedAnswer(
    retrieval=msgspec.Raw(b'{"type":"retrieval","status":"ok","sources":[],"took_ms":1.0}'),
    answer="Rotate it [1].",
    citations=[1],
    input_tokens=10,
    output_tokens=3,
    model="extractive-v1",
)


@pytest.fixture
def settings(state_backend: Backend, tmp_path: Path) -> Settings:
    return load_settings(
        environ={"KB_DATA_DIR": str(tmp_path / "data"), **state_backend.environ},
        overrides={"state": {"timeout_s": 0.5, "connect_timeout_s": 0.25}},
    )


@pytest.fixture
async def stores(settings: Settings) -> AsyncIterator[tuple[StateStore, StateStore]]:
    """Two connections to the same shared state, as two instances (or two processes) hold them."""
    first, second = open_state_store(settings), open_state_store(settings)
    try:
        yield first, second
    finally:
        await first.aclose()
        await second.aclose()


def cache(state: StateStore) -> StateAnswerCache[AnswerKey, CachedAnswer]:
    return StateAnswerCache(state, collection="kb", ttl_s=60, answer_type=CachedAnswer)


async def test_an_answer_cached_through_one_connection_is_served_through_another(
    stores: tuple[StateStore, StateStore],
) -> None:
    one, other = cache(stores[0]), cache(stores[1])
    key = msgspec.structs.replace(KEY)
    assert await one.lookup(key) is None
    await one.store(key, ANSWER)

    assert await other.lookup(msgspec.structs.replace(KEY, question="How do I rotate an API key")) == ANSWER


async def test_the_index_bump_of_kb_ingest_retires_the_cached_answers_of_every_instance(
    settings: Settings, stores: tuple[StateStore, StateStore]
) -> None:
    one, other = cache(stores[0]), cache(stores[1])
    key = msgspec.structs.replace(KEY)
    assert await one.lookup(key) is None
    await one.store(key, ANSWER)

    # As `kb ingest` does after writing: its own connection, its own event loop.
    version = await asyncio.to_thread(bump_index_version, settings)

    assert version == 1
    assert await other.lookup(KEY) is None
    assert await one.lookup(KEY) is None


async def test_with_redis_down_a_lookup_is_a_miss_and_a_store_is_skipped_within_the_timeout(
    redis_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = load_settings(
        environ={"KB_DATA_DIR": str(tmp_path), "REDIS_URL": redis_url},
        overrides={"state": {"timeout_s": 0.5, "connect_timeout_s": 0.25}},
    )
    state = open_state_store(settings)
    answers = cache(state)
    try:
        redis_server.stop()
        try:
            key = msgspec.structs.replace(KEY)
            started = time.monotonic()
            assert await answers.lookup(key) is None
            await answers.store(key, ANSWER)
            assert time.monotonic() - started < 2.0
        finally:
            redis_server.start()
        # Back, without a restart of the app: cached again (the restarted server kept nothing).
        key = msgspec.structs.replace(KEY)
        assert await answers.lookup(key) is None
        await answers.store(key, ANSWER)
        assert await answers.lookup(KEY) == ANSWER
    finally:
        await state.aclose()


def test_bumping_the_index_version_with_redis_unreachable_raises_the_state_error(tmp_path: Path) -> None:
    port = closed_port_url().rsplit(":", 1)[1]
    settings = load_settings(
        environ={"KB_DATA_DIR": str(tmp_path), "REDIS_URL": f"redis://127.0.0.1:{port}/0"},
        overrides={"state": {"timeout_s": 0.5, "connect_timeout_s": 0.25}},
    )

    with pytest.raises(StateUnavailableError):
        bump_index_version(settings)


async def index_version(settings: Settings) -> int:
    state = open_state_store(settings)
    try:
        return await IndexVersion(state, settings.store.collection).current()
    finally:
        await state.aclose()


@pytest.mark.slow  # `kb ingest` loads the embedding model itself
def test_kb_ingest_bumps_the_index_version_when_it_writes_or_deletes_and_only_then(
    state_backend: Backend, tmp_path: Path
) -> None:
    environ = {"KB_DATA_DIR": str(tmp_path / "data"), **state_backend.environ}
    settings = load_settings(environ=environ)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEmployees get 25 vacation days a year.\n")
    (docs / "travel.md").write_text("# Travel\n\nBook trains for trips under four hours.\n")

    def ingest(*args: str) -> None:
        result = CliRunner().invoke(cli, ["ingest", "--quiet", *args, str(docs)], env=environ)
        assert result.exit_code == 0, result.output

    ingest()
    assert asyncio.run(index_version(settings)) == 1
    ingest()  # nothing changed: cached answers stay valid
    ingest("--dry-run")
    assert asyncio.run(index_version(settings)) == 1

    (docs / "leave.md").write_text("# Leave\n\nEmployees get 30 vacation days a year.\n")
    ingest()
    assert asyncio.run(index_version(settings)) == 2

    (docs / "travel.md").unlink()
    ingest("--prune")
    assert asyncio.run(index_version(settings)) == 3


@pytest.mark.slow  # `kb ingest` loads the embedding model itself
def test_kb_ingest_warns_when_it_cannot_bump_the_index_version(tmp_path: Path) -> None:
    port = closed_port_url().rsplit(":", 1)[1]
    environ = {
        "KB_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "KB_STATE__TIMEOUT_S": "0.5",
    }
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEmployees get 25 vacation days a year.\n")

    result = CliRunner().invoke(cli, ["ingest", "--quiet", str(docs)], env=environ)

    # The documents are written; only the cache could not be told.
    assert result.exit_code == 0, result.output
    assert "warning: cached answers may be served until they expire" in result.stderr
