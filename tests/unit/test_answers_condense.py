"""Making a follow-up standalone: the deterministic terms method, and the model's rewrite with
its fallback whenever the model fails, stalls, rambles or says nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from app.answers import (
    FixedCondensePrompt,
    ModelCondenser,
    StoredTurn,
    TermsCondenser,
    answer_cache_enabled,
    build_condenser,
    follow_up_with_terms,
)
from app.answers.condense import NoCondenser
from app.errors import ProviderError
from app.generation.base import ModelProvider, TextDelta, Usage
from app.generation.extractive import ExtractiveProvider
from app.prompting import CondenseTemplate, Prompt
from app.records import Caller
from app.settings import AnswerSettings, GenerationSettings

CALLER = Caller(key_id="a1b2c3d4e5f6", name="alice", tenant="default", role="user")
TEMPLATE = CondenseTemplate(
    version="t1",
    description="test",
    system="Rewrite the last message as a standalone question.",
    user="<conversation>\n{history}\n</conversation>\nLast message: {question}",
    turn="User: {question}\nAssistant: {answer}",
)
HISTORY = [
    StoredTurn(
        question="How many vacation days do employees get?",
        standalone="How many vacation days do employees get?",
        answer="Employees get 25 vacation days a year [1].",
        sources=["hr/leave.md"],
    )
]


class ScriptedModel(ModelProvider):
    """A provider that replies as told: text pieces, an error, or silence."""

    name = "anthropic"

    def __init__(
        self, *, deltas: Sequence[str] = (), error: ProviderError | None = None, stall_s: float = 0
    ) -> None:
        self.model = "scripted"
        self.deltas = deltas
        self.error = error
        self.stall_s = stall_s
        self.prompts: list[Prompt] = []
        self.closed = False

    async def stream(self, prompt: Prompt) -> AsyncIterator[TextDelta | Usage]:
        self.prompts.append(prompt)
        try:
            if self.stall_s:
                await asyncio.sleep(self.stall_s)
            if self.error is not None:
                raise self.error
            for delta in self.deltas:
                yield TextDelta(delta)
            yield Usage(input_tokens=10, output_tokens=len(self.deltas))
        finally:
            self.closed = True


def condenser(model: ScriptedModel, *, timeout_s: float = 1.0) -> ModelCondenser:
    return ModelCondenser(
        model, FixedCondensePrompt(TEMPLATE), timeout_s=timeout_s, fallback=TermsCondenser(max_terms=8)
    )


# -- the terms method -------------------------------------------------------------------------


def test_the_terms_method_adds_the_previous_questions_words_the_follow_up_lacks() -> None:
    assert (
        follow_up_with_terms("and for contractors?", "How do I rotate an API key?", max_terms=8)
        == "and for contractors? rotate API key"
    )


def test_the_terms_method_adds_no_stop_words_and_no_word_the_follow_up_already_has() -> None:
    # "policies" and "policy" share a stem; "the", "is", "what" are stop words.
    assert follow_up_with_terms("and the policies?", "What is the travel policy?", max_terms=8) == (
        "and the policies? travel"
    )


def test_the_terms_method_adds_at_most_its_limit_earliest_first() -> None:
    assert follow_up_with_terms("why?", "alpha beta gamma delta epsilon", max_terms=2) == "why? alpha beta"


def test_a_follow_up_that_repeats_everything_is_searched_as_asked() -> None:
    assert follow_up_with_terms("rotate the API key?", "How do I rotate an API key?", max_terms=8) == (
        "rotate the API key?"
    )


async def test_a_chain_of_follow_ups_keeps_the_topic_of_the_first_question() -> None:
    terms = TermsCondenser(max_terms=8)
    second = await terms.condense(HISTORY, "and for contractors?", caller=CALLER)
    history = [
        *HISTORY,
        StoredTurn(question="and for contractors?", standalone=second.question, answer="…", sources=[]),
    ]

    third = await terms.condense(history, "in Germany?", caller=CALLER)

    assert second.method == third.method == "terms"
    assert third.question == "in Germany? contractors many vacation days employees get"


# -- the model's rewrite ------------------------------------------------------------------------


async def test_the_model_rewrites_the_follow_up_from_the_history() -> None:
    model = ScriptedModel(deltas=["How many vacation days ", "do contractors get?"])

    condensed = await condenser(model).condense(HISTORY, "and for contractors?", caller=CALLER)

    assert (condensed.question, condensed.method, condensed.fallback) == (
        "How many vacation days do contractors get?",
        "model",
        None,
    )
    (prompt,) = model.prompts
    assert prompt.name == "condense" and prompt.system == TEMPLATE.system
    assert "User: How many vacation days do employees get?" in prompt.messages[0].content
    assert "Last message: and for contractors?" in prompt.messages[0].content


async def test_a_label_and_quotes_around_the_models_question_are_dropped() -> None:
    model = ScriptedModel(
        deltas=['Standalone question: "How many vacation days do contractors get?"\n\nBecause…']
    )

    condensed = await condenser(model).condense(HISTORY, "and for contractors?", caller=CALLER)

    assert condensed.question == "How many vacation days do contractors get?"


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (ScriptedModel(error=ProviderError("overloaded", code="overloaded", retryable=True)), "overloaded"),
        (ScriptedModel(stall_s=5.0), "timeout"),
        (ScriptedModel(deltas=["  ", "\n"]), "empty"),
        (ScriptedModel(deltas=["word " * 300]), "too_long"),
    ],
    ids=["error", "timeout", "empty", "too_long"],
)
async def test_when_the_model_fails_the_terms_method_answers(model: ScriptedModel, reason: str) -> None:
    started = asyncio.get_running_loop().time()

    condensed = await condenser(model, timeout_s=0.2).condense(HISTORY, "and for contractors?", caller=CALLER)

    assert (condensed.method, condensed.fallback) == ("terms", reason)
    assert condensed.question == "and for contractors? many vacation days employees get"
    assert asyncio.get_running_loop().time() - started < 2.0  # the timeout bounds a stall
    assert model.closed  # the upstream call was released


# -- which method a service uses -----------------------------------------------------------------


def test_auto_condenses_with_a_model_that_writes_and_by_terms_with_the_extractive_answerer() -> None:
    settings = AnswerSettings()
    prompts = FixedCondensePrompt(TEMPLATE)

    assert isinstance(build_condenser(settings, ScriptedModel(), prompts), ModelCondenser)
    assert isinstance(
        build_condenser(settings, ExtractiveProvider(GenerationSettings()), prompts), TermsCondenser
    )
    assert isinstance(build_condenser(settings, ScriptedModel(), None), TermsCondenser)  # no prompt
    assert isinstance(build_condenser(AnswerSettings(condense="off"), ScriptedModel(), prompts), NoCondenser)
    assert isinstance(
        build_condenser(AnswerSettings(condense="terms"), ScriptedModel(), prompts), TermsCondenser
    )


def test_the_answer_cache_is_on_by_default_for_the_extractive_answerer_only() -> None:
    extractive = ExtractiveProvider(GenerationSettings())

    assert answer_cache_enabled(AnswerSettings(), extractive)
    assert not answer_cache_enabled(AnswerSettings(), ScriptedModel())
    assert answer_cache_enabled(AnswerSettings(answer_cache="on"), ScriptedModel())
    assert not answer_cache_enabled(AnswerSettings(answer_cache="off"), extractive)
