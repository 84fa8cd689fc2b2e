"""``GET /admin/requests/{request_id}``: the record of what happened to one request, over HTTP."""

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
from tests.e2e.sse import read_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ADMIN, ADMIN_ENTRY = declared_key("ops", role="admin")
USER, USER_ENTRY = declared_key("team")
LINUX = "How do I install on Linux?"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def serve(data_dir: Path, embedder: SentenceTransformerEmbedder, **overrides: Any) -> Any:
    settings = with_keys(settings_for(data_dir, **overrides), ADMIN_ENTRY, USER_ENTRY, anonymous=False)
    return live_server(create_app(settings, embedder=embedder))


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ingested_store: Path, embedder: SentenceTransformerEmbedder
) -> Iterator[LiveServer]:
    with serve(_copy_of(ingested_store, tmp_path_factory.mktemp("records") / "data"), embedder) as live:
        yield live


def record_of(client: httpx.Client, request_id: str) -> dict[str, Any]:
    """The record, once written (it is written after the response, so it may lag a moment)."""
    give_up = time.monotonic() + 10
    while True:
        response = client.get(f"/admin/requests/{request_id}", headers=bearer(ADMIN))
        if response.status_code != 404 or time.monotonic() > give_up:
            assert response.status_code == 200, response.text
            record: dict[str, Any] = response.json()
            return record
        time.sleep(0.05)


def test_an_answered_request_can_be_looked_up_by_its_id(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=15.0) as client:
        with client.stream("POST", "/ask", json={"question": LINUX}, headers=bearer(USER)) as response:
            assert response.status_code == 200
            stream = read_stream(response)
        done, retrieval = stream.one("done"), stream.one("retrieval")
        record = record_of(client, response.headers["x-request-id"])

    assert record["request_id"] == done["request_id"]
    assert record["outcome"] == "done" and record["cached"] is False and record["error"] is None
    assert record["caller"] == {
        "key_id": USER_ENTRY.id,
        "name": "team",
        "tenant": "default",
        "role": "user",
        "tier": "default",
    }
    assert record["question"] == record["searched"] == LINUX  # text is kept outside production
    assert record["answer"] == stream.answer
    assert record["retrieval_status"] == record["retriever_status"] == retrieval["status"] == "ok"
    assert record["prompt"] == done["prompt_version"] and record["prompt_reason"]
    assert record["provider"] == "extractive" and record["model"] == done["model"]
    assert (record["input_tokens"], record["output_tokens"]) == (
        done["usage"]["input_tokens"],
        done["usage"]["output_tokens"],
    )
    assert record["citations"] == done["citations"] and record["finish_reason"] == "stop"
    # Before ranking: every relevant candidate with its scores; after: what the answer cites.
    assert len(record["candidates"]) >= len(record["context"]) > 0
    assert all({"id", "source", "score"} <= c.keys() for c in record["candidates"])
    assert [c["source"] for c in record["context"]] == [s["source"] for s in retrieval["sources"]]
    assert [c["number"] for c in record["context"]] == [s["id"] for s in retrieval["sources"]]
    assert {c["id"] for c in record["context"]} <= {c["id"] for c in record["candidates"]}
    stages = [stage["name"] for stage in record["stages"]]
    assert stages[:2] == ["validate", "prepare"] and {"retrieve", "rank", "prompt", "generate"} <= set(stages)
    assert record["timings_ms"] == done["timings_ms"]
    assert record["first_token_ms"] is not None and record["first_token_ms"] > 0


def test_the_record_is_for_admin_keys_only(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=15.0) as client:
        answered = client.post(
            "/ask", json={"question": "What is in the notes?", "stream": False}, headers=bearer(USER)
        )
        request_id = answered.json()["request_id"]
        record_of(client, request_id)  # it exists

        as_user = client.get(f"/admin/requests/{request_id}", headers=bearer(USER))
        anonymous = client.get(f"/admin/requests/{request_id}")

    assert as_user.status_code == 403 and as_user.json()["error"]["code"] == "forbidden"
    assert anonymous.status_code == 401


def test_an_unknown_or_malformed_request_id_is_refused(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=15.0) as client:
        unknown = client.get("/admin/requests/no-such-request", headers=bearer(ADMIN))
        malformed = client.get("/admin/requests/" + "x" * 65, headers=bearer(ADMIN))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert malformed.status_code == 404  # no request has such an id


def test_without_record_text_the_record_holds_no_question_or_answer(
    tmp_path: Path, ingested_store: Path, embedder: SentenceTransformerEmbedder
) -> None:
    data_dir = _copy_of(ingested_store, tmp_path / "data")
    with (
        serve(data_dir, embedder, observability={"record_text": False}) as live,
        httpx.Client(base_url=live.base_url, timeout=15.0) as client,
    ):
        answered = client.post("/ask", json={"question": LINUX, "stream": False}, headers=bearer(USER))
        record = record_of(client, answered.json()["request_id"])

    assert record["question"] is None and record["searched"] is None and record["answer"] is None
    assert record["retrieval_status"] == "ok" and record["context"]  # the evidence stays
    assert LINUX not in str(record) and answered.json()["answer"][:40] not in str(record)
