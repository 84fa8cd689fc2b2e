"""``POST /ask/{request_id}/feedback`` over HTTP, from the key that asked, and the export of the
ratings as a QA set while the service runs.

One instance with two real keys (declared by hash, anonymous access off) and the local state
file under its data folder, which ``kb feedback export`` in another connection reads too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from app.access.testing import declared_key, with_keys
from app.cli import cli
from app.embedding import SentenceTransformerEmbedder
from app.evaluation.datasets import QA_QUESTIONS, load_qa
from app.http import create_app
from tests.e2e.conftest import settings_for
from tests.e2e.servers import LiveServer, live_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

QUESTION = "How do I install on Linux?"
ALICE, ALICE_ENTRY = declared_key("alice")
BOB, BOB_ENTRY = declared_key("bob")


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, ingested_store: Path, embedder: SentenceTransformerEmbedder
) -> Iterator[tuple[LiveServer, Path]]:
    data_dir = tmp_path_factory.mktemp("feedback") / "data"
    shutil.copytree(ingested_store, data_dir)
    settings = with_keys(settings_for(data_dir), ALICE_ENTRY, BOB_ENTRY, anonymous=False)
    with live_server(create_app(settings, embedder=embedder)) as server:
        yield server, data_dir


@pytest.fixture
def http(service: tuple[LiveServer, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service[0].base_url, timeout=httpx.Timeout(30.0, connect=2.0)) as client:
        yield client


def as_(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def answered(http: httpx.Client, key: str = ALICE, **body: Any) -> dict[str, Any]:
    response = http.post("/ask", json={"question": QUESTION, "stream": False, **body}, headers=as_(key))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def rate(http: httpx.Client, request_id: str, body: Any, key: str = ALICE, **kwargs: Any) -> httpx.Response:
    return http.post(f"/ask/{request_id}/feedback", json=body, headers=as_(key), **kwargs)


def test_the_asker_rates_an_answer(http: httpx.Client) -> None:
    answer = answered(http)

    rated = rate(http, answer["request_id"], {"rating": "up"})

    assert rated.status_code == 201, rated.text
    assert rated.json() == {
        "request_id": answer["request_id"],
        "rating": "up",
        "prompt_version": answer["prompt_version"],
        "conversation_id": answer["conversation_id"],
    }
    assert rated.headers["x-request-id"]


def test_another_key_cannot_rate_it_and_learns_nothing_about_it(http: httpx.Client) -> None:
    answer = answered(http)

    theirs = rate(http, answer["request_id"], {"rating": "down"}, key=BOB)
    unknown = rate(http, "0123456789abcdef", {"rating": "down"}, key=BOB)

    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"


def test_a_request_without_a_key_is_refused(http: httpx.Client) -> None:
    answer = answered(http)

    response = http.post(f"/ask/{answer['request_id']}/feedback", json={"rating": "up"})

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rating": "meh"}, "rating"),
        ({"rating": 1}, "rating"),
        ({}, ""),
        ({"rating": "up", "comment": 5}, "comment"),
        ({"rating": "up", "comment": "x" * 2001}, "comment"),
        ({"rating": "up", "stars": 5}, "stars"),
    ],
    ids=["unknown-rating", "number", "missing", "comment-type", "comment-too-long", "unknown-field"],
)
def test_a_body_that_is_not_a_rating_is_a_bad_request(
    http: httpx.Client, body: dict[str, Any], field: str
) -> None:
    answer = answered(http)

    response = rate(http, answer["request_id"], body)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_body"
    if field:
        assert response.json()["error"]["detail"] == {"field": field}


def test_a_body_not_declared_as_json_is_refused(http: httpx.Client) -> None:
    answer = answered(http)

    response = http.post(
        f"/ask/{answer['request_id']}/feedback",
        content=b'{"rating": "up"}',
        headers={**as_(ALICE), "content-type": "text/plain"},
    )

    assert response.status_code == 415


def test_a_malformed_request_id_is_a_bad_request(http: httpx.Client) -> None:
    response = rate(http, "not%20an%20id", {"rating": "up"})

    assert response.status_code == 400


def test_the_ratings_are_exported_as_a_qa_set_while_the_service_runs(
    http: httpx.Client, service: tuple[LiveServer, Path], tmp_path: Path
) -> None:
    first = answered(http)
    follow_up = answered(http, question="and on macOS?", conversation_id=first["conversation_id"])
    assert (
        rate(http, follow_up["request_id"], {"rating": "down", "comment": "Use Homebrew."}).status_code == 201
    )

    result = CliRunner().invoke(
        cli,
        ["feedback", "export", "--rating", "down", str(tmp_path / "set")],
        env={"KB_DATA_DIR": str(service[1])},
    )

    assert result.exit_code == 0, result.output
    exported = {item.id: item for item in load_qa(tmp_path / "set" / QA_QUESTIONS)}
    item = exported[follow_up["request_id"]]
    # kb eval asks each question alone: the follow-up is exported as it was searched.
    assert (item.question, item.answers) == ("and on macOS? install Linux", ["Use Homebrew."])
