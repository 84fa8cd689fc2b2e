"""Request records of runs that end otherwise than in an answer: the model fails, the client goes
away. Against the fake Anthropic API (the real SDK, the real wire format) on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.access.testing import declared_key, with_keys
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from tests.e2e.conftest import _copy_of, settings_for
from tests.e2e.servers import LiveServer, live_server
from tests.fakes.anthropic_server import FakeAnthropic, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ADMIN, ADMIN_ENTRY = declared_key("ops", role="admin")
QUESTION = "How do I install on Linux?"


@pytest.fixture
def server(
    tmp_path: Path, ingested_store: Path, embedder: SentenceTransformerEmbedder, fake_anthropic: FakeAnthropic
) -> Iterator[LiveServer]:
    settings = settings_for(
        _copy_of(ingested_store, tmp_path / "data"),
        {"ANTHROPIC_API_KEY": "sk-ant-e2e-0123456789"},
        generation={
            "provider": "anthropic",
            "base_url": fake_anthropic.base_url,
            "model": "claude-e2e",
            "max_retries": 0,
            "first_token_timeout_s": 5.0,
        },
    )
    with live_server(create_app(with_keys(settings, ADMIN_ENTRY), embedder=embedder)) as live:
        yield live


def record_of(client: httpx.Client, request_id: str) -> dict[str, Any]:
    give_up = time.monotonic() + 10
    while True:
        response = client.get(f"/admin/requests/{request_id}", headers={"Authorization": f"Bearer {ADMIN}"})
        if response.status_code != 404 or time.monotonic() > give_up:
            assert response.status_code == 200, response.text
            record: dict[str, Any] = response.json()
            return record
        time.sleep(0.05)


def test_a_model_answer_records_the_usage_the_model_reported(
    server: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(
        Reply.text(["Use a virtual ", "environment [1]."], input_tokens=321, output_tokens=7)
    )
    with httpx.Client(base_url=server.base_url, timeout=15.0) as client:
        answered = client.post("/ask", json={"question": QUESTION, "stream": False})
        record = record_of(client, answered.json()["request_id"])

    assert (
        record["outcome"] == "done" and record["provider"] == "anthropic" and record["model"] == "claude-e2e"
    )
    assert (record["input_tokens"], record["output_tokens"]) == (321, 7)
    assert record["finish_reason"] == "stop" and record["citations"] == [1]


def test_a_model_failure_is_recorded_with_its_error_after_the_retrieval_that_preceded_it(
    server: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(Reply.error(401))
    with httpx.Client(base_url=server.base_url, timeout=15.0) as client:
        answered = client.post("/ask", json={"question": QUESTION, "stream": False})
        record = record_of(client, answered.json()["request_id"])

    assert answered.json()["error"]["code"] == record["error"]["code"]
    assert record["outcome"] == "error" and record["finish_reason"] == "error"
    assert record["retrieval_status"] == "ok" and record["context"]  # retrieval was not the problem
    assert "generate" in [stage["name"] for stage in record["stages"]]


def test_a_client_that_goes_away_mid_answer_leaves_a_cancelled_record(
    server: LiveServer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(Reply.text([f"word{i} " for i in range(40)], delay=0.25))  # ~10 s in full
    with httpx.Client(base_url=server.base_url, timeout=15.0) as client:
        with client.stream("POST", "/ask", json={"question": QUESTION}) as response:
            request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if line.startswith("event: delta"):
                    break  # the first delta has arrived: hang up
        record = record_of(client, request_id)

    assert record["outcome"] == "cancelled" and record["finish_reason"] == "cancelled"
    assert record["error"] is None and record["first_token_ms"] is not None
    assert 0 < record["output_tokens"] < 40  # what was streamed before the client left, estimated
