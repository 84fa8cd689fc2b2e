"""Conversations in the state store: the last turns of each, owned by the caller that started it.

A conversation is a capped list in the state store (``StateStore.list_push``: the newest
``answers.conversation_turns`` turns, expiring ``answers.conversation_ttl_s`` after the last
one), never process memory, so a follow-up may reach any instance. Its key holds the owner's
subject (``Caller.subject``: the API key, or the address of an anonymous caller): another caller
looks up another key, finds nothing and gets the same 404 as for a conversation that never
existed, so neither its existence nor its content is disclosed. Ids are made by the service
(``done.conversation_id``); a client cannot start a conversation under an id of its choosing,
since ``standalone`` refuses an id it does not find.

``record`` is called once per answered request (a first question starts a conversation); it
also hands the turn to ``AnswerFeedback``, which keeps what the request answered for rating.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import msgspec
import structlog

from app.answers.condense import Condenser
from app.answers.feedback import AnswerFeedback, AnswerRecord
from app.errors import NotFoundError, StateUnavailableError
from app.records import Caller
from app.state import StateStore

__all__ = ["AnsweredTurn", "StoredConversations", "StoredTurn"]

log = structlog.get_logger("kb.answers.conversations")


class AnsweredTurn(Protocol):
    """What the pipeline records of an answered request (``app.pipeline.hooks.Turn``)."""

    @property
    def question(self) -> str: ...
    @property
    def standalone(self) -> str: ...
    @property
    def answer(self) -> str: ...
    @property
    def sources(self) -> list[str]: ...
    @property
    def request_id(self) -> str: ...
    @property
    def prompt(self) -> str: ...


class StoredTurn(msgspec.Struct, frozen=True, kw_only=True):
    """One turn as the state store keeps it."""

    question: str
    standalone: str
    answer: str
    sources: list[str]
    request_id: str = ""
    prompt: str = ""
    at: float = 0.0
    """When it was answered (Unix time)."""


_decode_turn = msgspec.json.Decoder(StoredTurn).decode


def conversation_key(caller: Caller, conversation_id: str) -> str:
    return f"conversation:{caller.subject}:{conversation_id}"


class StoredConversations:
    """``app.pipeline.hooks.Conversations`` over a ``StateStore``."""

    def __init__(
        self,
        state: StateStore,
        *,
        condenser: Condenser,
        max_turns: int,
        ttl_s: float,
        feedback: AnswerFeedback | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.condenser = condenser
        self.max_turns = max_turns
        self.ttl_s = ttl_s
        self.feedback = feedback
        self.clock = clock

    async def turns(self, conversation_id: str, caller: Caller) -> list[StoredTurn]:
        """The conversation's kept turns, oldest first. ``NotFoundError`` when it does not
        exist, expired, or is another caller's; ``StateUnavailableError`` when the store fails."""
        raw = await self.state.list_range(conversation_key(caller, conversation_id), last=self.max_turns)
        turns = []
        for item in raw:
            try:
                turns.append(_decode_turn(item))
            except msgspec.DecodeError:  # written by an incompatible version: skip, never fail
                log.warning("conversation_turn_unreadable", conversation_id=conversation_id)
        if not turns:
            raise NotFoundError(
                f"conversation {conversation_id!r} not found: it expired, or was started with another key"
            )
        return turns

    async def standalone(self, conversation_id: str, caller: Caller, question: str) -> str:
        history = await self.turns(conversation_id, caller)
        condensed = await self.condenser.condense(history, question, caller=caller)
        log.info(
            "follow_up",
            conversation_id=conversation_id,
            turns=len(history),
            method=condensed.method,
            fallback=condensed.fallback,
        )
        return condensed.question

    async def record(self, conversation_id: str, caller: Caller, turn: AnsweredTurn) -> None:
        stored = StoredTurn(
            question=turn.question,
            standalone=turn.standalone,
            answer=turn.answer,
            sources=list(turn.sources),
            request_id=turn.request_id,
            prompt=turn.prompt,
            at=self.clock(),
        )
        try:
            await self.state.list_push(
                conversation_key(caller, conversation_id),
                msgspec.json.encode(stored),
                max_len=self.max_turns,
                ttl_s=self.ttl_s,
            )
        except StateUnavailableError as exc:
            # The answer has been streamed already: a follow-up will get 404, this one is fine.
            log.warning("conversation_not_recorded", conversation_id=conversation_id, error=exc.message)
        if self.feedback is not None and turn.request_id:
            await self.feedback.remember(
                AnswerRecord(
                    request_id=turn.request_id,
                    conversation_id=conversation_id,
                    tenant=caller.tenant,
                    subject=caller.subject,
                    question=stored.question,
                    standalone=stored.standalone,
                    answer=stored.answer,
                    sources=stored.sources,
                    prompt=stored.prompt,
                    answered_at=stored.at,
                )
            )
