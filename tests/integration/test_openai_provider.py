"""OpenAIProvider against a fake OpenAI-compatible Chat Completions server, over real loopback HTTP.

The provider's real HTTP client runs unmodified; only the server is fake. Timeouts and backoffs
are tiny so every test finishes in well under two seconds.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from app.config import load_settings
from app.errors import ConfigError, ProviderError
from app.generation.base import TextDelta, Usage
from app.generation.extractive import ExtractiveProvider
from app.generation.openai import OpenAIProvider
from app.generation.registry import build_provider
from app.prompting import Message, Prompt
from app.settings import GenerationSettings
from tests.fakes.anthropic_server import closed_port_url
from tests.fakes.openai_server import FakeOpenAI, Reply, fake_openai

__all__ = ["fake_openai"]  # the fixture, imported to be found by pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]

API_KEY = "sk-local-test-0123456789"
PROMPT = Prompt(
    version="v1",
    system="Answer only from the sources.",
    messages=(Message("user", "How do I rotate the API keys?"),),
    question="How do I rotate the API keys?",
    retrieval_status="ok",
)
FAST = {
    "provider": "openai",
    "openai_model": "qwen2.5-7b-instruct",
    "max_tokens": 321,
    "temperature": 0.3,
    "connect_timeout_s": 0.5,
    "first_token_timeout_s": 0.3,
    "total_timeout_s": 1.5,
    "max_retries": 2,
    "retry_backoff_s": 0.01,
}

MakeProvider = Callable[..., OpenAIProvider]


@pytest.fixture
async def make_provider(fake_openai: FakeOpenAI) -> AsyncIterator[MakeProvider]:
    """Build providers aimed at the fake (``FAST`` settings, overridable; ``api_key`` too);
    closed afterwards."""
    made: list[OpenAIProvider] = []

    def make(api_key: str | None = API_KEY, **overrides: Any) -> OpenAIProvider:
        options = {**FAST, "openai_base_url": fake_openai.base_url, **overrides}
        made.append(OpenAIProvider(GenerationSettings(**options), api_key))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


async def collect(provider: OpenAIProvider) -> tuple[list[str], list[Usage]]:
    texts: list[str] = []
    usages: list[Usage] = []
    async for item in provider.stream(PROMPT):
        if isinstance(item, TextDelta):
            assert not usages, "text after usage"
            texts.append(item.text)
        else:
            usages.append(item)
    return texts, usages


async def fail(provider: OpenAIProvider, texts: list[str] | None = None) -> ProviderError:
    """Run the stream to its ProviderError, keeping any text that came first in ``texts``."""
    with pytest.raises(ProviderError) as caught:  # noqa: PT012 - the error comes mid-stream
        async for item in provider.stream(PROMPT):
            if isinstance(item, TextDelta) and texts is not None:
                texts.append(item.text)
    return caught.value


# ------------------------------------------------------------------------------- happy path
async def test_text_deltas_arrive_in_order_followed_by_the_reported_usage(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.text(["Hel", "lo", ", world"], prompt_tokens=12, completion_tokens=5))

    texts, usages = await collect(make_provider())

    assert texts == ["Hel", "lo", ", world"]
    assert usages == [Usage(input_tokens=12, output_tokens=5)]


async def test_request_carries_model_system_and_user_messages_limits_and_asks_for_usage(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    await collect(make_provider())

    (request,) = fake_openai.requests
    assert request.path == "/v1/chat/completions"
    assert request.body == {
        "model": "qwen2.5-7b-instruct",
        "messages": [
            {"role": "system", "content": "Answer only from the sources."},
            {"role": "user", "content": "How do I rotate the API keys?"},
        ],
        "max_tokens": 321,
        "temperature": 0.3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_the_api_key_is_sent_as_a_bearer_token(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    await collect(make_provider())

    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


async def test_without_a_key_no_authorization_header_is_sent(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    texts, _ = await collect(make_provider(api_key=None))

    assert texts == ["This is ", "a fake ", "answer."]
    assert "authorization" not in fake_openai.requests[0].headers


async def test_a_server_that_does_not_report_usage_still_answers_without_usage(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.text(["No ", "usage ", "here."], reports_usage=False))

    texts, usages = await collect(make_provider())

    assert texts == ["No ", "usage ", "here."]
    assert usages == []


async def test_a_stream_with_a_finish_reason_but_no_done_marker_is_complete(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.text(["Older ", "servers."], sends_done=False, prompt_tokens=7))

    texts, usages = await collect(make_provider())

    assert texts == ["Older ", "servers."]
    assert usages == [Usage(input_tokens=7, output_tokens=2)]
    assert len(fake_openai.requests) == 1


# ---------------------------------------------------------------------- retries before text
@pytest.mark.parametrize("status", [429, 500, 503, 529])
async def test_transient_http_error_is_retried_then_answered(
    fake_openai: FakeOpenAI, make_provider: MakeProvider, status: int
) -> None:
    fake_openai.script(Reply.error(status, retry_after=0), Reply.text(["fine"]))

    texts, _ = await collect(make_provider())

    assert texts == ["fine"]
    assert len(fake_openai.requests) == 2


async def test_retry_waits_as_long_as_retry_after_says(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.error(429, retry_after=0.3), Reply.text(["ok"]))

    await collect(make_provider(retry_backoff_s=0.0))

    first, second = fake_openai.requests
    assert 0.3 <= second.received_at - first.received_at < 0.6


async def test_without_retry_after_the_backoff_doubles(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.error(500), Reply.error(500), Reply.text(["ok"]))

    await collect(make_provider(retry_backoff_s=0.15))

    first_wait, second_wait = (
        b.received_at - a.received_at
        for a, b in zip(fake_openai.requests, fake_openai.requests[1:], strict=False)
    )
    assert 0.15 <= first_wait < 0.3 <= second_wait < 0.5


@pytest.mark.parametrize(
    ("status", "code"), [(429, "rate_limited"), (529, "overloaded"), (500, "upstream_error")]
)
async def test_when_retries_run_out_the_last_error_is_raised_as_retryable(
    fake_openai: FakeOpenAI, make_provider: MakeProvider, status: int, code: str
) -> None:
    fake_openai.script(*[Reply.error(status, retry_after=0)] * 3)

    error = await fail(make_provider(max_retries=2))

    assert (error.code, error.retryable) == (code, True)
    assert "3 attempts" in error.message
    assert len(fake_openai.requests) == 3


async def test_retry_after_beyond_the_total_budget_fails_at_once(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.error(429, retry_after=30))

    started = time.monotonic()
    error = await fail(make_provider())

    assert (error.code, error.retryable) == ("rate_limited", True)
    assert time.monotonic() - started < 0.5
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "bad_request"),
        (422, "bad_request"),
        (401, "provider_auth"),
        (403, "provider_auth"),
        (404, "model_not_found"),
    ],
)
async def test_client_errors_are_not_retried(
    fake_openai: FakeOpenAI, make_provider: MakeProvider, status: int, code: str
) -> None:
    fake_openai.script(Reply.error(status))

    error = await fail(make_provider())

    assert (error.code, error.retryable) == (code, False)
    assert len(fake_openai.requests) == 1


async def test_an_error_names_the_status_the_path_and_the_servers_message(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.error(404, message="The model `qwen2.5-7b-instruct` does not exist."))

    error = await fail(make_provider())

    assert "HTTP 404 at /v1/chat/completions" in error.message
    assert "The model `qwen2.5-7b-instruct` does not exist." in error.message


async def test_a_base_url_without_the_api_prefix_is_a_404_that_names_the_path(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    error = await fail(make_provider(openai_base_url=fake_openai.base_url.removesuffix("/v1")))

    assert (error.code, error.retryable) == ("model_not_found", False)
    assert "at /chat/completions" in error.message


async def test_an_error_page_that_is_not_json_is_quoted_briefly(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1>" + b" padding" * 200 + b"</body></html>"
    fake_openai.script(Reply.error(502, body=page), Reply.error(502, body=page), Reply.error(502, body=page))

    error = await fail(make_provider(max_retries=2))

    assert (error.code, error.retryable) == ("upstream_error", True)
    assert "502 Bad Gateway" in error.message
    assert len(error.message) < 500


async def test_the_api_key_never_appears_in_an_error(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.error(401, message=f"Incorrect API key provided: {API_KEY}"))

    error = await fail(make_provider())

    assert error.code == "provider_auth"
    assert "Incorrect API key provided" in error.message
    assert API_KEY not in str(error)


async def test_a_reply_that_is_not_an_event_stream_fails_without_retrying(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.unstreamed(["whole answer"]))

    error = await fail(make_provider())

    assert (error.code, error.retryable) == ("provider_error", False)
    assert "application/json" in error.message
    assert len(fake_openai.requests) == 1


# --------------------------------------------------------------------------------- timeouts
@pytest.mark.parametrize("before_headers", [False, True], ids=["after-headers", "no-response"])
async def test_stall_before_first_token_times_out_and_is_retried(
    fake_openai: FakeOpenAI, make_provider: MakeProvider, before_headers: bool
) -> None:
    fake_openai.script(Reply.stall(before_headers=before_headers), Reply.text(["late"]))

    started = time.monotonic()
    texts, _ = await collect(make_provider(first_token_timeout_s=0.3))

    assert texts == ["late"]
    stalled, retried = fake_openai.requests
    assert 0.3 <= retried.received_at - started < 0.7
    assert stalled.client_closed_at is not None  # the stalled call was abandoned, not leaked


async def test_first_token_timeout_without_retries_left_is_a_retryable_timeout(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.stall())

    started = time.monotonic()
    error = await fail(make_provider(first_token_timeout_s=0.3, max_retries=0))

    assert (error.code, error.retryable) == ("timeout", True)
    assert "first-token" in error.message
    assert 0.3 <= time.monotonic() - started < 0.7


async def test_stall_after_first_token_hits_the_total_timeout_and_is_not_retried(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.stall(after_deltas=1))
    texts: list[str] = []

    started = time.monotonic()
    error = await fail(make_provider(first_token_timeout_s=0.2, total_timeout_s=0.6), texts)

    assert texts == ["Hello"]
    assert (error.code, error.retryable) == ("timeout", True)
    assert "total" in error.message
    assert 0.6 <= time.monotonic() - started < 1.0
    assert len(fake_openai.requests) == 1


# ------------------------------------------------------------------ failures mid-stream
async def test_connection_cut_after_text_is_stream_interrupted_and_not_retried(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.cut(after_deltas=2))
    texts: list[str] = []

    error = await fail(make_provider(), texts)

    assert texts == ["Hello", ", "]
    assert (error.code, error.retryable) == ("stream_interrupted", True)
    assert len(fake_openai.requests) == 1


async def test_connection_cut_before_any_text_is_retried(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.cut(after_deltas=0), Reply.text(["again"]))

    texts, _ = await collect(make_provider())

    assert texts == ["again"]
    assert len(fake_openai.requests) == 2


async def test_a_clean_end_without_finish_reason_or_done_after_text_is_stream_interrupted(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.truncated(after_deltas=1))
    texts: list[str] = []

    error = await fail(make_provider(), texts)

    assert texts == ["Hello"]
    assert (error.code, error.retryable) == ("stream_interrupted", True)
    assert "[DONE]" in error.message
    assert len(fake_openai.requests) == 1


async def test_a_clean_end_before_any_text_is_retried(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.truncated(after_deltas=0), Reply.text(["whole"]))

    texts, _ = await collect(make_provider())

    assert texts == ["whole"]
    assert len(fake_openai.requests) == 2


async def test_error_chunk_before_any_text_is_retried(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.sse_error("server_error"), Reply.text(["recovered"]))

    texts, _ = await collect(make_provider())

    assert texts == ["recovered"]
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize(
    ("error_type", "code"),
    [("invalid_request_error", None), ("BadRequestError", 400)],
    ids=["openai-style", "vllm-style"],
)
async def test_error_chunk_of_a_permanent_kind_maps_to_bad_request_and_is_not_retried(
    fake_openai: FakeOpenAI, make_provider: MakeProvider, error_type: str, code: int | None
) -> None:
    fake_openai.script(Reply.sse_error(error_type, code=code, message="prompt too long"))

    error = await fail(make_provider())

    assert (error.code, error.retryable) == ("bad_request", False)
    assert "prompt too long" in error.message
    assert len(fake_openai.requests) == 1


async def test_error_chunk_after_text_is_stream_interrupted_and_not_retried(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.sse_error("server_error", after_deltas=1, message="engine died"))
    texts: list[str] = []

    error = await fail(make_provider(), texts)

    assert texts == ["Hello"]
    assert (error.code, error.retryable) == ("stream_interrupted", True)
    assert "engine died" in error.message
    assert len(fake_openai.requests) == 1


# ------------------------------------------------------------------ consumer goes away
async def test_closing_the_generator_closes_the_upstream_call_at_once(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.stall(after_deltas=1, seconds=10))
    answer = make_provider(total_timeout_s=10).stream(PROMPT)

    assert await anext(answer) == TextDelta("Hello")
    stopped = time.monotonic()
    await answer.aclose()  # type: ignore[attr-defined]

    closed_at = await fake_openai.requests[0].wait_client_closed(timeout=1.0)
    assert closed_at - stopped < 1.0


async def test_cancelling_the_consumer_task_closes_the_upstream_call_at_once(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    fake_openai.script(Reply.stall(after_deltas=1, seconds=10))
    provider = make_provider(total_timeout_s=10)
    first_text = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(PROMPT):
            first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), timeout=1.0)
    stopped = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    closed_at = await fake_openai.requests[0].wait_client_closed(timeout=1.0)
    assert closed_at - stopped < 1.0


# --------------------------------------------------------------------------- no server
async def test_refused_connection_is_upstream_unreachable_after_retries(
    make_provider: MakeProvider,
) -> None:
    with structlog.testing.capture_logs() as logs:
        error = await fail(make_provider(openai_base_url=closed_port_url() + "/v1", max_retries=2))

    assert (error.code, error.retryable) == ("upstream_unreachable", True)
    assert "3 attempts" in error.message
    retries = [e for e in logs if e["event"] == "provider_retry" and e["code"] == "upstream_unreachable"]
    assert [(e["provider"], e["attempt"]) for e in retries] == [("openai", 1), ("openai", 2)]


@pytest.fixture
def unanswered_url() -> Iterator[str]:
    """A loopback port whose listen backlog is full, so a new connection attempt hangs
    unanswered (Linux drops the SYN) instead of being refused."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = [socket.socket() for _ in range(3)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    for sock in [*fillers, listener]:
        sock.close()


async def test_a_connection_that_is_never_accepted_hits_the_connect_timeout(
    make_provider: MakeProvider, unanswered_url: str
) -> None:
    started = time.monotonic()
    error = await fail(
        make_provider(
            openai_base_url=unanswered_url, connect_timeout_s=0.2, first_token_timeout_s=1.0, max_retries=0
        )
    )

    assert (error.code, error.retryable) == ("timeout", True)
    assert "connect timeout" in error.message
    assert time.monotonic() - started < 0.6


# ------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("missing", ["KB_GENERATION__OPENAI_BASE_URL", "KB_GENERATION__OPENAI_MODEL"])
def test_provider_openai_without_base_url_or_model_fails_when_the_settings_load(
    tmp_path: Path, missing: str
) -> None:
    """Before the model loads, not when the provider is built after it."""
    environ = {
        "KB_GENERATION__PROVIDER": "openai",
        "KB_GENERATION__OPENAI_BASE_URL": "http://127.0.0.1:11434/v1",
        "KB_GENERATION__OPENAI_MODEL": "llama3.1:8b",
    }
    del environ[missing]

    with pytest.raises(ConfigError, match=missing.removeprefix("KB_GENERATION__").lower()):
        load_settings(environ=environ, config_dir=tmp_path)


def test_a_base_url_without_a_scheme_is_a_config_error_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"KB_GENERATION__OPENAI_BASE_URL": "localhost:11434/v1"}, config_dir=tmp_path)

    assert "generation.openai_base_url" in caught.value.message
    assert "KB_GENERATION__OPENAI_BASE_URL" in caught.value.message


async def test_configured_from_the_environment_it_streams_with_the_key_it_was_given(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = load_settings(
        environ={
            "KB_GENERATION__PROVIDER": "openai",
            "KB_GENERATION__OPENAI_BASE_URL": fake_openai.base_url,
            "KB_GENERATION__OPENAI_MODEL": "llama3.1:8b",
            "OPENAI_API_KEY": API_KEY,
        },
        config_dir=tmp_path,
    )
    provider = build_provider(settings)
    try:
        texts = [item.text async for item in provider.stream(PROMPT) if isinstance(item, TextDelta)]
    finally:
        await provider.aclose()

    assert isinstance(provider, OpenAIProvider)
    assert provider.model == "llama3.1:8b"
    assert texts == ["This is ", "a fake ", "answer."]
    (request,) = fake_openai.requests
    assert request.api_key == API_KEY
    assert request.body["model"] == "llama3.1:8b"
    assert API_KEY not in repr(settings.secrets)
    assert API_KEY not in repr(provider)


def test_auto_does_not_pick_the_openai_provider(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "KB_GENERATION__OPENAI_BASE_URL": "http://127.0.0.1:11434/v1",
            "KB_GENERATION__OPENAI_MODEL": "llama3.1:8b",
            "OPENAI_API_KEY": API_KEY,
        },
        config_dir=tmp_path,
    )

    assert settings.generation.provider == "auto"
    assert isinstance(build_provider(settings), ExtractiveProvider)
