"""Readiness reports the state store: a service whose state store does not answer is not ready,
and says why. The real app (real model, embedded store) in-process, the real Redis."""

from __future__ import annotations

import socket
from pathlib import Path

from litestar.testing import TestClient

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def readiness(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, redis_url: str
) -> tuple[int, dict[str, object]]:
    settings = load_settings(
        environ={"KB_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": redis_url, "KB_STATE__TIMEOUT_S": "0.5"}
    )
    with TestClient(create_app(settings, embedder=embedder)) as client:
        response = client.get("/health/ready")
    return response.status_code, response.json()


def test_a_state_store_that_does_not_answer_makes_the_service_not_ready_with_a_reason(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    port = free_port()

    status, body = readiness(tmp_path, embedder, f"redis://:pa55word@127.0.0.1:{port}/0")

    assert status == 503
    assert body["state"] == "unavailable"
    reasons = body["reasons"]
    assert isinstance(reasons, list)
    assert any(f"redis 127.0.0.1:{port}/0 unavailable" in reason for reason in reasons)
    assert "pa55word" not in str(body)


def test_a_state_store_that_answers_is_reported_ok(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, redis_url: str
) -> None:
    status, body = readiness(tmp_path, embedder, redis_url)

    assert body["state"] == "ok"
    assert "state store" not in str(body["reasons"])
    assert status in (200, 503)  # the empty vector store may be what is not ready here
