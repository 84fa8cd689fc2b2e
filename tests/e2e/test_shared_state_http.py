"""Two instances, one state: what one app instance keeps is what the other finds.

With Redis, two apps run on loopback against one real redis-server, each over its own copy of
the ingested store (as two hosts behind a load balancer would): a conversation started on one
continues on the other, an answer cached by one is served by the other (``done.cached``) until
an ingest bumps the index version, and an answer given by one is rated through the other. With
the local state file, the same tests run against one instance (which is all a file serves). Two
real API keys (declared by hash, anonymous access off) show that a conversation and an answer
stay their key's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.access.testing import declared_key, with_keys
from app.answers import bump_index_version
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from app.settings import Settings
from tests.e2e.conftest import settings_for
from tests.e2e.servers import LiveServer, live_server
from tests.e2e.sse import Stream, assert_event_grammar, read_stream
from tests.fakes.state import Backend, state_backend

__all__ = ["state_backend"]  # the fixture, found by name in this module

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

QUESTION = "How do I install on Linux?"
ALICE, ALICE_ENTRY = declared_key("alice")
BOB, BOB_ENTRY = declared_key("bob")


class Instances:
    """The apps under test and the settings they were built from."""

    def __init__(self, servers: list[LiveServer], settings: Settings) -> None:
        self.first = servers[0]
        self.second = servers[-1]
        self.settings = settings


@pytest.fixture
def instances(
    state_backend: Backend, tmp_path: Path, ingested_store: Path, embedder: SentenceTransformerEmbedder
) -> Iterator[Instances]:
    count = 2 if state_backend.shared_between_instances else 1
    with ExitStack() as stack:
        servers = []
        for number in range(count):
            data_dir = tmp_path / f"instance{number}"
            shutil.copytree(ingested_store, data_dir)  # each instance its own store, as on two hosts
            settings = with_keys(
                settings_for(data_dir, state_backend.environ), ALICE_ENTRY, BOB_ENTRY, anonymous=False
            )
            servers.append(stack.enter_context(live_server(create_app(settings, embedder=embedder))))
        yield Instances(servers, settings)


def ask(server: LiveServer, key: str, body: dict[str, Any]) -> Stream:
    with (
        httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(30.0, connect=2.0)) as client,
        client.stream("POST", "/ask", json=body, headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        assert response.status_code == 200, response.read()
        stream = read_stream(response)
    assert_event_grammar(stream.kinds)
    return stream


def post(server: LiveServer, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(30.0, connect=2.0)) as client:
        return client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})


def test_a_conversation_started_on_one_instance_continues_on_the_other(instances: Instances) -> None:
    first = ask(instances.first, ALICE, {"question": QUESTION})
    conversation_id = first.one("done")["conversation_id"]

    follow_up = ask(
        instances.second, ALICE, {"question": "and on macOS?", "conversation_id": conversation_id}
    )

    # The extractive answerer: the follow-up is searched with the first question's words.
    assert follow_up.one("retrieval")["question"] == "and on macOS? install Linux"
    assert follow_up.one("retrieval")["status"] == "ok"
    assert follow_up.one("done")["conversation_id"] == conversation_id


def test_another_keys_conversation_is_not_found_on_any_instance(instances: Instances) -> None:
    conversation_id = ask(instances.first, ALICE, {"question": QUESTION}).one("done")["conversation_id"]

    refused = post(
        instances.second, BOB, "/ask", {"question": "and on macOS?", "conversation_id": conversation_id}
    )

    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"


def test_an_answer_cached_by_one_instance_is_served_by_the_other_until_an_ingest(
    instances: Instances,
) -> None:
    fresh = ask(instances.first, ALICE, {"question": QUESTION})
    assert fresh.one("done")["cached"] is False

    replayed = ask(instances.second, BOB, {"question": "  how do I install on linux "})

    done = replayed.one("done")
    assert done["cached"] is True
    assert replayed.answer == fresh.answer
    assert replayed.one("retrieval")["sources"] == fresh.one("retrieval")["sources"]
    assert done["citations"] == fresh.one("done")["citations"]
    assert done["request_id"] != fresh.one("done")["request_id"]

    # What `kb ingest` does once it has written or deleted anything.
    bump_index_version(instances.settings)

    after = ask(instances.second, ALICE, {"question": QUESTION})
    assert after.one("done")["cached"] is False
    assert ask(instances.first, ALICE, {"question": QUESTION}).one("done")["cached"] is True


def test_an_answer_given_by_one_instance_is_rated_through_the_other_by_its_asker_only(
    instances: Instances,
) -> None:
    request_id = ask(instances.first, ALICE, {"question": QUESTION}).one("done")["request_id"]

    assert post(instances.second, BOB, f"/ask/{request_id}/feedback", {"rating": "up"}).status_code == 404
    rated = post(
        instances.second, ALICE, f"/ask/{request_id}/feedback", {"rating": "down", "comment": "Use pipx."}
    )

    assert rated.status_code == 201, rated.text
    assert rated.json()["request_id"] == request_id
    assert rated.json()["rating"] == "down"
