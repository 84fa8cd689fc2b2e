"""Two instances share label positions through a real state store: a real ``redis-server``, or the
local state file opened twice (as two processes on one machine would). A label moved through one
is followed by the other within ``prompts.refresh_s``; a Redis that goes away leaves the last
positions answering, and one that comes back is followed again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest
import structlog.testing

from app.errors import StateUnavailableError
from app.prompting import PromptLabels, PromptRegistry, PromptSelection
from app.records import Caller
from app.resources import prompts_dir
from app.settings import PromptSettings, StateSettings
from app.state import FileStateStore, RedisStateStore, StateStore
from tests.services.redis import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REFRESH_S = 0.4
ALICE = Caller(key_id="a1b2c3d4e5f6", name="alice", tenant="sales", role="user")
PROMPTS = PromptSettings(refresh_s=REFRESH_S)
STATE = StateSettings(timeout_s=0.5, connect_timeout_s=0.2)

OpenStore = Callable[[], StateStore]


@pytest.fixture(scope="module")
def registry() -> PromptRegistry:
    return PromptRegistry(prompts_dir(environ={}))


@pytest.fixture(params=["file", "redis"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Opens one more store on the same shared state (one per instance); all closed afterwards."""
    opened: list[StateStore] = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")

        def make() -> StateStore:
            opened.append(RedisStateStore.from_url(url, STATE))
            return opened[-1]
    else:

        def make() -> StateStore:
            opened.append(FileStateStore.open(tmp_path / "state.sqlite3", STATE))
            return opened[-1]

    yield make
    for store in opened:
        await store.aclose()


def instance(store: StateStore, registry: PromptRegistry) -> PromptSelection:
    return PromptSelection(registry, PromptLabels(store, registry, PROMPTS), PROMPTS)


async def version_within(selection: PromptSelection, wanted: str, limit_s: float) -> float:
    """Seconds until ``selection`` answers with ``wanted`` (fails past ``limit_s``)."""
    started = time.monotonic()
    while (await selection.answer(ALICE)).version != wanted:
        assert time.monotonic() - started < limit_s, f"not {wanted} after {limit_s}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_label_moved_through_one_instance_is_followed_by_the_other(
    open_store: OpenStore, registry: PromptRegistry
) -> None:
    one, two = instance(open_store(), registry), instance(open_store(), registry)
    assert (await two.answer(ALICE)).ref == "answer@v1"

    moved = await one.move("answer", "production", "v2", by="ops")
    assert moved.changed and (await one.answer(ALICE)).ref == "answer@v2"
    assert await version_within(two, "v2", REFRESH_S + 0.5) <= REFRESH_S + 0.5

    await two.rollback("answer", "production", by="ops")  # rolled back through the other one
    assert (await two.answer(ALICE)).ref == "answer@v1"
    await version_within(one, "v1", REFRESH_S + 0.5)
    history = await one.labels.history("answer")
    assert [(m.action, m.version) for m in history] == [("promote", "v2"), ("rollback", "v1")]


async def test_a_new_instance_starts_where_the_label_was_moved(
    open_store: OpenStore, registry: PromptRegistry
) -> None:
    await instance(open_store(), registry).move("answer", "production", "v2", by="ops")
    late = instance(open_store(), registry)
    chosen = await late.answer(ALICE)
    assert (chosen.ref, chosen.reason) == ("answer@v2", "label:production")


async def test_while_redis_is_down_the_last_positions_answer_and_moves_are_refused(
    redis_server: RedisServer, redis_url: str, registry: PromptRegistry
) -> None:
    store = RedisStateStore.from_url(redis_url, STATE)
    try:
        selection = instance(store, registry)
        await selection.move("answer", "production", "v2", by="ops")
        assert (await selection.answer(ALICE)).version == "v2"

        redis_server.stop()
        await asyncio.sleep(REFRESH_S + 0.1)
        with structlog.testing.capture_logs() as logs:
            started = time.monotonic()
            assert (await selection.answer(ALICE)).version == "v2"  # last known, not the config's v1
            assert time.monotonic() - started < 2 * STATE.timeout_s + 0.5  # bounded by the store
            assert (await selection.answer(ALICE)).version == "v2"
        unavailable = [entry for entry in logs if entry["event"] == "prompt_labels_unavailable"]
        assert len(unavailable) == 1 and unavailable[0]["serving"] == "answer@v2"
        with pytest.raises(StateUnavailableError):
            await selection.move("answer", "production", "v1", by="ops")

        redis_server.start()
        other = RedisStateStore.from_url(redis_url, STATE)
        try:
            await PromptLabels(other, registry, PROMPTS).move("answer", "production", "v1", by="ops")
        finally:
            await other.aclose()
        await version_within(selection, "v1", REFRESH_S + 3.0)  # reconnected, following again
    finally:
        redis_server.start()
        await store.aclose()


async def test_positions_written_by_an_older_instance_format_are_not_followed(
    open_store: OpenStore, registry: PromptRegistry
) -> None:
    store = open_store()
    await store.hash_set("prompts:labels:answer", "production", msgspec.json.encode({"v": 2}))
    assert (await instance(store, registry).answer(ALICE)).version == "v1"
