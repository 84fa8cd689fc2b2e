"""AnthropicProvider against a fake Messages API, over real loopback HTTP.

The real ``anthropic`` SDK runs unmodified; only the server is fake. Timeouts and backoffs are
tiny so every test finishes in well under two seconds.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import structlog.testing

from app.errors import ProviderError
from app.generation.anthropic import AnthropicProvider
from app.generation.base import TextDelta, Usage
from app.prompting import Message, Prompt
from app.settings import GenerationSettings
from tests.fakes.anthropic_server import FakeAnthropic, Reply, closed_port_url

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]

API_KEY = "sk-ant-test-0123456789"
PROMPT = Prompt(
    version="v1",
    system="Answer only from the sources.",
    messages=(Message("user", "How do I rotate the API keys?"),),
    question="How do I rotate the API keys?",
    retrieval_status="ok",
)
FAST = {
    "model": "claude-test-model",
    "max_tokens": 321,
    "temperature": 0.3,
    "connect_timeout_s": 0.5,
    "first_token_timeout_s": 0.3,
    "total_timeout_s": 1.5,
    "max_retries": 2,
    "retry_backoff_s": 0.01,
}

MakeProvider = Callable[..., AnthropicProvider]


@pytest.fixture
async def make_provider(fake_anthropic: FakeAnthropic) -> AsyncIterator[MakeProvider]:
    """Build providers aimed at the fake (``FAST`` settings, overridable); closed afterwards."""
    made: list[AnthropicProvider] = []

    def make(**overrides: Any) -> AnthropicProvider:
        options = {**FAST, "base_url": fake_anthropic.base_url, **overrides}
        made.append(AnthropicProvider(GenerationSettings(**options), API_KEY))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


async def collect(provider: AnthropicProvider) -> tuple[list[str], list[Usage]]:
    texts: list[str] = []
    usages: list[Usage] = []
    async for item in provider.stream(PROMPT):
        if isinstance(item, TextDelta):
            assert not usages, "text after usage"
            texts.append(item.text)
        else:
            usages.append(item)
    return texts, usages


async def fail(provider: AnthropicProvider, texts: list[str] | None = None) -> ProviderError:
    """Run the stream to its ProviderError, keeping any text that came first in ``texts``."""
    with pytest.raises(ProviderError) as caught:  # noqa: PT012 - the error comes mid-stream
        async for item in provider.stream(PROMPT):
            if isinstance(item, TextDelta) and texts is not None:
                texts.append(item.text)
    return caught.value


# ------------------------------------------------------------------------------- happy path
async def test_text_deltas_arrive_in_order_followed_by_one_usage(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.text(["Hel", "lo", ", world"], input_tokens=12, output_tokens=5))

    texts, usages = await collect(make_provider())

    assert texts == ["Hel", "lo", ", world"]
    assert usages == [Usage(input_tokens=12, output_tokens=5)]


async def test_request_carries_model_system_messages_limits_and_the_api_key(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    await collect(make_provider())

    (request,) = fake_anthropic.requests
    assert request.path == "/v1/messages"
    assert request.api_key == API_KEY
    assert "anthropic-version" in request.headers
    assert request.body == {
        "model": "claude-test-model",
        "max_tokens": 321,
        "temperature": 0.3,
        "system": "Answer only from the sources.",
        "messages": [{"role": "user", "content": "How do I rotate the API keys?"}],
        "stream": True,
    }


# ---------------------------------------------------------------------- retries before text
@pytest.mark.parametrize("status", [429, 529, 500])
async def test_transient_http_error_is_retried_then_answered(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider, status: int
) -> None:
    fake_anthropic.script(Reply.error(status, retry_after=0), Reply.text(["fine"]))

    texts, _ = await collect(make_provider())

    assert texts == ["fine"]
    assert len(fake_anthropic.requests) == 2


async def test_retry_waits_as_long_as_retry_after_says(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.error(429, retry_after=0.3), Reply.text(["ok"]))

    await collect(make_provider(retry_backoff_s=0.0))

    first, second = fake_anthropic.requests
    assert 0.3 <= second.received_at - first.received_at < 0.6


async def test_without_retry_after_the_backoff_doubles(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.error(500), Reply.error(500), Reply.text(["ok"]))

    await collect(make_provider(retry_backoff_s=0.15))

    first_wait, second_wait = (
        b.received_at - a.received_at
        for a, b in zip(fake_anthropic.requests, fake_anthropic.requests[1:], strict=False)
    )
    assert 0.15 <= first_wait < 0.3 <= second_wait < 0.5


@pytest.mark.parametrize(
    ("status", "code"), [(429, "rate_limited"), (529, "overloaded"), (500, "upstream_error")]
)
async def test_when_retries_run_out_the_last_error_is_raised_as_retryable(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider, status: int, code: str
) -> None:
    fake_anthropic.script(*[Reply.error(status, retry_after=0)] * 3)

    error = await fail(make_provider(max_retries=2))

    assert (error.code, error.retryable) == (code, True)
    assert "3 attempts" in error.message
    assert len(fake_anthropic.requests) == 3


async def test_retry_after_beyond_the_total_budget_fails_at_once(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.error(429, retry_after=30))

    started = time.monotonic()
    error = await fail(make_provider())

    assert (error.code, error.retryable) == ("rate_limited", True)
    assert time.monotonic() - started < 0.5
    assert len(fake_anthropic.requests) == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "bad_request"), (401, "provider_auth"), (403, "provider_auth"), (404, "model_not_found")],
)
async def test_client_errors_are_not_retried(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider, status: int, code: str
) -> None:
    fake_anthropic.script(Reply.error(status))

    error = await fail(make_provider())

    assert (error.code, error.retryable) == (code, False)
    assert len(fake_anthropic.requests) == 1


async def test_the_api_key_never_appears_in_an_error(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.error(401, message=f"invalid x-api-key: {API_KEY}"))

    error = await fail(make_provider())

    assert error.code == "provider_auth"
    assert API_KEY not in str(error)


# --------------------------------------------------------------------------------- timeouts
@pytest.mark.parametrize("before_headers", [False, True], ids=["after-headers", "no-response"])
async def test_stall_before_first_token_times_out_and_is_retried(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider, before_headers: bool
) -> None:
    fake_anthropic.script(Reply.stall(before_headers=before_headers), Reply.text(["late"]))

    started = time.monotonic()
    texts, _ = await collect(make_provider(first_token_timeout_s=0.3))

    assert texts == ["late"]
    stalled, retried = fake_anthropic.requests
    assert 0.3 <= retried.received_at - started < 0.7
    assert stalled.client_closed_at is not None  # the stalled call was abandoned, not leaked


async def test_first_token_timeout_without_retries_left_is_a_retryable_timeout(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.stall())

    started = time.monotonic()
    error = await fail(make_provider(first_token_timeout_s=0.3, max_retries=0))

    assert (error.code, error.retryable) == ("timeout", True)
    assert "first-token" in error.message
    assert 0.3 <= time.monotonic() - started < 0.7


async def test_stall_after_first_token_hits_the_total_timeout_and_is_not_retried(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.stall(after_deltas=1))
    texts: list[str] = []

    started = time.monotonic()
    error = await fail(make_provider(first_token_timeout_s=0.2, total_timeout_s=0.6), texts)

    assert texts == ["Hello"]
    assert (error.code, error.retryable) == ("timeout", True)
    assert "total" in error.message
    assert 0.6 <= time.monotonic() - started < 1.0
    assert len(fake_anthropic.requests) == 1


# ------------------------------------------------------------------ failures mid-stream
async def test_connection_cut_after_text_is_stream_interrupted_and_not_retried(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.cut(after_deltas=2))
    texts: list[str] = []

    error = await fail(make_provider(), texts)

    assert texts == ["Hello", ", "]
    assert (error.code, error.retryable) == ("stream_interrupted", True)
    assert len(fake_anthropic.requests) == 1


async def test_connection_cut_before_any_text_is_retried(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.cut(after_deltas=0), Reply.text(["again"]))

    texts, _ = await collect(make_provider())

    assert texts == ["again"]
    assert len(fake_anthropic.requests) == 2


async def test_error_event_before_any_text_is_retried(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.sse_error("overloaded_error"), Reply.text(["recovered"]))

    texts, _ = await collect(make_provider())

    assert texts == ["recovered"]
    assert len(fake_anthropic.requests) == 2


async def test_error_event_of_a_permanent_type_maps_by_type_and_is_not_retried(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.sse_error("invalid_request_error"))

    error = await fail(make_provider())

    assert (error.code, error.retryable) == ("bad_request", False)
    assert len(fake_anthropic.requests) == 1


async def test_error_event_after_text_is_stream_interrupted_and_not_retried(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.sse_error("overloaded_error", after_deltas=1))
    texts: list[str] = []

    error = await fail(make_provider(), texts)

    assert texts == ["Hello"]
    assert (error.code, error.retryable) == ("stream_interrupted", True)
    assert "overloaded_error" in error.message
    assert len(fake_anthropic.requests) == 1


# ------------------------------------------------------------------ consumer goes away
async def test_closing_the_generator_closes_the_upstream_call_at_once(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.stall(after_deltas=1, seconds=10))
    answer = make_provider(total_timeout_s=10).stream(PROMPT)

    assert await anext(answer) == TextDelta("Hello")
    stopped = time.monotonic()
    await answer.aclose()  # type: ignore[attr-defined]

    closed_at = await fake_anthropic.requests[0].wait_client_closed(timeout=1.0)
    assert closed_at - stopped < 1.0


async def test_cancelling_the_consumer_task_closes_the_upstream_call_at_once(
    fake_anthropic: FakeAnthropic, make_provider: MakeProvider
) -> None:
    fake_anthropic.script(Reply.stall(after_deltas=1, seconds=10))
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

    closed_at = await fake_anthropic.requests[0].wait_client_closed(timeout=1.0)
    assert closed_at - stopped < 1.0


# --------------------------------------------------------------------------- no server
async def test_refused_connection_is_upstream_unreachable_after_retries(
    make_provider: MakeProvider,
) -> None:
    with structlog.testing.capture_logs() as logs:
        error = await fail(make_provider(base_url=closed_port_url(), max_retries=2))

    assert (error.code, error.retryable) == ("upstream_unreachable", True)
    assert "3 attempts" in error.message
    retries = [e for e in logs if e["event"] == "provider_retry" and e["code"] == "upstream_unreachable"]
    assert [e["attempt"] for e in retries] == [1, 2]


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
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    for sock in [*fillers, listener]:
        sock.close()


async def test_a_connection_that_is_never_accepted_hits_the_connect_timeout(
    make_provider: MakeProvider, unanswered_url: str
) -> None:
    started = time.monotonic()
    error = await fail(
        make_provider(
            base_url=unanswered_url, connect_timeout_s=0.2, first_token_timeout_s=1.0, max_retries=0
        )
    )

    assert (error.code, error.retryable) == ("timeout", True)
    assert "connect timeout" in error.message
    assert time.monotonic() - started < 0.6
