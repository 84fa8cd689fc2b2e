"""Answer feedback: what each request answered, and the ratings of those answers.

Two kinds of state, both in the state store:

* ``answer:<subject>:<request_id>`` - what one request answered (question, the standalone
  question searched, answer, cited sources, prompt version), kept ``answers.feedback_window_s``:
  the time within which it can be rated. The key holds the asker's subject, so another caller
  (or a client that reuses someone's ``X-Request-ID``) never reads or replaces it.
* ``feedback:<YYYY-MM-DD>`` - the day's ratings (UTC), a capped list expiring
  ``answers.feedback_retention_days`` after the day's last rating. ``kb feedback export`` reads
  the days in retention; rating an answer again supersedes the earlier rating.

An answer can be rated a few times (a changed mind), not without end: otherwise one caller could
push the day's other ratings out of its capped list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import msgspec
import structlog

from app.errors import InvalidRequestError, NotFoundError, StateUnavailableError
from app.records import Caller
from app.state import StateStore

__all__ = ["MAX_RATINGS_PER_ANSWER", "AnswerFeedback", "AnswerRecord", "FeedbackRecord", "Rating"]

log = structlog.get_logger("kb.answers.feedback")

Rating = Literal["up", "down"]

MAX_RATINGS_PER_ANSWER = 5
_DAY_S = 86_400


class AnswerRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What one request answered, as it can be rated."""

    request_id: str
    conversation_id: str
    tenant: str
    subject: str
    """Who asked (``Caller.subject``)."""
    question: str
    """As asked."""
    standalone: str
    """What was searched: the follow-up made standalone, or the question."""
    answer: str
    sources: list[str]
    """Paths of the sources the answer was given with."""
    prompt: str
    """``name@version`` of the prompt that answered."""
    answered_at: float
    """Unix time."""


class FeedbackRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One rating of one answer."""

    rating: Rating
    comment: str | None
    rated_at: float
    """Unix time."""
    answer: AnswerRecord


_decode_answer = msgspec.json.Decoder(AnswerRecord).decode
_decode_feedback = msgspec.json.Decoder(FeedbackRecord).decode


def _answer_key(subject: str, request_id: str) -> str:
    return f"answer:{subject}:{request_id}"


def _day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


class AnswerFeedback:
    """Remembers what each request answered; stores and lists ratings."""

    def __init__(
        self,
        state: StateStore,
        *,
        window_s: float,
        retention_days: int,
        max_per_day: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.window_s = window_s
        self.retention_days = retention_days
        self.max_per_day = max_per_day
        self.clock = clock

    async def remember(self, record: AnswerRecord) -> None:
        """Keep what a request answered for rating. A store fault is logged, never raised: the
        answer was streamed already, only its rating becomes impossible (404)."""
        try:
            await self.state.set(
                _answer_key(record.subject, record.request_id),
                msgspec.json.encode(record),
                ttl_s=self.window_s,
            )
        except StateUnavailableError as exc:
            log.warning("answer_not_recorded", request_id=record.request_id, error=exc.message)

    async def answered(self, caller: Caller, request_id: str) -> AnswerRecord:
        """What ``caller``'s request ``request_id`` answered; ``NotFoundError`` when there is no
        such request of this caller within the window."""
        raw = await self.state.get(_answer_key(caller.subject, request_id))
        if raw is not None:
            try:
                return _decode_answer(raw)
            except msgspec.DecodeError:
                log.warning("answer_record_unreadable", request_id=request_id)
        raise NotFoundError(
            f"no answer {request_id!r} to rate: it was not asked with this key, or is older than "
            f"{self.window_s:g} s"
        )

    async def rate(
        self, caller: Caller, request_id: str, rating: Rating, comment: str | None
    ) -> FeedbackRecord:
        """Store a rating of ``caller``'s answer ``request_id`` (raises ``NotFoundError``,
        ``InvalidRequestError`` past ``MAX_RATINGS_PER_ANSWER``, ``StateUnavailableError``)."""
        answer = await self.answered(caller, request_id)
        times = await self.state.incr(f"feedback-count:{caller.subject}:{request_id}", ttl_s=self.window_s)
        if times > MAX_RATINGS_PER_ANSWER:
            raise InvalidRequestError(
                f"answer {request_id!r} has been rated {MAX_RATINGS_PER_ANSWER} times; the latest rating stands"
            )
        now = self.clock()
        record = FeedbackRecord(rating=rating, comment=comment or None, rated_at=now, answer=answer)
        await self.state.list_push(
            f"feedback:{_day(now)}",
            msgspec.json.encode(record),
            max_len=self.max_per_day,
            ttl_s=(self.retention_days + 1) * _DAY_S,
        )
        log.info("answer_rated", request_id=request_id, rating=rating, prompt=answer.prompt)
        return record

    async def ratings(
        self, *, rating: Rating | None = None, tenant: str | None = None
    ) -> list[FeedbackRecord]:
        """The latest rating of each rated answer within retention, oldest first."""
        now = self.clock()
        latest: dict[tuple[str, str], FeedbackRecord] = {}
        for days_ago in range(self.retention_days, -1, -1):
            day = _day(now - days_ago * _DAY_S)
            for raw in await self.state.list_range(f"feedback:{day}", last=self.max_per_day):
                try:
                    record = _decode_feedback(raw)
                except msgspec.DecodeError:
                    log.warning("feedback_unreadable", day=day)
                    continue
                asked = (record.answer.subject, record.answer.request_id)
                known = latest.get(asked)
                if known is None or known.rated_at <= record.rated_at:
                    latest[asked] = record
        kept = sorted(latest.values(), key=lambda r: r.rated_at)
        return [
            r
            for r in kept
            if (rating is None or r.rating == rating) and (tenant is None or r.answer.tenant == tenant)
        ]
