"""Answer feedback: only the asker rates an answer, within its window; ratings are kept for the
retention, the latest rating of an answer wins, and the export is a QA set ``kb eval`` reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.answers import MAX_RATINGS_PER_ANSWER, AnswerFeedback, AnswerRecord
from app.cli.feedback import NEEDS_ANSWERS, write_qa_set
from app.errors import InvalidRequestError, NotFoundError
from app.evaluation.datasets import QA_QUESTIONS, load_qa
from app.records import Caller
from app.state import MemoryStateStore
from tests.fakes.state import Clock

ALICE = Caller(key_id="a1b2c3d4e5f6", name="alice", tenant="default", role="user")
BOB = Caller(key_id="f6e5d4c3b2a1", name="bob", tenant="legal", role="user")
WINDOW_S = 3600.0
DAY_S = 86_400


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def feedback(clock: Clock) -> AnswerFeedback:
    return AnswerFeedback(
        MemoryStateStore(clock=clock), window_s=WINDOW_S, retention_days=30, max_per_day=100, clock=clock
    )


async def answered(
    feedback: AnswerFeedback, caller: Caller, request_id: str, clock: Clock, **fields: str
) -> None:
    await feedback.remember(
        AnswerRecord(
            request_id=request_id,
            conversation_id="conv-0001",
            tenant=caller.tenant,
            subject=caller.subject,
            question=fields.get("question", "and for contractors?"),
            standalone=fields.get("standalone", "and for contractors? vacation days"),
            answer=fields.get("answer", "Contractors get no paid vacation [1]."),
            sources=["hr/leave.md"],
            prompt="answer@v1",
            answered_at=clock.now,
        )
    )


async def test_the_asker_rates_an_answer_and_the_rating_keeps_what_was_answered(
    feedback: AnswerFeedback, clock: Clock
) -> None:
    await answered(feedback, ALICE, "req-1", clock)

    record = await feedback.rate(ALICE, "req-1", "down", "Contractors get 10 days.")

    assert (record.rating, record.comment) == ("down", "Contractors get 10 days.")
    assert (record.answer.question, record.answer.answer, record.answer.sources, record.answer.prompt) == (
        "and for contractors?",
        "Contractors get no paid vacation [1].",
        ["hr/leave.md"],
        "answer@v1",
    )
    assert await feedback.ratings() == [record]


async def test_another_caller_cannot_rate_an_answer(feedback: AnswerFeedback, clock: Clock) -> None:
    await answered(feedback, ALICE, "req-1", clock)

    with pytest.raises(NotFoundError):
        await feedback.rate(BOB, "req-1", "down", None)
    assert await feedback.ratings() == []


async def test_an_unknown_or_too_old_answer_cannot_be_rated(feedback: AnswerFeedback, clock: Clock) -> None:
    await answered(feedback, ALICE, "req-1", clock)
    with pytest.raises(NotFoundError):
        await feedback.rate(ALICE, "req-never", "up", None)

    clock.advance(WINDOW_S + 1)
    with pytest.raises(NotFoundError):
        await feedback.rate(ALICE, "req-1", "up", None)


async def test_rating_again_replaces_the_earlier_rating_a_few_times_only(
    feedback: AnswerFeedback, clock: Clock
) -> None:
    await answered(feedback, ALICE, "req-1", clock)
    for number in range(MAX_RATINGS_PER_ANSWER):
        clock.advance(1)
        await feedback.rate(ALICE, "req-1", "up" if number % 2 else "down", f"take {number}")

    (latest,) = await feedback.ratings()
    assert latest.comment == f"take {MAX_RATINGS_PER_ANSWER - 1}"
    with pytest.raises(InvalidRequestError, match="latest rating stands"):
        await feedback.rate(ALICE, "req-1", "down", "once more")


async def test_ratings_are_filtered_by_rating_and_tenant(feedback: AnswerFeedback, clock: Clock) -> None:
    await answered(feedback, ALICE, "req-1", clock)
    await answered(feedback, BOB, "req-2", clock)
    await feedback.rate(ALICE, "req-1", "up", None)
    await feedback.rate(BOB, "req-2", "down", None)

    assert [r.answer.request_id for r in await feedback.ratings(rating="down")] == ["req-2"]
    assert [r.answer.request_id for r in await feedback.ratings(tenant="default")] == ["req-1"]


async def test_ratings_of_earlier_days_are_listed_until_the_retention_ends(
    feedback: AnswerFeedback, clock: Clock
) -> None:
    await answered(feedback, ALICE, "req-old", clock)
    await feedback.rate(ALICE, "req-old", "down", None)
    clock.advance(10 * DAY_S)
    await answered(feedback, ALICE, "req-new", clock)
    await feedback.rate(ALICE, "req-new", "up", None)

    assert [r.answer.request_id for r in await feedback.ratings()] == ["req-old", "req-new"]

    clock.advance(25 * DAY_S)  # the first day is now 35 days back: past the 30 days kept
    assert [r.answer.request_id for r in await feedback.ratings()] == ["req-new"]


async def test_the_export_is_a_qa_set_that_kb_evals_reader_loads(
    feedback: AnswerFeedback, clock: Clock, tmp_path: Path
) -> None:
    await answered(
        feedback, ALICE, "req-up", clock, answer="Employees get 25 days [1].", standalone="vacation days"
    )
    await answered(feedback, ALICE, "req-down", clock)
    await answered(
        feedback, BOB, "req-up", clock, answer="Legal gets 30 days [1]."
    )  # the same id, another key
    await answered(feedback, ALICE, "req-silent", clock)
    await feedback.rate(ALICE, "req-up", "up", None)
    await feedback.rate(ALICE, "req-down", "down", "Contractors get 10 days.")
    await feedback.rate(BOB, "req-up", "up", None)
    await feedback.rate(ALICE, "req-silent", "down", None)

    summary = write_qa_set(await feedback.ratings(), tmp_path / "set")

    items = load_qa(tmp_path / "set" / QA_QUESTIONS)
    assert [(item.id, item.question, item.answers) for item in items] == [
        ("req-up", "vacation days", ["Employees get 25 days [1]."]),
        ("req-down", "and for contractors? vacation days", ["Contractors get 10 days."]),
        ("req-up-2", "and for contractors? vacation days", ["Legal gets 30 days [1]."]),
    ]
    assert (summary.questions, summary.needs_answers) == (3, 1)
    needs = (tmp_path / "set" / NEEDS_ANSWERS).read_text(encoding="utf-8").splitlines()
    assert len(needs) == 1 and '"id":"req-silent"' in needs[0] and '"answers":[]' in needs[0]


async def test_the_regression_set_is_the_down_voted_answers(
    feedback: AnswerFeedback, clock: Clock, tmp_path: Path
) -> None:
    await answered(feedback, ALICE, "req-up", clock)
    await answered(feedback, ALICE, "req-down", clock)
    await feedback.rate(ALICE, "req-up", "up", None)
    await feedback.rate(ALICE, "req-down", "down", "Ten days.")

    write_qa_set(await feedback.ratings(rating="down"), tmp_path / "regressions")

    assert [item.id for item in load_qa(tmp_path / "regressions" / QA_QUESTIONS)] == ["req-down"]
    assert not (tmp_path / "regressions" / NEEDS_ANSWERS).exists()
