"""Conversations in the state store: turns kept per caller, capped, expiring, never disclosed to
another caller; follow-ups made standalone by the configured condenser."""

from __future__ import annotations

import pytest

from app.answers import AnswerFeedback, NoCondenser, StoredConversations, TermsCondenser
from app.errors import NotFoundError, StateUnavailableError
from app.pipeline import Turn
from app.records import Caller
from app.state import MemoryStateStore
from tests.fakes.state import Clock, UnavailableState

ALICE = Caller(key_id="a1b2c3d4e5f6", name="alice", tenant="default", role="user")
BOB = Caller(key_id="f6e5d4c3b2a1", name="bob", tenant="default", role="user")
ANONYMOUS = Caller(key_id=None, name="anonymous", tenant="default", role="anonymous", client="10.0.0.7")
TTL_S = 600.0


def conversations(
    state: MemoryStateStore, clock: Clock, *, max_turns: int = 3, **kwargs: object
) -> StoredConversations:
    return StoredConversations(
        state,
        condenser=TermsCondenser(max_terms=8),
        max_turns=max_turns,
        ttl_s=TTL_S,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


def turn(number: int, *, question: str | None = None) -> Turn:
    asked = question or f"question {number}"
    return Turn(
        question=asked,
        standalone=asked,
        answer=f"answer {number} [1]",
        sources=[f"docs/{number}.md"],
        request_id=f"req{number}",
        prompt="answer@v1",
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> MemoryStateStore:
    return MemoryStateStore(clock=clock)


async def test_a_recorded_turn_is_the_history_of_its_conversation(
    state: MemoryStateStore, clock: Clock
) -> None:
    store = conversations(state, clock)

    await store.record("conv-0001", ALICE, turn(1))

    (kept,) = await store.turns("conv-0001", ALICE)
    assert (kept.question, kept.answer, kept.sources) == ("question 1", "answer 1 [1]", ["docs/1.md"])
    assert (kept.request_id, kept.prompt, kept.at) == ("req1", "answer@v1", clock.now)


async def test_only_the_newest_turns_are_kept(state: MemoryStateStore, clock: Clock) -> None:
    store = conversations(state, clock, max_turns=3)

    for number in range(1, 6):
        await store.record("conv-0001", ALICE, turn(number))

    assert [t.question for t in await store.turns("conv-0001", ALICE)] == [
        "question 3",
        "question 4",
        "question 5",
    ]


async def test_a_conversation_expires_its_ttl_after_the_last_turn(
    state: MemoryStateStore, clock: Clock
) -> None:
    store = conversations(state, clock)
    await store.record("conv-0001", ALICE, turn(1))
    clock.advance(TTL_S - 1)
    await store.record("conv-0001", ALICE, turn(2))  # restarts the expiry
    clock.advance(TTL_S - 1)

    assert len(await store.turns("conv-0001", ALICE)) == 2

    clock.advance(2)
    with pytest.raises(NotFoundError, match="expired"):
        await store.turns("conv-0001", ALICE)


async def test_another_callers_conversation_is_not_found(state: MemoryStateStore, clock: Clock) -> None:
    store = conversations(state, clock)
    await store.record("conv-0001", ALICE, turn(1))

    with pytest.raises(NotFoundError):
        await store.standalone("conv-0001", BOB, "and for contractors?")
    with pytest.raises(NotFoundError):
        await store.standalone("conv-0001", ANONYMOUS, "and for contractors?")
    # Bob answering in "his" conversation of that id starts his own, leaving Alice's alone.
    await store.record("conv-0001", BOB, turn(9))
    assert [t.question for t in await store.turns("conv-0001", ALICE)] == ["question 1"]


async def test_an_unknown_conversation_is_not_found(state: MemoryStateStore, clock: Clock) -> None:
    with pytest.raises(NotFoundError):
        await conversations(state, clock).standalone("never-started", ALICE, "and then?")


async def test_a_follow_up_is_searched_with_the_previous_questions_terms(
    state: MemoryStateStore, clock: Clock
) -> None:
    store = conversations(state, clock)
    await store.record("conv-0001", ALICE, turn(1, question="How many vacation days do employees get?"))

    standalone = await store.standalone("conv-0001", ALICE, "and for contractors?")

    assert standalone == "and for contractors? many vacation days employees get"


async def test_with_condensing_off_a_follow_up_is_searched_as_asked(
    state: MemoryStateStore, clock: Clock
) -> None:
    store = StoredConversations(state, condenser=NoCondenser(), max_turns=3, ttl_s=TTL_S, clock=clock)
    await store.record("conv-0001", ALICE, turn(1, question="How many vacation days do employees get?"))

    assert await store.standalone("conv-0001", ALICE, "and for contractors?") == "and for contractors?"


async def test_recording_a_turn_keeps_what_the_request_answered_for_feedback(
    state: MemoryStateStore, clock: Clock
) -> None:
    feedback = AnswerFeedback(state, window_s=60, retention_days=7, max_per_day=100, clock=clock)
    store = conversations(state, clock, feedback=feedback)

    await store.record("conv-0001", ALICE, turn(1))

    answered = await feedback.answered(ALICE, "req1")
    assert (answered.conversation_id, answered.answer, answered.prompt) == (
        "conv-0001",
        "answer 1 [1]",
        "answer@v1",
    )
    assert (answered.subject, answered.tenant) == (ALICE.subject, "default")
    with pytest.raises(NotFoundError):
        await feedback.answered(BOB, "req1")


async def test_a_state_store_fault_while_recording_is_logged_not_raised(clock: Clock) -> None:
    state = UnavailableState()
    feedback = AnswerFeedback(state, window_s=60, retention_days=7, max_per_day=100, clock=clock)
    store = StoredConversations(
        state, condenser=TermsCondenser(max_terms=8), max_turns=3, ttl_s=TTL_S, feedback=feedback, clock=clock
    )

    await store.record("conv-0001", ALICE, turn(1))  # the answer was streamed already: no raise

    assert state.calls == ["list_push", "set"]


async def test_a_state_store_fault_while_reading_the_history_is_raised(clock: Clock) -> None:
    store = StoredConversations(
        UnavailableState(), condenser=TermsCondenser(max_terms=8), max_turns=3, ttl_s=TTL_S, clock=clock
    )

    # prepare() refuses with 503 before streaming: a follow-up answered without its history
    # would answer another question.
    with pytest.raises(StateUnavailableError):
        await store.standalone("conv-0001", ALICE, "and then?")
