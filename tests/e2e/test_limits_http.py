"""Rate limits over HTTP: the real app under uvicorn, real keys, in memory and over real Redis.

Keys are declared in configuration by hash (``app.access.testing``), exactly as a static
deployment does. Token budgets are sized from what one answer to ``QUESTION`` costs here
(``answer_cost``: the extractive answerer over the e2e corpus, asked once with limits off), so
that a budget runs out exactly where a test needs it to.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.access.testing import declared_key, with_keys
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from app.settings import StaticKeySettings
from tests.e2e.conftest import settings_for
from tests.e2e.servers import LiveServer, live_server
from tests.e2e.sse import Stream, assert_event_grammar, read_stream
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.services.redis import RedisServer

QUESTION = "How do I install on Linux?"
KEY, ENTRY = declared_key("limited")
NO_CACHE = {"answer_cache": "off"}  # every answer is generated, so every answer costs tokens
NO_TOKEN_LIMITS: dict[str, Any] = {"tenant_tokens": None, "model_tokens": None}

StartKeyed = Callable[..., AbstractContextManager[LiveServer]]


@dataclass(frozen=True)
class Cost:
    prompt: int
    answer: int

    @property
    def total(self) -> int:
        return self.prompt + self.answer


@pytest.fixture
def start_keyed(tmp_path: Path, ingested_store: Path, embedder: SentenceTransformerEmbedder) -> StartKeyed:
    """``with start_keyed(*entries, environ=..., **overrides) as server``: the app on a fresh copy
    of the ingested store, with these keys declared and anonymous access off."""
    copies = itertools.count()

    def start(
        *entries: StaticKeySettings,
        environ: dict[str, str] | None = None,
        anonymous: bool = False,
        **overrides: Any,
    ) -> AbstractContextManager[LiveServer]:
        data_dir = tmp_path / f"data{next(copies)}"
        shutil.copytree(ingested_store, data_dir)
        settings = with_keys(
            settings_for(data_dir, environ, answers=NO_CACHE, **overrides), *entries, anonymous=anonymous
        )
        return live_server(create_app(settings, embedder=embedder))

    return start


@pytest.fixture(scope="module")
def answer_cost(
    tmp_path_factory: pytest.TempPathFactory, ingested_store: Path, embedder: SentenceTransformerEmbedder
) -> Cost:
    """What one answer to ``QUESTION`` costs in tokens (prompt estimate, answer), limits off."""
    data_dir = tmp_path_factory.mktemp("cost") / "data"
    shutil.copytree(ingested_store, data_dir)
    settings = with_keys(
        settings_for(data_dir, answers=NO_CACHE, limits={"enabled": False}), ENTRY, anonymous=False
    )
    with live_server(create_app(settings, embedder=embedder)) as server, client_of(server) as client:
        response = client.post("/ask", json={"question": QUESTION, "stream": False}, headers=auth())
    usage = response.json()["usage"]
    assert "RateLimit" not in response.headers  # limits off: no headers
    assert usage["output_tokens"] >= 20, usage  # long enough to be cut in the middle
    return Cost(prompt=usage["input_tokens"], answer=usage["output_tokens"])


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of an app counting in memory, or in the session's Redis."""
    if request.param == "memory":
        return {}
    return {"REDIS_URL": request.getfixturevalue("redis_url")}


def client_of(server: LiveServer, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(15.0, connect=2.0), **kwargs)


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ask(client: httpx.Client, key: str | None = KEY) -> tuple[httpx.Response, Stream | None]:
    """A streamed ask: the response, and its events when it was a stream (None for a refusal)."""
    headers = auth(key) if key else {}
    with client.stream("POST", "/ask", json={"question": QUESTION}, headers=headers) as response:
        if response.status_code != 200:
            response.read()
            return response, None
        return response, read_stream(response)


def assert_refused(response: httpx.Response, limit: str) -> dict[str, Any]:
    """A 429 naming ``limit``, with Retry-After and the rate-limit headers, sent before any event."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/json")  # not a stream
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["detail"]["limit"] == limit
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["RateLimit-Policy"].startswith(f'"{limit}";q=')
    assert response.headers["RateLimit"].startswith(f'"{limit}";r=0')
    return body


# --------------------------------------------------------------------------- request limits


def test_answers_report_the_request_limit_and_the_one_past_it_is_429(
    start_keyed: StartKeyed, storage: dict[str, str]
) -> None:
    limits = {"default": {"requests": {"ask": "3/minute"}}}
    with start_keyed(ENTRY, environ=storage, limits=limits) as server, client_of(server) as client:
        streamed, stream = ask(client)
        whole = client.post("/ask", json={"question": QUESTION, "stream": False}, headers=auth())
        third, _ = ask(client)
        refused, _ = ask(client)

    assert stream is not None and stream.kinds[-1] == "done"
    # Set before the stream started: headers, then events.
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.headers["RateLimit-Policy"].startswith(
        '"ask";q=3;w=60, "tokens-key";q=50000;w=3600;qu="tokens"'
    )
    assert streamed.headers["RateLimit"].startswith('"ask";r=2;t=')
    assert whole.status_code == 200 and whole.headers["RateLimit"].startswith('"ask";r=1;t=')
    assert third.headers["RateLimit"].startswith('"ask";r=0;t=')
    body = assert_refused(refused, "ask")
    assert "3 requests per minute" in body["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_refusals_are_counted_in_the_metrics_by_the_limit_that_tripped(start_keyed: StartKeyed) -> None:
    admin_key, admin_entry = declared_key("operator", role="admin", tier="unlimited-ops")
    limits = {
        "default": {"requests": {"ask": "1/minute"}},
        "tiers": {"unlimited-ops": {"requests": {}}},
    }
    with start_keyed(ENTRY, admin_entry, limits=limits) as server, client_of(server) as client:
        ask(client)
        refused, _ = ask(client)
        scraped = client.get("/metrics", headers=auth(admin_key))

    assert refused.status_code == 429
    assert scraped.status_code == 200, scraped.text
    assert 'kb_rate_limit_refusals_total{limit="ask"} 1.0' in scraped.text


def test_anonymous_callers_are_limited_per_client_address(start_keyed: StartKeyed) -> None:
    limits = {"anonymous": {"requests": {"ask": "1/minute"}}}
    with start_keyed(anonymous=True, limits=limits) as server:
        with client_of(server) as first_address:
            allowed, _ = ask(first_address, key=None)
            refused, _ = ask(first_address, key=None)
        # Another loopback address is another client (Linux routes all of 127/8 to lo).
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with client_of(server, transport=other) as second_address:
            elsewhere, _ = ask(second_address, key=None)

    assert allowed.status_code == 200 and allowed.headers["RateLimit"].startswith('"ask";r=0')
    assert_refused(refused, "ask")
    assert elsewhere.status_code == 200


# --------------------------------------------------------------------------- token limits


def test_an_answer_that_exhausts_the_token_budget_ends_with_one_error_event_then_429(
    start_keyed: StartKeyed, storage: dict[str, str], answer_cost: Cost
) -> None:
    budget = answer_cost.prompt + answer_cost.answer // 2  # the prompt and half the answer
    limits = {"default": {"requests": {}, "tokens": f"{budget}/hour"}, **NO_TOKEN_LIMITS}
    with start_keyed(ENTRY, environ=storage, limits=limits) as server, client_of(server) as client:
        cut, stream = ask(client)
        refused, _ = ask(client)

    assert cut.status_code == 200 and stream is not None
    assert_event_grammar(stream.kinds)
    assert stream.kinds[1] == "delta" and stream.kinds[-1] == "error"
    error = stream.one("error")
    assert error["code"] == "token_budget_exhausted" and error["retryable"] is True
    assert 0 < len(stream.answer.split()) < answer_cost.answer  # cut in the middle, not dropped
    body = assert_refused(refused, "tokens-key")
    assert "token budget spent" in body["error"]["message"]
    assert refused.headers["RateLimit-Policy"] == f'"tokens-key";q={budget};w=3600;qu="tokens"'
    assert int(refused.headers["Retry-After"]) <= 3600


def test_two_instances_sharing_redis_see_one_request_budget_and_one_token_budget(
    start_keyed: StartKeyed, redis_url: str, answer_cost: Cost
) -> None:
    # Room for one whole answer and half of a second one; four requests a minute.
    budget = answer_cost.total + answer_cost.prompt + answer_cost.answer // 2
    limits = {"default": {"requests": {"ask": "4/minute"}, "tokens": f"{budget}/hour"}, **NO_TOKEN_LIMITS}
    environ = {"REDIS_URL": redis_url}
    with (
        start_keyed(ENTRY, environ=environ, limits=limits) as first,
        start_keyed(ENTRY, environ=environ, limits=limits) as second,
        client_of(first) as a,
        client_of(second) as b,
    ):
        _, whole = ask(a)
        _, cut = ask(b)
        tokens_spent_on_a, _ = ask(a)
        tokens_spent_on_b, _ = ask(b)
        requests_spent_on_a, _ = ask(a)

    assert whole is not None and whole.kinds[-1] == "done"
    assert cut is not None and cut.one("error")["code"] == "token_budget_exhausted"
    assert_refused(tokens_spent_on_a, "tokens-key")
    assert_refused(tokens_spent_on_b, "tokens-key")
    assert_refused(requests_spent_on_a, "ask")  # the fifth request of the minute, over both


# --------------------------------------------------------------------------- answers in progress


def test_an_open_stream_holds_a_slot_until_its_client_leaves(
    start_keyed: StartKeyed, storage: dict[str, str], fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.default = Reply.text([f"word{i} " for i in range(40)], delay=0.25)  # ~10 s each
    limits = {"default": {"requests": {}, "concurrency": 1}}
    generation = {"provider": "anthropic", "base_url": fake_anthropic.base_url, "max_retries": 0}
    environ = {"ANTHROPIC_API_KEY": "test-key", **storage}
    with (
        start_keyed(ENTRY, environ=environ, limits=limits, generation=generation) as server,
        client_of(server) as client,
    ):
        with client.stream("POST", "/ask", json={"question": QUESTION}, headers=auth()) as held:
            assert held.status_code == 200
            lines = held.iter_lines()  # kept: a discarded line iterator would close the connection
            for line in lines:
                if line.startswith("event: delta"):
                    break  # the answer is streaming: its slot is taken
            second, _ = ask(client)
        left_at = time.monotonic()  # leaving ``stream`` hung up on the unfinished answer
        freed = _first_admitted(client, give_up_s=5.0)

    assert_refused(second, "concurrency")
    assert second.headers["RateLimit-Policy"] == '"concurrency";q=1;qu="concurrent-requests"'
    assert freed - left_at < 3.0


def _first_admitted(client: httpx.Client, *, give_up_s: float) -> float:
    """When a request of the key is admitted again (its answer is then abandoned at once)."""
    deadline = time.monotonic() + give_up_s
    while time.monotonic() < deadline:
        with client.stream("POST", "/ask", json={"question": QUESTION}, headers=auth()) as response:
            if response.status_code == 200:
                return time.monotonic()
            response.read()
        time.sleep(0.1)
    raise AssertionError(f"the slot was not released within {give_up_s}s")


# --------------------------------------------------------------------------- Redis down


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_redis_stopped_mid_run_applies_the_configured_policy(
    start_keyed: StartKeyed, restartable: RedisServer, redis_url: str, policy: str
) -> None:
    limits = {
        "storage_failure": policy,
        "redis_timeout_s": 0.25,
        "default": {"requests": {"ask": "30/minute"}},
    }
    with (
        start_keyed(ENTRY, environ={"REDIS_URL": redis_url}, limits=limits) as server,
        client_of(server) as client,
    ):
        before, _ = ask(client)
        restartable.stop()
        started = time.monotonic()
        during, stream = ask(client)
        took = time.monotonic() - started
        ready = client.get("/health/ready", headers=auth())
        restartable.start()

    assert before.status_code == 200 and "RateLimit" in before.headers
    assert took < 5.0  # bounded: no call waits past its timeout (the state store's included)
    if policy == "fail_open":
        assert during.status_code == 200 and stream is not None
        assert_event_grammar(stream.kinds)
        assert "RateLimit" not in during.headers  # nothing was counted, nothing is claimed
        assert ready.json()["limits"] == "fail_open"
    else:
        assert during.status_code == 503, during.text
        assert during.json()["error"]["code"] == "state_unavailable"
        assert int(during.headers["Retry-After"]) >= 1
        assert ready.status_code == 503
        assert ready.json()["limits"] == "unavailable"
        assert any("rate-limit storage" in reason for reason in ready.json()["reasons"])
