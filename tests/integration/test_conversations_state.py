"""Conversations on the real shared stores (a real redis-server, the local state file): a
conversation recorded through one connection continues through another, expires by the store's
own clock, stays its owner's, and a Redis that is down refuses a follow-up rather than answer it
without its history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.answers import StoredConversations, TermsCondenser
from app.config import load_settings
from app.errors import NotFoundError, StateUnavailableError
from app.pipeline import Turn
from app.records import Caller
from app.settings import Settings
from app.state import StateStore, open_state_store
from tests.fakes.state import Backend, state_backend
from tests.services.redis import RedisServer

__all__ = ["state_backend"]  # the fixture, found by name in this module

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ALICE = Caller(key_id="a1b2c3d4e5f6", name="alice", tenant="default", role="user")
BOB = Caller(key_id="f6e5d4c3b2a1", name="bob", tenant="default", role="user")
FIRST = Turn(
    question="How many vacation days do employees get?",
    standalone="How many vacation days do employees get?",
    answer="25 [1].",
    sources=["hr/leave.md"],
    request_id="req-1",
    prompt="answer@v1",
)


def settings_for(tmp_path: Path, environ: dict[str, str]) -> Settings:
    return load_settings(
        environ={"KB_DATA_DIR": str(tmp_path / "data"), **environ},
        overrides={"state": {"timeout_s": 0.5, "connect_timeout_s": 0.25}},
    )


def conversations(state: StateStore, *, ttl_s: float = 60) -> StoredConversations:
    return StoredConversations(state, condenser=TermsCondenser(max_terms=8), max_turns=2, ttl_s=ttl_s)


@pytest.fixture
async def stores(state_backend: Backend, tmp_path: Path) -> AsyncIterator[tuple[StateStore, StateStore]]:
    settings = settings_for(tmp_path, state_backend.environ)
    first, second = open_state_store(settings), open_state_store(settings)
    try:
        yield first, second
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_conversation_recorded_through_one_connection_continues_through_another(
    stores: tuple[StateStore, StateStore],
) -> None:
    await conversations(stores[0]).record("conv-0001", ALICE, FIRST)

    other = conversations(stores[1])
    standalone = await other.standalone("conv-0001", ALICE, "and for contractors?")

    assert standalone == "and for contractors? many vacation days employees get"
    with pytest.raises(NotFoundError):
        await other.standalone("conv-0001", BOB, "and for contractors?")


async def test_the_store_caps_and_expires_a_conversation(stores: tuple[StateStore, StateStore]) -> None:
    store = conversations(stores[0], ttl_s=1.0)
    for number in range(3):
        await store.record(
            "conv-0001", ALICE, Turn(question=f"q{number}", standalone=f"q{number}", answer="a", sources=[])
        )

    assert [turn.question for turn in await conversations(stores[1]).turns("conv-0001", ALICE)] == [
        "q1",
        "q2",
    ]

    await asyncio.sleep(1.3)
    with pytest.raises(NotFoundError):
        await conversations(stores[1]).turns("conv-0001", ALICE)


async def test_with_redis_down_a_follow_up_is_refused_and_an_answer_is_still_recorded_quietly(
    redis_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    state = open_state_store(settings_for(tmp_path, {"REDIS_URL": redis_url}))
    store = conversations(state)
    try:
        await store.record("conv-0001", ALICE, FIRST)
        redis_server.stop()
        try:
            with pytest.raises(StateUnavailableError):
                await store.standalone("conv-0001", ALICE, "and for contractors?")
            await store.record("conv-0001", ALICE, FIRST)  # logged, not raised
        finally:
            redis_server.start()
    finally:
        await state.aclose()
