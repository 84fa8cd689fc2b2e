"""Making a follow-up question standalone before it is searched.

"And for contractors?" finds nothing by itself; after "How many vacation days do employees
get?" it means "How many vacation days do contractors get?". Two methods:

* ``TermsCondenser`` (deterministic, no model): the follow-up plus the words of the previous
  standalone question that it does not already contain. Retrieval then searches both topics
  at once, which is what a follow-up usually means; the offline extractive answerer, which
  cannot rewrite text, uses it, and so does every model-based condense that fails.
* ``ModelCondenser``: one small call of the answering model with the ``condense`` prompt (the
  version the prompt selection chooses for the caller, ``app.prompting``), bounded by a timeout. The model is an unreliable collaborator: a failure, a timeout, an empty
  or rambling reply all fall back to the terms method, and the fallback is logged.

The previous question is the previous turn's *standalone* one, so a chain of follow-ups keeps
its topic ("and for contractors?" → "and in Germany?").
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec
import structlog

from app.errors import ProviderError
from app.generation.base import ModelProvider, TextDelta
from app.prompting import CondenseTemplate, Prompt, build_condense_prompt
from app.records import Caller
from app.text.terms import terms

__all__ = [
    "CondenseChoice",
    "CondensePrompts",
    "Condensed",
    "Condenser",
    "FixedCondensePrompt",
    "HistoryTurn",
    "ModelCondenser",
    "NoCondenser",
    "TermsCondenser",
    "follow_up_with_terms",
]

log = structlog.get_logger("kb.answers.condense")

_WORD_RE = re.compile(r"\w[\w'’-]*", re.UNICODE)
# A standalone question longer than this is not a question but a model that rambles (or
# answers instead of rewriting): the follow-up is then condensed by its terms.
_MAX_STANDALONE_CHARS = 1000
# Openings a model tends to put before the question although the prompt asks for none.
_PREAMBLE_RE = re.compile(r"^(?:standalone question|question|rewritten question)\s*:\s*", re.IGNORECASE)

CondenseMethodUsed = Literal["model", "terms", "off"]


class HistoryTurn(Protocol):
    """What condensing reads of an earlier turn (``app.answers.conversations.StoredTurn``)."""

    @property
    def question(self) -> str: ...
    @property
    def standalone(self) -> str: ...
    @property
    def answer(self) -> str: ...


class Condensed(msgspec.Struct, frozen=True, kw_only=True):
    question: str
    """The standalone question: what retrieval searches."""
    method: CondenseMethodUsed
    fallback: str | None = None
    """Why the model's rewrite was not used (``timeout``, an error code, ``empty``, ``too_long``)."""


class Condenser(Protocol):
    async def condense(self, history: Sequence[HistoryTurn], question: str, *, caller: Caller) -> Condensed:
        """``question`` made standalone from ``history`` (oldest turn first, never empty)."""
        ...


class CondenseChoice(Protocol):
    """A version of the ``condense`` prompt (``app.prompting.Selected``)."""

    @property
    def template(self) -> CondenseTemplate: ...
    @property
    def name(self) -> str: ...
    @property
    def ref(self) -> str:
        """``name@version``, for the logs."""
        ...


class CondensePrompts(Protocol):
    """Which ``condense`` version a caller's follow-up is rewritten with (``PromptSelection``)."""

    async def condense(self, caller: Caller) -> CondenseChoice: ...


class FixedCondensePrompt:
    """Always the same ``condense`` version."""

    def __init__(self, template: CondenseTemplate, *, name: str = "condense") -> None:
        self.template = template
        self.name = name
        self.ref = f"{name}@{template.version}"

    async def condense(self, caller: Caller) -> FixedCondensePrompt:
        return self


def follow_up_with_terms(question: str, previous: str, *, max_terms: int) -> str:
    """``question`` plus up to ``max_terms`` words of ``previous`` it does not contain.

    A word counts as contained when its index terms (``app.text.terms``: stemmed, stop words
    dropped) are all among the question's, so "policies" is not added to "and the policy?", and
    stop words are never added. Words keep their spelling and their order in ``previous``.
    """
    known = set(terms(question))
    added: list[str] = []
    for word in _WORD_RE.findall(previous):
        stems = terms(word)
        if not stems or known.issuperset(stems):
            continue
        known.update(stems)
        added.append(word)
        if len(added) >= max_terms:
            break
    return f"{question} {' '.join(added)}" if added else question


class NoCondenser:
    """A follow-up is searched as asked (``answers.condense = "off"``)."""

    async def condense(self, history: Sequence[HistoryTurn], question: str, *, caller: Caller) -> Condensed:
        return Condensed(question=question, method="off")


class TermsCondenser:
    """The follow-up plus the previous standalone question's words: deterministic, no model."""

    def __init__(self, *, max_terms: int) -> None:
        self.max_terms = max_terms

    async def condense(self, history: Sequence[HistoryTurn], question: str, *, caller: Caller) -> Condensed:
        return self.now(history, question)

    def now(self, history: Sequence[HistoryTurn], question: str, *, fallback: str | None = None) -> Condensed:
        previous = history[-1].standalone if history else ""
        return Condensed(
            question=follow_up_with_terms(question, previous, max_terms=self.max_terms),
            method="terms",
            fallback=fallback,
        )


class ModelCondenser:
    """One call of the answering model with the ``condense`` prompt; the terms method when it fails."""

    def __init__(
        self,
        provider: ModelProvider,
        prompts: CondensePrompts,
        *,
        timeout_s: float,
        fallback: TermsCondenser,
    ) -> None:
        self.provider = provider
        self.prompts = prompts
        self.timeout_s = timeout_s
        self.fallback = fallback

    async def condense(self, history: Sequence[HistoryTurn], question: str, *, caller: Caller) -> Condensed:
        started = time.perf_counter()
        choice = await self.prompts.condense(caller)
        # The earlier questions as searched: resolved already, they tell the model the topic.
        shown = [_Exchange(question=turn.standalone, answer=turn.answer) for turn in history]
        prompt = build_condense_prompt(choice.template, history=shown, question=question, name=choice.name)
        try:
            reply = await self._ask(prompt)
        except TimeoutError:
            return self._fall_back(history, question, "timeout", started, choice.ref)
        except ProviderError as exc:
            return self._fall_back(history, question, exc.code, started, choice.ref, error=exc.message)
        if reply is None:
            return self._fall_back(history, question, "too_long", started, choice.ref)
        standalone = _first_line(reply)
        if not standalone:
            return self._fall_back(history, question, "empty", started, choice.ref)
        log.info(
            "condensed",
            method="model",
            prompt=choice.ref,
            took_ms=_since(started),
        )
        return Condensed(question=standalone, method="model")

    async def _ask(self, prompt: Prompt) -> str | None:
        """The model's reply, or None once it is longer than any standalone question."""
        parts: list[str] = []
        size = 0
        stream = self.provider.stream(prompt)
        try:
            async with asyncio.timeout(self.timeout_s):
                async for item in stream:
                    if isinstance(item, TextDelta):
                        parts.append(item.text)
                        size += len(item.text)
                        if size > _MAX_STANDALONE_CHARS:
                            return None
        finally:
            # Also on a timeout or an early return: the provider releases its upstream call.
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        return "".join(parts)

    def _fall_back(
        self,
        history: Sequence[HistoryTurn],
        question: str,
        reason: str,
        started: float,
        prompt: str,
        *,
        error: str | None = None,
    ) -> Condensed:
        condensed = self.fallback.now(history, question, fallback=reason)
        log.warning(
            "condense_failed",
            reason=reason,
            error=error,
            prompt=prompt,
            took_ms=_since(started),
            fallback="terms",
        )
        return condensed


class _Exchange(msgspec.Struct, frozen=True, kw_only=True):
    question: str
    answer: str


def _first_line(reply: str) -> str:
    """The reply's first non-blank line, without a "Standalone question:" label or quotes."""
    for line in reply.splitlines():
        line = _PREAMBLE_RE.sub("", line.strip()).strip().strip("\"'“”«»").strip()
        if line:
            return " ".join(line.split())
    return ""


def _since(mark: float) -> float:
    return round((time.perf_counter() - mark) * 1000, 2)
