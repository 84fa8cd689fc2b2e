"""Settings: follow-up questions, answer and embedding caches, feedback (``app.answers``)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from app.settings.base import NonNegativeInt, PositiveFloat, _Section

__all__ = ["AnswerCacheMode", "AnswerSettings", "CondenseMethod"]

CondenseMethod = Literal["auto", "model", "terms", "off"]
"""How a follow-up question is made standalone (``app.answers.condense``)."""

AnswerCacheMode = Literal["auto", "on", "off"]
"""Whether finished answers are cached (``app.answers.cache``)."""


class AnswerSettings(_Section, frozen=True):
    """Follow-up questions, answer and embedding caches, feedback (``app.answers``)."""

    conversation_ttl_s: PositiveFloat = 3600.0
    """A conversation is forgotten this long after its last turn; a follow-up then gets 404."""

    conversation_turns: Annotated[int, Meta(ge=1, le=50)] = 6
    """Turns kept per conversation (question, answer, cited sources): the newest ones, older
    turns are dropped. A follow-up is made standalone from these."""

    condense: CondenseMethod = "auto"
    """``model``: a small call of the answering model with the ``condense`` prompt rewrites the
    follow-up as a standalone question (bounded by ``condense_timeout_s``; on a failure the
    ``terms`` method answers instead, and it is logged). ``terms``: the follow-up plus the
    previous question's words, no model call. ``off``: the follow-up is searched as asked.
    ``auto``: ``model`` with Claude or an OpenAI-compatible model, ``terms`` with the offline
    extractive answerer (which cannot rewrite text)."""

    condense_timeout_s: PositiveFloat = 4.0
    """Longest wait for the condense call, retries included; past it the ``terms`` method is used.
    The question is not answered before it is condensed, so this adds to the first token."""

    condense_terms: Annotated[int, Meta(ge=1, le=50)] = 8
    """The ``terms`` method adds at most this many words of the previous (standalone) question
    that the follow-up does not already contain, the earliest first."""

    answer_cache: AnswerCacheMode = "auto"
    """Serve a repeated question from the answer cache in the state store (no retrieval, no model
    call; ``done`` says ``"cached": true``). ``auto``: on with the extractive answerer, whose
    answer to the same question over the same documents is always the same; off with a model,
    whose answers are sampled and where a user asking again may want a new one."""

    answer_cache_ttl_s: PositiveFloat = 3600.0
    """How long a cached answer is served. Ingesting documents (``kb ingest`` bumps the index
    version), another prompt version or model, other filters or another tenant never see it."""

    embedding_cache_size: NonNegativeInt = 1024
    """Query embeddings kept in memory per process (least recently used first out; one vector of
    all-MiniLM-L6-v2 is 1.5 kB). 0 turns the cache off."""

    feedback_window_s: PositiveFloat = 86400.0
    """How long after an answer it can be rated (``POST /ask/{request_id}/feedback``): what each
    request answered is kept this long in the state store."""

    feedback_retention_days: Annotated[int, Meta(ge=1, le=3650)] = 90
    """Ratings are kept (and exported by ``kb feedback export``) for this many days."""

    feedback_max_per_day: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    """At most this many ratings are kept per day (the oldest of the day are dropped first)."""
