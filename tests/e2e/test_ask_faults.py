"""Faults, injected at the network level: the store unreachable or hanging, the model API
failing, the client hanging up. None of them may fail a request that was already accepted.

The store faults point ``QDRANT_URL`` at a closed loopback port or at a black-hole server that
accepts connections and never answers; the model faults run the real Anthropic provider (real
SDK) against the wire-level fake Messages API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import StartApp
from tests.e2e.servers import BlackHole, LiveServer
from tests.e2e.sse import Stream, assert_event_grammar, read_stream
from tests.fakes.anthropic_server import FakeAnthropic, Reply, closed_port_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

QUESTION = "How do I install on Linux?"
API_KEY = "sk-ant-e2e-0123456789"


def http(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(15.0, connect=2.0))


def ask(client: httpx.Client, body: dict[str, Any] | None = None) -> tuple[httpx.Response, Stream]:
    with client.stream("POST", "/ask", json=body or {"question": QUESTION}) as response:
        assert response.status_code == 200, response.read()
        return response, read_stream(response)


# --------------------------------------------------------------------------- store unreachable


@pytest.fixture
def unreachable_store_app(start_app: StartApp) -> Iterator[LiveServer]:
    with start_app(environ={"QDRANT_URL": closed_port_url()}) as server:
        yield server


def test_with_the_store_unreachable_the_answer_says_the_kb_could_not_be_consulted(
    unreachable_store_app: LiveServer,
) -> None:
    with http(unreachable_store_app) as client:
        _, stream = ask(client)

    assert_event_grammar(stream.kinds)
    retrieval = stream.one("retrieval")
    assert retrieval["status"] == "error"
    assert retrieval["sources"] == []
    assert "could not be searched" in stream.answer
    assert stream.kinds[-1] == "done"  # a fallback answer, not a failed request


def test_with_the_store_unreachable_ready_is_503_with_reasons_and_live_stays_200(
    unreachable_store_app: LiveServer,
) -> None:
    with http(unreachable_store_app) as client:
        ready = client.get("/health/ready")
        live = client.get("/health/live")

    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready"
    assert ready.json()["store"] == "unavailable"
    assert any("unreachable" in reason for reason in ready.json()["reasons"])
    assert live.status_code == 200


# --------------------------------------------------------------------------- store hanging


@pytest.fixture
def hanging_store_app(start_app: StartApp) -> Iterator[LiveServer]:
    with (
        BlackHole() as hole,
        start_app(
            environ={"QDRANT_URL": hole.url},
            retrieval={"timeout_s": 0.5},
            server={"heartbeat_s": 0.1},
            store={"timeout_s": 1.0},  # start-up's own probe of the store gives up after this
        ) as server,
    ):
        yield server


def test_with_a_hanging_store_retrieval_times_out_and_the_answer_says_so(
    hanging_store_app: LiveServer,
) -> None:
    started = time.monotonic()
    with http(hanging_store_app) as client:
        _, stream = ask(client)
    elapsed = time.monotonic() - started

    assert_event_grammar(stream.kinds)
    retrieval = stream.one("retrieval")
    assert retrieval["status"] == "timeout"
    assert 450 <= retrieval["took_ms"] < 2_000
    assert "timeout" in stream.answer
    assert stream.kinds[-1] == "done"
    assert elapsed < 5  # the 0.5 s budget, not the store client's own timeout, bounds the wait


def test_heartbeat_comments_flow_while_retrieval_waits(hanging_store_app: LiveServer) -> None:
    with http(hanging_store_app) as client:
        _, stream = ask(client)

    # 0.5 s of waiting at a 0.1 s heartbeat: several comments, at the very least one.
    assert len(stream.comments_before_first_event) >= 1
    assert all(line.startswith(": ") for line in stream.comments_before_first_event)
    assert stream.kinds[0] == "retrieval"


def test_with_a_hanging_store_the_json_answer_reports_the_timeout(hanging_store_app: LiveServer) -> None:
    with http(hanging_store_app) as client:
        response = client.post("/ask", json={"question": QUESTION, "stream": False})
        ready = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["retrieval_status"] == "timeout"
    assert "timeout" in response.json()["answer"]
    assert ready.status_code == 503


# --------------------------------------------------------------------------- model API faults


@pytest.fixture
def anthropic_app(start_app: StartApp, fake_anthropic: FakeAnthropic) -> Iterator[LiveServer]:
    with start_app(
        environ={"ANTHROPIC_API_KEY": API_KEY},
        generation={
            "provider": "anthropic",
            "base_url": fake_anthropic.base_url,
            "model": "claude-e2e",
            "max_retries": 1,
            "retry_backoff_s": 0.01,
            "connect_timeout_s": 1.0,
            "first_token_timeout_s": 5.0,
            "total_timeout_s": 20.0,
        },
    ) as server:
        yield server


def test_the_model_answer_streams_through_with_its_usage(
    anthropic_app: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(
        Reply.text(["Use a virtual ", "environment [1]."], input_tokens=321, output_tokens=7)
    )

    with http(anthropic_app) as client:
        _, stream = ask(client)

    assert_event_grammar(stream.kinds)
    assert stream.answer == "Use a virtual environment [1]."
    done = stream.one("done")
    assert done["usage"] == {"input_tokens": 321, "output_tokens": 7}
    assert done["citations"] == [1] and done["model"] == "claude-e2e"
    (request,) = fake_anthropic.requests
    assert request.api_key == API_KEY
    assert QUESTION in str(request.body["messages"])


def test_a_client_that_hangs_up_after_the_first_delta_closes_the_model_call_within_a_second(
    anthropic_app: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(
        Reply.text([f"word{i} " for i in range(40)], delay=0.25)
    )  # ~10 s if read to the end

    with http(anthropic_app) as client:
        with client.stream("POST", "/ask", json={"question": QUESTION}) as response:
            kinds: list[str] = []
            for line in response.iter_lines():
                if line.startswith("event:"):
                    kinds.append(line.removeprefix("event:").strip())
                if kinds[-1:] == ["delta"] and line.startswith("data:"):
                    break  # the first delta has arrived: hang up
        hung_up_at = time.monotonic()  # leaving ``stream`` closed the unfinished connection

        assert kinds == ["retrieval", "delta"]
        (upstream,) = fake_anthropic.requests
        closed_at = _wait_for(lambda: upstream.client_closed_at, timeout=3.0)
        assert closed_at - hung_up_at < 1.0
        assert upstream.finished_at is None  # the answer was abandoned, not read to its end

        # The service is unharmed: the next question gets a whole answer.
        _, stream = ask(client)
    assert stream.kinds[-1] == "done"


def test_a_rejected_api_key_ends_the_stream_with_one_non_retryable_error(
    anthropic_app: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(Reply.error(401))

    with http(anthropic_app) as client:
        _, stream = ask(client)

    assert stream.kinds == ["retrieval", "error"]
    error = stream.one("error")
    assert error["code"] == "provider_auth"
    assert error["retryable"] is False
    assert error["message"] and API_KEY not in error["message"]
    assert len(fake_anthropic.requests) == 1  # an auth failure is not retried


def test_an_overloaded_model_api_is_retried_then_reported_as_retryable(
    anthropic_app: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(Reply.error(529), Reply.error(529))  # max_retries = 1: two attempts

    with http(anthropic_app) as client:
        _, stream = ask(client)

    assert stream.kinds == ["retrieval", "error"]
    error = stream.one("error")
    assert error["code"] == "overloaded"
    assert error["retryable"] is True
    assert len(fake_anthropic.requests) == 2


def test_a_provider_failure_in_a_json_answer_is_reported_in_its_error_field(
    anthropic_app: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(Reply.error(401))

    with http(anthropic_app) as client:
        response = client.post("/ask", json={"question": QUESTION, "stream": False})

    assert response.status_code == 200
    body = response.json()
    assert body["retrieval_status"] == "ok" and body["sources"]
    assert body["error"]["code"] == "provider_auth" and body["error"]["retryable"] is False


def _wait_for(read: Callable[[], float | None], *, timeout: float) -> float:
    give_up = time.monotonic() + timeout
    while (value := read()) is None:
        assert time.monotonic() < give_up, f"nothing within {timeout}s"
        time.sleep(0.005)
    return value
