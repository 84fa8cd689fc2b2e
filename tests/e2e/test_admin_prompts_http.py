"""``/admin/prompts`` over HTTP with real keys, and the version that answers ``/ask`` after a move.

One app on the local state file; then two apps sharing one real ``redis-server``, where a label
moved through one is followed by the other within ``prompts.refresh_s``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.access.testing import declared_key, with_keys
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from tests.e2e.conftest import _copy_of, settings_for
from tests.e2e.servers import LiveServer, live_server
from tests.e2e.sse import assert_event_grammar, read_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ADMIN, ADMIN_ENTRY = declared_key("ops", role="admin")
USER, USER_ENTRY = declared_key("team")
QUESTION = "How do I install on Linux?"
REFRESH_S = 0.5


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def serve(
    data_dir: Path, embedder: SentenceTransformerEmbedder, environ: dict[str, str] | None = None
) -> Any:
    settings = settings_for(data_dir, environ, prompts={"refresh_s": REFRESH_S})
    return live_server(
        create_app(with_keys(settings, ADMIN_ENTRY, USER_ENTRY, anonymous=False), embedder=embedder)
    )


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ingested_store: Path, embedder: SentenceTransformerEmbedder
) -> Iterator[LiveServer]:
    with serve(_copy_of(ingested_store, tmp_path_factory.mktemp("prompts") / "data"), embedder) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(20.0, connect=2.0)) as http:
        yield http


def streamed_version(client: httpx.Client, key: str = USER, headers: dict[str, str] | None = None) -> str:
    """The ``prompt_version`` of the done event of one streamed answer."""
    with client.stream(
        "POST", "/ask", json={"question": QUESTION}, headers={**bearer(key), **(headers or {})}
    ) as response:
        assert response.status_code == 200, response.read()
        stream = read_stream(response)
    assert_event_grammar(stream.kinds)
    version: str = stream.one("done")["prompt_version"]
    return version


def move(client: httpx.Client, label: str, version: str, key: str = ADMIN) -> httpx.Response:
    return client.post(
        f"/admin/prompts/answer/labels/{label}", json={"version": version}, headers=bearer(key)
    )


def test_the_admin_endpoints_need_an_admin_key(client: httpx.Client) -> None:
    assert client.get("/admin/prompts").status_code == 401
    assert client.get("/admin/prompts", headers=bearer(USER)).status_code == 403
    refused = move(client, "production", "v2", key=USER)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert client.post("/admin/prompts/answer/labels/production/rollback").status_code == 401
    assert streamed_version(client) == "answer@v1"  # nothing moved


def test_the_listing_shows_prompts_versions_and_labels(client: httpx.Client) -> None:
    response = client.get("/admin/prompts", headers=bearer(ADMIN))
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["label"] == "production" and shown["refresh_s"] == REFRESH_S
    answer = next(p for p in shown["prompts"] if p["name"] == "answer")
    assert {"condense"} <= {p["name"] for p in shown["prompts"]}
    versions = {v["version"]: v for v in answer["versions"]}
    assert {"v1", "v2"} <= versions.keys()
    assert versions["v1"]["released"] is True and versions["v1"]["hash"].startswith("sha256:")
    assert versions["v1"]["description"]
    production = next(label for label in answer["labels"] if label["label"] == "production")
    assert production["followed"] is True and production["version"] in ("v1", "v2")


def test_a_moved_label_answers_the_next_question_and_a_rollback_restores_it(client: httpx.Client) -> None:
    moved = move(client, "production", "v2")
    try:
        assert moved.status_code == 200, moved.text
        body = moved.json()
        assert (body["version"], body["previous"], body["action"], body["changed"]) == (
            "v2",
            "v1",
            "promote",
            True,
        )
        assert body["by"] == f"ops (key {ADMIN_ENTRY.id})"

        assert streamed_version(client) == "answer@v2"
        whole = client.post("/ask", json={"question": QUESTION, "stream": False}, headers=bearer(USER))
        assert whole.status_code == 200 and whole.json()["prompt_version"] == "answer@v2"

        shown = client.get("/admin/prompts", headers=bearer(ADMIN)).json()
        answer = next(p for p in shown["prompts"] if p["name"] == "answer")
        production = next(label for label in answer["labels"] if label["label"] == "production")
        assert (production["version"], production["moved"], production["rollback_to"]) == ("v2", True, "v1")
        assert production["by"] == f"ops (key {ADMIN_ENTRY.id})" and production["at"].endswith("Z")
    finally:
        rolled = client.post("/admin/prompts/answer/labels/production/rollback", headers=bearer(ADMIN))
    assert rolled.status_code == 200 and rolled.json()["version"] == "v1"
    assert streamed_version(client) == "answer@v1"
    again = client.post("/admin/prompts/answer/labels/production/rollback", headers=bearer(ADMIN))
    assert again.status_code == 422 and "no earlier version" in again.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "code"),
    [
        ("/admin/prompts/answer/labels/production", {"json": {"version": "v9"}}, 422, "invalid_request"),
        ("/admin/prompts/summary/labels/production", {"json": {"version": "v1"}}, 404, "not_found"),
        ("/admin/prompts/answer/labels/Prod!", {"json": {"version": "v1"}}, 400, None),
        ("/admin/prompts/answer/labels/production", {"json": {"version": "v2", "x": 1}}, 400, None),
        ("/admin/prompts/answer/labels/production", {"json": {}}, 400, None),
        (
            "/admin/prompts/answer/labels/production",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            400,
            None,
        ),
        ("/admin/prompts/answer/labels/production", {"content": b'{"version": "v2"}'}, 415, None),
    ],
    ids=[
        "unknown-version",
        "unknown-prompt",
        "bad-label",
        "unknown-field",
        "no-version",
        "bad-json",
        "not-json",
    ],
)
def test_a_move_that_cannot_be_made_is_refused_and_moves_nothing(
    client: httpx.Client, path: str, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    headers = {**bearer(ADMIN), **kwargs.pop("headers", {})}
    response = client.post(path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["error"]["code"] == code
    assert streamed_version(client) == "answer@v1"


def test_an_admin_may_choose_the_version_per_request(client: httpx.Client) -> None:
    assert streamed_version(client, ADMIN, {"X-KB-Prompt-Version": "answer@v2"}) == "answer@v2"
    assert streamed_version(client, ADMIN, {"X-KB-Prompt-Version": "v2"}) == "answer@v2"
    assert streamed_version(client, USER, {"X-KB-Prompt-Version": "v2"}) == "answer@v1"  # not an admin
    refused = client.post(
        "/ask", json={"question": QUESTION}, headers={**bearer(ADMIN), "X-KB-Prompt-Version": "v9"}
    )
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("application/json")
    assert "unknown prompt version answer@v9" in refused.json()["error"]["message"]


def test_two_instances_on_one_redis_follow_a_label_moved_through_either(
    tmp_path: Path, ingested_store: Path, embedder: SentenceTransformerEmbedder, redis_url: str
) -> None:
    environ = {"REDIS_URL": redis_url}
    with ExitStack() as stack:
        one = stack.enter_context(serve(_copy_of(ingested_store, tmp_path / "one"), embedder, environ))
        two = stack.enter_context(serve(_copy_of(ingested_store, tmp_path / "two"), embedder, environ))
        first = stack.enter_context(httpx.Client(base_url=one.base_url, timeout=20.0))
        second = stack.enter_context(httpx.Client(base_url=two.base_url, timeout=20.0))
        assert streamed_version(second) == "answer@v1"

        assert move(first, "production", "v2").status_code == 200
        moved_at = time.monotonic()
        while (version := streamed_version(second)) != "answer@v2":
            assert time.monotonic() - moved_at < REFRESH_S + 5, version
        assert time.monotonic() - moved_at < REFRESH_S + 5

        rolled = second.post("/admin/prompts/answer/labels/production/rollback", headers=bearer(ADMIN))
        assert rolled.status_code == 200
        moved_at = time.monotonic()
        while streamed_version(first) != "answer@v1":
            assert time.monotonic() - moved_at < REFRESH_S + 5
