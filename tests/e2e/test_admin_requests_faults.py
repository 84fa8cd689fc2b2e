"""Request records when the state store fails: the answer is unaffected, the failure is logged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from app.access.testing import declared_key, with_keys
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from tests.e2e.conftest import _copy_of, settings_for
from tests.e2e.servers import live_server
from tests.services.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ADMIN, ADMIN_ENTRY = declared_key("ops", role="admin")


def wait_for(predicate: Any, give_up_s: float = 10.0) -> bool:
    deadline = time.monotonic() + give_up_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_record_that_cannot_be_written_is_logged_and_the_answer_is_unaffected(
    tmp_path: Path,
    ingested_store: Path,
    embedder: SentenceTransformerEmbedder,
    restartable: RedisServer,
    redis_url: str,
) -> None:
    settings = with_keys(
        settings_for(_copy_of(ingested_store, tmp_path / "data"), {"REDIS_URL": redis_url}), ADMIN_ENTRY
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with (
        live_server(create_app(settings, embedder=embedder)) as server,
        httpx.Client(base_url=server.base_url, timeout=15.0) as client,
    ):
        before = client.post("/ask", json={"question": "How do I install on Linux?", "stream": False})
        assert before.status_code == 200
        kept = before.json()["request_id"]
        assert wait_for(lambda: client.get(f"/admin/requests/{kept}", headers=admin).status_code == 200)

        restartable.stop()
        with capture_logs() as logs:
            during = client.post("/ask", json={"question": "What is in the notes?", "stream": False})
            lost = during.json()["request_id"]
            assert wait_for(lambda: any(line["event"] == "background_job_failed" for line in logs))
            failed = [line for line in logs if line["event"] == "background_job_failed"]
        restartable.start()  # (an empty one: the test server keeps nothing on disk)
        again = client.post("/ask", json={"question": "Which formats can be ingested?", "stream": False})
        recovered = again.json()["request_id"]
        # The post-response worker outlived the failure: the next record is written again.
        assert wait_for(lambda: client.get(f"/admin/requests/{recovered}", headers=admin).status_code == 200)

    assert during.status_code == 200, during.text
    answer = during.json()
    assert answer["error"] is None and answer["retrieval_status"] == "ok" and answer["answer"]
    assert [(line["job"], line["request_id"]) for line in failed] == [("request_record", lost)]
    assert "StateUnavailableError" in failed[0]["error"]
