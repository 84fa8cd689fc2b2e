"""Follow-up questions over HTTP: ``conversation_id`` continues a conversation, the follow-up is
made standalone before retrieval and the ``retrieval`` event says what was searched.

With the offline extractive answerer the follow-up is searched with the previous question's
words; with Claude (the real provider and SDK against the wire-level fake Messages API) a
condense call rewrites it first, and when that call fails the words are used instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import StartApp
from tests.e2e.servers import LiveServer
from tests.e2e.sse import Stream, assert_event_grammar, read_stream
from tests.fakes.anthropic_server import FakeAnthropic, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

QUESTION = "How do I install on Linux?"
FOLLOW_UP = "and on macOS?"
API_KEY = "sk-ant-e2e-0123456789"


def ask(server: LiveServer, body: dict[str, Any]) -> Stream:
    with (
        httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(30.0, connect=2.0)) as client,
        client.stream("POST", "/ask", json=body) as response,
    ):
        assert response.status_code == 200, response.read()
        stream = read_stream(response)
    assert_event_grammar(stream.kinds)
    return stream


# -- the extractive answerer ----------------------------------------------------------------------


def test_a_follow_up_is_searched_with_the_previous_questions_words(client: httpx.Client) -> None:
    first = client.post("/ask", json={"question": QUESTION, "stream": False}).json()

    follow_up = client.post(
        "/ask", json={"question": FOLLOW_UP, "stream": False, "conversation_id": first["conversation_id"]}
    )

    assert follow_up.status_code == 200
    answer = follow_up.json()
    assert answer["searched"] == "and on macOS? install Linux"
    assert answer["conversation_id"] == first["conversation_id"]
    assert answer["retrieval_status"] == "ok"
    assert any(source["source"].endswith("guide.md") for source in answer["sources"])


def test_a_third_question_follows_up_on_the_second(client: httpx.Client) -> None:
    first = client.post("/ask", json={"question": QUESTION, "stream": False}).json()
    conversation = {"stream": False, "conversation_id": first["conversation_id"]}
    client.post("/ask", json={"question": FOLLOW_UP, **conversation})

    third = client.post("/ask", json={"question": "any extra steps?", **conversation}).json()

    assert third["searched"] == "any extra steps? macOS install Linux"


def test_an_unknown_conversation_is_refused_with_404_before_anything_is_streamed(
    client: httpx.Client,
) -> None:
    response = client.post("/ask", json={"question": FOLLOW_UP, "conversation_id": "0123456789abcdef"})

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_found"


def test_a_malformed_conversation_id_is_a_bad_request(client: httpx.Client) -> None:
    response = client.post("/ask", json={"question": FOLLOW_UP, "conversation_id": "../etc/passwd"})

    assert response.status_code == 400
    assert response.json()["error"]["detail"] == {"field": "conversation_id"}


# -- Claude -------------------------------------------------------------------------------------------


@pytest.fixture
def claude_app(start_app: StartApp, fake_anthropic: FakeAnthropic) -> Iterator[LiveServer]:
    with start_app(
        environ={"ANTHROPIC_API_KEY": API_KEY},
        generation={
            "provider": "anthropic",
            "base_url": fake_anthropic.base_url,
            "model": "claude-e2e",
            "max_retries": 0,
            "connect_timeout_s": 1.0,
            "first_token_timeout_s": 5.0,
            "total_timeout_s": 20.0,
        },
    ) as server:
        yield server


def conversation_with_claude(server: LiveServer, fake_anthropic: FakeAnthropic, condense: Reply) -> Stream:
    """A first question, then a follow-up whose condense call gets ``condense``."""
    fake_anthropic.script(Reply.text(["Use a virtual ", "environment [1]."]))
    first = ask(server, {"question": QUESTION})
    fake_anthropic.script(condense, Reply.text(["Install Python 3.11 ", "with Homebrew [1]."]))
    return ask(server, {"question": FOLLOW_UP, "conversation_id": first.one("done")["conversation_id"]})


def test_with_claude_a_condense_call_rewrites_the_follow_up_before_retrieval(
    claude_app: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    follow_up = conversation_with_claude(
        claude_app, fake_anthropic, Reply.text(["How do I install on macOS?"])
    )

    assert follow_up.one("retrieval")["question"] == "How do I install on macOS?"
    assert follow_up.answer == "Install Python 3.11 with Homebrew [1]."
    _, condense, answer = fake_anthropic.requests
    assert condense.body["system"].startswith("You rewrite the last message of a conversation")
    assert QUESTION in condense.body["messages"][0]["content"]
    assert "Use a virtual environment [1]." in condense.body["messages"][0]["content"]
    assert f"Last message: {FOLLOW_UP}" in condense.body["messages"][0]["content"]
    # The answer is asked for the standalone question: the model sees no earlier turns.
    assert "How do I install on macOS?" in answer.body["messages"][0]["content"]


def test_with_claude_failing_the_condense_call_the_follow_up_is_searched_with_the_words(
    claude_app: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    follow_up = conversation_with_claude(claude_app, fake_anthropic, Reply.error(400))

    assert follow_up.one("retrieval")["question"] == "and on macOS? install Linux"
    assert follow_up.answer == "Install Python 3.11 with Homebrew [1]."  # the answer still comes
    assert len(fake_anthropic.requests) == 3


def test_with_claude_answers_are_not_cached_by_default(
    claude_app: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(Reply.text(["One [1]."]), Reply.text(["Two [1]."]))

    first, second = ask(claude_app, {"question": QUESTION}), ask(claude_app, {"question": QUESTION})

    assert (first.answer, second.answer) == ("One [1].", "Two [1].")
    assert first.one("done")["cached"] is second.one("done")["cached"] is False
    assert len(fake_anthropic.requests) == 2
