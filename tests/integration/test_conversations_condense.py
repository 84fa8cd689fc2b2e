"""Condensing a follow-up with Claude: the real provider (real ``anthropic`` SDK) sends the
shipped ``condense`` prompt to the wire-level fake Messages API, and every way that call can
go wrong ends in the deterministic method, logged, within the condense timeout."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import structlog.testing

from app.answers import FixedCondensePrompt, ModelCondenser, StoredTurn, TermsCondenser
from app.generation.anthropic import AnthropicProvider
from app.prompting import PromptRegistry
from app.records import Caller
from app.resources import prompts_dir
from app.settings import GenerationSettings
from tests.fakes.anthropic_server import FakeAnthropic, Reply

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

API_KEY = "sk-ant-test-0123456789"
CALLER = Caller(key_id="a1b2c3d4e5f6", name="alice", tenant="default", role="user")
HISTORY = [
    StoredTurn(
        question="How many vacation days do employees get?",
        standalone="How many vacation days do employees get?",
        answer="Employees get 25 vacation days a year [1].",
        sources=["hr/leave.md"],
    )
]
FOLLOW_UP = "and for contractors?"
TERMS = "and for contractors? many vacation days employees get"
TIMEOUT_S = 1.0


@pytest.fixture
async def provider(fake_anthropic: FakeAnthropic) -> AsyncIterator[AnthropicProvider]:
    settings = GenerationSettings(
        base_url=fake_anthropic.base_url,
        model="claude-test",
        max_retries=1,
        retry_backoff_s=0.01,
        connect_timeout_s=0.5,
        first_token_timeout_s=5.0,
        total_timeout_s=10.0,
    )
    made = AnthropicProvider(settings, API_KEY)
    yield made
    await made.aclose()


@pytest.fixture
def condenser(provider: AnthropicProvider) -> ModelCondenser:
    template = PromptRegistry(prompts_dir(None)).condense("v1")
    return ModelCondenser(
        provider, FixedCondensePrompt(template), timeout_s=TIMEOUT_S, fallback=TermsCondenser(max_terms=8)
    )


async def test_the_condense_prompt_goes_to_claude_and_its_rewrite_is_the_standalone_question(
    condenser: ModelCondenser, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(Reply.text(["How many vacation days ", "do contractors get?"]))

    condensed = await condenser.condense(HISTORY, FOLLOW_UP, caller=CALLER)

    assert (condensed.question, condensed.method) == ("How many vacation days do contractors get?", "model")
    (request,) = fake_anthropic.requests
    body = request.body
    assert body["system"].startswith("You rewrite the last message of a conversation")
    (message,) = body["messages"]
    assert "<conversation>" in message["content"]
    assert "User: How many vacation days do employees get?" in message["content"]
    assert "Employees get 25 vacation days a year [1]." in message["content"]
    assert f"Last message: {FOLLOW_UP}" in message["content"]
    # The condense version's own parameters: a short, deterministic rewrite.
    assert (body["max_tokens"], body["temperature"]) == (128, 0.0)


async def test_a_failing_model_falls_back_to_the_terms_and_says_so_in_the_log(
    condenser: ModelCondenser, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(Reply.error(500), Reply.error(500))  # the attempt and its one retry

    with structlog.testing.capture_logs() as logs:
        condensed = await condenser.condense(HISTORY, FOLLOW_UP, caller=CALLER)

    assert (condensed.question, condensed.method, condensed.fallback) == (TERMS, "terms", "upstream_error")
    assert len(fake_anthropic.requests) == 2
    (failure,) = [entry for entry in logs if entry["event"] == "condense_failed"]
    assert failure["reason"] == "upstream_error" and failure["prompt"] == "condense@v1"
    assert failure["fallback"] == "terms" and failure["log_level"] == "warning"


async def test_a_stalling_model_is_given_up_on_at_the_condense_timeout(
    condenser: ModelCondenser, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(Reply.stall(after_deltas=1, seconds=20))
    started = time.monotonic()

    condensed = await condenser.condense(HISTORY, FOLLOW_UP, caller=CALLER)

    assert time.monotonic() - started < TIMEOUT_S + 1.0
    assert (condensed.question, condensed.fallback) == (TERMS, "timeout")
    (request,) = fake_anthropic.requests
    await request.wait_client_closed(timeout=2.0)  # the upstream call was released, not left open


async def test_a_model_that_answers_instead_of_rewriting_is_not_searched_for(
    condenser: ModelCondenser, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(Reply.text(["Contractors are not employees. " * 60]))

    condensed = await condenser.condense(HISTORY, FOLLOW_UP, caller=CALLER)

    assert (condensed.question, condensed.fallback) == (TERMS, "too_long")
