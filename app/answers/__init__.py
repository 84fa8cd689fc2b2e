"""Follow-up questions (conversations), the answer cache and answer feedback, in the state store.

``build_answers`` makes the three for one service from its settings and its model provider; the
composition root (``app.services``) hands the conversations and the cache to the pipeline, whose
hooks (``app.pipeline.hooks``) they implement, and the feedback to the HTTP routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from app.answers.cache import (
    IndexVersion,
    StateAnswerCache,
    bump_index_version,
    cache_digest,
    normalise_question,
)
from app.answers.condense import (
    CondenseChoice,
    Condensed,
    CondensePrompts,
    Condenser,
    FixedCondensePrompt,
    ModelCondenser,
    NoCondenser,
    TermsCondenser,
    follow_up_with_terms,
)
from app.answers.conversations import StoredConversations, StoredTurn
from app.answers.feedback import MAX_RATINGS_PER_ANSWER, AnswerFeedback, AnswerRecord, FeedbackRecord, Rating
from app.generation.base import ModelProvider
from app.settings import AnswerSettings, Settings
from app.state import StateStore

__all__ = [
    "MAX_RATINGS_PER_ANSWER",
    "AnswerFeedback",
    "AnswerRecord",
    "Answers",
    "CondenseChoice",
    "CondensePrompts",
    "Condensed",
    "Condenser",
    "FeedbackRecord",
    "FixedCondensePrompt",
    "IndexVersion",
    "ModelCondenser",
    "NoCondenser",
    "Rating",
    "StateAnswerCache",
    "StoredConversations",
    "StoredTurn",
    "TermsCondenser",
    "answer_cache_enabled",
    "build_answers",
    "build_condenser",
    "bump_index_version",
    "cache_digest",
    "follow_up_with_terms",
    "normalise_question",
]

log = structlog.get_logger("kb.answers")

A = TypeVar("A")

# Providers that can rewrite a question (the extractive answerer only quotes sources).
_WRITING_PROVIDERS = frozenset({"anthropic", "openai"})


@dataclass(frozen=True, slots=True)
class Answers(Generic[A]):
    """What one service keeps of its answers."""

    conversations: StoredConversations
    cache: StateAnswerCache[Any, A] | None
    """None when ``answers.answer_cache`` is off (or ``auto`` with a model)."""
    feedback: AnswerFeedback


def answer_cache_enabled(settings: AnswerSettings, provider: ModelProvider) -> bool:
    """``auto``: on with the deterministic extractive answerer, off with a sampling model."""
    if settings.answer_cache == "auto":
        return provider.name == "extractive"
    return settings.answer_cache == "on"


def build_condenser(
    settings: AnswerSettings, provider: ModelProvider, prompt: CondensePrompts | None
) -> Condenser:
    """The condenser ``answers.condense`` asks for (``auto``: the model when it can write)."""
    method = settings.condense
    if method == "auto":
        method = "model" if provider.name in _WRITING_PROVIDERS else "terms"
    if method == "off":
        return NoCondenser()
    terms = TermsCondenser(max_terms=settings.condense_terms)
    if method == "terms":
        return terms
    if prompt is None:
        log.warning("condense_prompt_missing", fallback="terms")
        return terms
    return ModelCondenser(provider, prompt, timeout_s=settings.condense_timeout_s, fallback=terms)


def build_answers(
    state: StateStore,
    settings: Settings,
    *,
    provider: ModelProvider,
    condense_prompts: CondensePrompts | None,
    answer_type: type[A],
) -> Answers[A]:
    """Conversations, the answer cache (cached answers are ``answer_type``) and feedback."""
    answers = settings.answers
    feedback = AnswerFeedback(
        state,
        window_s=answers.feedback_window_s,
        retention_days=answers.feedback_retention_days,
        max_per_day=answers.feedback_max_per_day,
    )
    conversations = StoredConversations(
        state,
        condenser=build_condenser(answers, provider, condense_prompts),
        max_turns=answers.conversation_turns,
        ttl_s=answers.conversation_ttl_s,
        feedback=feedback,
    )
    cache: StateAnswerCache[Any, A] | None = None
    if answer_cache_enabled(answers, provider):
        cache = StateAnswerCache(
            state,
            collection=settings.store.collection,
            ttl_s=answers.answer_cache_ttl_s,
            answer_type=answer_type,
        )
    return Answers(conversations=conversations, cache=cache, feedback=feedback)
