"""``kb feedback export``: rated answers as a QA set that ``kb eval`` reads.

The set is ``OUT/questions.jsonl`` in the QA format of ``app.evaluation.datasets`` (``id``,
``question``, ``answers``), one line per rated answer, with what the rating was about beside it
(the answer given, its sources, the prompt version, the comment). The question is the standalone
one that was searched, since ``kb eval`` asks every question on its own. The expected answers:

* an up-voted answer is its own expected answer: a new prompt version or model is checked to
  still say what users approved of;
* a down-voted answer is the regression set (``--rating down``): its comment, which the rating
  form asks to say what the answer should have said, is its expected answer. A down vote without
  a comment has no expected answer yet, so it goes to ``OUT/needs_answers.jsonl`` (same lines,
  ``answers`` empty): write one in, move the line to ``questions.jsonl``.

Run ``kb eval OUT --docs FOLDER`` with the documents the service answers from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import msgspec

from app.answers import AnswerFeedback, FeedbackRecord, Rating
from app.config import load_settings
from app.errors import KBError
from app.evaluation.datasets import QA_QUESTIONS
from app.settings import Settings
from app.state import open_state_store

__all__ = ["NEEDS_ANSWERS", "ExportSummary", "ExportedItem", "feedback_command", "write_qa_set"]

NEEDS_ANSWERS = "needs_answers.jsonl"


class ExportedItem(msgspec.Struct, kw_only=True):
    """One line: a QA item (``id``, ``question``, ``answers``) and the rating it comes from."""

    id: str
    question: str
    answers: list[str]
    rating: Rating
    comment: str | None
    asked: str
    """The question as asked (a follow-up, before it was made standalone)."""
    given_answer: str
    sources: list[str]
    prompt_version: str
    tenant: str
    rated_at: str
    """ISO 8601, UTC."""


@dataclass(frozen=True, slots=True)
class ExportSummary:
    questions: int
    needs_answers: int


def _item(record: FeedbackRecord, item_id: str) -> ExportedItem:
    answer = record.answer
    if record.rating == "up":
        expected = [answer.answer] if answer.answer.strip() else []
    else:
        expected = [record.comment] if record.comment and record.comment.strip() else []
    return ExportedItem(
        id=item_id,
        question=answer.standalone or answer.question,
        answers=expected,
        rating=record.rating,
        comment=record.comment,
        asked=answer.question,
        given_answer=answer.answer,
        sources=answer.sources,
        prompt_version=answer.prompt,
        tenant=answer.tenant,
        rated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.rated_at)),
    )


def write_qa_set(records: Sequence[FeedbackRecord], out: Path) -> ExportSummary:
    """Write ``records`` to ``out/questions.jsonl`` (and ``out/needs_answers.jsonl``), replacing
    earlier exports there."""
    out.mkdir(parents=True, exist_ok=True)
    ready: list[bytes] = []
    pending: list[bytes] = []
    seen: set[str] = set()
    for record in records:
        # Two callers may have sent the same X-Request-ID: ids of a QA set are unique.
        item_id, n = record.answer.request_id, 1
        while item_id in seen:
            n += 1
            item_id = f"{record.answer.request_id}-{n}"
        seen.add(item_id)
        item = _item(record, item_id)
        (ready if item.answers else pending).append(msgspec.json.encode(item) + b"\n")
    (out / QA_QUESTIONS).write_bytes(b"".join(ready))
    needs = out / NEEDS_ANSWERS
    if pending:
        needs.write_bytes(b"".join(pending))
    else:
        needs.unlink(missing_ok=True)
    return ExportSummary(questions=len(ready), needs_answers=len(pending))


async def _ratings(settings: Settings, rating: Rating | None, tenant: str | None) -> list[FeedbackRecord]:
    state = open_state_store(settings)
    try:
        answers = settings.answers
        feedback = AnswerFeedback(
            state,
            window_s=answers.feedback_window_s,
            retention_days=answers.feedback_retention_days,
            max_per_day=answers.feedback_max_per_day,
        )
        return await feedback.ratings(rating=rating, tenant=tenant)
    finally:
        await state.aclose()


@click.group("feedback")
def feedback_command() -> None:
    """Ratings of answers (POST /ask/{request_id}/feedback)."""


@feedback_command.command("export")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--rating",
    type=click.Choice(["up", "down"]),
    help="Only answers rated so (down: the regression set). Default: both.",
)
@click.option("--tenant", help="Only answers given to this tenant.")
def export_command(out: Path, rating: Rating | None, tenant: str | None) -> None:
    """Write the rated answers to OUT as a QA set for `kb eval OUT --docs FOLDER`."""
    try:
        records = asyncio.run(_ratings(load_settings(), rating, tenant))
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    summary = write_qa_set(records, out)
    click.echo(f"wrote {summary.questions} question(s) to {out / QA_QUESTIONS}")
    if summary.needs_answers:
        click.echo(
            f"{summary.needs_answers} down-voted answer(s) without a comment are in {out / NEEDS_ANSWERS}: "
            f"write the expected answer into each, then move it to {QA_QUESTIONS}"
        )
