"""A version's ``[parameters]`` reach the model: both streaming providers send them, over real HTTP.

The version's temperature wins over ``generation.temperature``; its max_tokens applies when it
is lower than ``generation.max_tokens`` (the deployment's ceiling); a version without
parameters sends the settings' values.
"""

from __future__ import annotations

import msgspec
import pytest

from app.generation.anthropic import AnthropicProvider
from app.generation.base import ModelProvider
from app.generation.openai import OpenAIProvider
from app.prompting import ModelParameters, Prompt, PromptRegistry, build_condense_prompt, build_prompt
from app.resources import prompts_dir
from app.settings import GenerationSettings
from tests.fakes.anthropic_server import FakeAnthropic, fake_anthropic
from tests.fakes.anthropic_server import Reply as AnthropicReply
from tests.fakes.openai_server import FakeOpenAI, fake_openai
from tests.fakes.openai_server import Reply as OpenAIReply

__all__ = ["fake_anthropic", "fake_openai"]  # the fixtures, found by name in this module

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]

SETTINGS = {"max_tokens": 321, "temperature": 0.3, "max_retries": 0, "total_timeout_s": 5.0}
REGISTRY = PromptRegistry(prompts_dir(environ={}))


def answer_prompt(parameters: ModelParameters) -> Prompt:
    """The shipped answer v1 rendered, as if the version declared ``parameters``."""
    prompt = build_prompt(
        REGISTRY.answer("v1"), question="How do I rotate a key?", status="empty", context=[]
    )
    return msgspec.structs.replace(prompt, parameters=parameters)


async def sent(provider: ModelProvider, prompt: Prompt) -> None:
    try:
        async for _ in provider.stream(prompt):
            pass
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("parameters", "temperature", "max_tokens"),
    [
        (ModelParameters(), 0.3, 321),
        (ModelParameters(temperature=0.0, max_tokens=100), 0.0, 100),
        (ModelParameters(max_tokens=5000), 0.3, 321),
    ],
    ids=["settings", "version", "capped"],
)
async def test_anthropic_sends_the_versions_parameters(
    fake_anthropic: FakeAnthropic, parameters: ModelParameters, temperature: float, max_tokens: int
) -> None:
    fake_anthropic.script(AnthropicReply.text(["ok"]))
    settings = GenerationSettings(**SETTINGS, base_url=fake_anthropic.base_url)
    await sent(AnthropicProvider(settings, "sk-ant-test"), answer_prompt(parameters))
    body = fake_anthropic.requests[0].body
    assert (body["temperature"], body["max_tokens"]) == (temperature, max_tokens)


@pytest.mark.parametrize(
    ("parameters", "temperature", "max_tokens"),
    [
        (ModelParameters(), 0.3, 321),
        (ModelParameters(temperature=0.9, max_tokens=64), 0.9, 64),
    ],
    ids=["settings", "version"],
)
async def test_an_openai_compatible_server_gets_the_versions_parameters(
    fake_openai: FakeOpenAI, parameters: ModelParameters, temperature: float, max_tokens: int
) -> None:
    fake_openai.script(OpenAIReply.text(["ok"]))
    settings = GenerationSettings(
        **SETTINGS, provider="openai", openai_base_url=fake_openai.base_url, openai_model="m"
    )
    await sent(OpenAIProvider(settings, "sk-local"), answer_prompt(parameters))
    body = fake_openai.requests[0].body
    assert (body["temperature"], body["max_tokens"]) == (temperature, max_tokens)


async def test_the_shipped_condense_version_asks_for_a_short_deterministic_reply(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(AnthropicReply.text(["How many days do contractors get?"]))
    prompt = build_condense_prompt(REGISTRY.condense("v1"), history=[], question="and for contractors?")
    settings = GenerationSettings(**SETTINGS, base_url=fake_anthropic.base_url)
    await sent(AnthropicProvider(settings, "sk-ant-test"), prompt)
    body = fake_anthropic.requests[0].body
    assert body["temperature"] == 0.0 and body["max_tokens"] == REGISTRY.condense("v1").parameters.max_tokens
    assert body["system"] == REGISTRY.condense("v1").system
