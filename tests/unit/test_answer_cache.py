"""The answer cache: what makes two questions one entry, what keeps them apart, and that no
entry outlives its TTL, an ingest (the index version) or a fault of the state store."""

from __future__ import annotations

import msgspec
import pytest

from app.answers import IndexVersion, StateAnswerCache, cache_digest, normalise_question
from app.pipeline import AnswerKey, CachedAnswer
from app.retrieval import RetrievalFilters
from app.state import MemoryStateStore
from tests.fakes.state import Clock, UnavailableState

TTL_S = 300.0


def key(question: str = "How do I rotate an API key?", **changes: object) -> AnswerKey:
    fields: dict[str, object] = {
        "question": question,
        "filters": None,
        "top_k": 6,
        "tenant": "default",
        "prompt": "answer@v1",
        "model": "extractive-v1",
        **changes,
    }
    return AnswerKey(**fields)  # type: ignore[arg-type]


ANSWER = CachedAnswer(
    retrieval=msgspec.Raw(b'{"type":"retrieval","status":"ok","sources":[],"took_ms":1.0}'),
    answer="Rotate it with `kb keys rotate` [1].",
    citations=[1],
    input_tokens=100,
    output_tokens=9,
    model="extractive-v1",
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> MemoryStateStore:
    return MemoryStateStore(clock=clock)


def cache(state: object) -> StateAnswerCache[AnswerKey, CachedAnswer]:
    return StateAnswerCache(state, collection="kb", ttl_s=TTL_S, answer_type=CachedAnswer)  # type: ignore[arg-type]


async def stored(cache: StateAnswerCache[AnswerKey, CachedAnswer], answer_key: AnswerKey) -> None:
    """As the pipeline does: a lookup (a miss), then the answer stored under the same key."""
    assert await cache.lookup(answer_key) is None
    await cache.store(answer_key, ANSWER)


# -- normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "how do i rotate an api key",
        "  How do I   rotate an API key ?  ",
        "HOW DO I ROTATE AN API KEY?!",
        "¿How do I rotate an API key?",
    ],
)
def test_case_spacing_and_surrounding_punctuation_do_not_make_another_question(variant: str) -> None:
    assert normalise_question(variant) == normalise_question("How do I rotate an API key?")


def test_punctuation_inside_a_question_is_kept() -> None:
    assert normalise_question("What is C++?") != normalise_question("What is C?")
    assert normalise_question("Changes in v1.2?") != normalise_question("Changes in v12?")


def test_compatibility_forms_are_one_question() -> None:
    assert normalise_question("Ｗhat is ＫＢ？") == normalise_question("what is kb")


def test_the_order_of_document_filters_and_an_empty_filter_do_not_make_another_entry() -> None:
    both = RetrievalFilters(sources=["docs/a.md", "docs/b.md"])
    reversed_ = RetrievalFilters(sources=["docs/b.md", "docs/a.md", "docs/a.md"])

    assert cache_digest(key(filters=both)) == cache_digest(key(filters=reversed_))
    assert cache_digest(key(filters=RetrievalFilters())) == cache_digest(key(filters=None))


@pytest.mark.parametrize(
    "change",
    [
        {"question": "How do I revoke an API key?"},
        {"filters": RetrievalFilters(source_prefix="docs")},
        {"top_k": 3},
        {"tenant": "legal"},
        {"prompt": "answer@v2"},
        {"model": "claude-sonnet-4-5"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_everything_an_answer_depends_on_makes_another_entry(change: dict[str, object]) -> None:
    assert cache_digest(key(**change)) != cache_digest(key())


# -- storing and serving ------------------------------------------------------------------------


async def test_a_stored_answer_is_served_for_the_same_question_asked_differently(
    state: MemoryStateStore,
) -> None:
    answers = cache(state)
    await stored(answers, key())

    assert await answers.lookup(key("  how do I rotate an API key")) == ANSWER


async def test_an_answer_is_not_served_after_its_ttl(state: MemoryStateStore, clock: Clock) -> None:
    answers = cache(state)
    await stored(answers, key())
    clock.advance(TTL_S + 1)

    assert await answers.lookup(key()) is None


async def test_bumping_the_index_version_retires_every_cached_answer(state: MemoryStateStore) -> None:
    answers = cache(state)
    await stored(answers, key())

    assert await IndexVersion(state, "kb").bump() == 1

    assert await answers.lookup(key()) is None


async def test_another_collections_ingest_does_not_retire_this_ones_answers(state: MemoryStateStore) -> None:
    answers = cache(state)
    await stored(answers, key())

    await IndexVersion(state, "other").bump()

    assert await answers.lookup(key()) == ANSWER


async def test_an_answer_made_while_an_ingest_finished_is_never_served(state: MemoryStateStore) -> None:
    answers = cache(state)
    answer_key = key()
    assert await answers.lookup(answer_key) is None  # retrieval reads the old documents …
    await IndexVersion(state, "kb").bump()  # … an ingest replaces them and bumps …
    await answers.store(answer_key, ANSWER)  # … and the old answer is stored afterwards

    assert await answers.lookup(key()) is None


async def test_an_answer_is_only_stored_after_a_lookup_of_the_same_key(state: MemoryStateStore) -> None:
    answers = cache(state)
    await answers.store(key(), ANSWER)  # no lookup saw an index version for it

    assert await answers.lookup(key()) is None


async def test_a_state_store_fault_is_a_miss_and_a_skipped_store_never_an_error() -> None:
    down = UnavailableState()
    answers = cache(down)
    answer_key = key()

    assert await answers.lookup(answer_key) is None
    await answers.store(answer_key, ANSWER)

    assert down.calls == ["incr"]  # the lookup failed; nothing was stored without a version


async def test_an_unreadable_entry_is_a_miss_and_is_replaced(state: MemoryStateStore) -> None:
    answers = cache(state)
    await stored(answers, key())
    # An entry of an incompatible version, under the key this one reads (index version 0).
    await state.set(f"answer-cache:kb:0:{cache_digest(key())}", b'{"not": "an answer"}')

    await stored(answers, key())  # a miss, then stored again

    assert await answers.lookup(key()) == ANSWER
