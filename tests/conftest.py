"""Shared fixtures and the rules the markers stand for.

* The folder decides the layer marker: ``tests/unit`` are ``unit`` (no model, no store),
  ``tests/integration`` are ``integration`` (real model, real embedded Qdrant, wire-level fakes),
  ``tests/e2e`` are ``e2e`` (HTTP over loopback).
* Every test that uses the real embedding model is ``slow``; a unit test that asks for it is a
  collection error, so ``-m unit`` stays model-free by construction.
* The real model is loaded once per test session.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_client

from app.embedding import SentenceTransformerEmbedder
from app.settings import EmbeddingSettings
from tests.services.redis import RedisServer, redis_server_binary

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

_TESTS = Path(__file__).resolve().parent
_LAYERS = ("unit", "integration", "e2e")
_MODEL_FIXTURES = {"embedder"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced: list[str] = []
    for item in items:
        try:
            layer = Path(str(item.path)).resolve().relative_to(_TESTS).parts[0]
        except ValueError:
            continue
        if layer in _LAYERS and item.get_closest_marker(layer) is None:
            item.add_marker(layer)
        uses_model = bool(_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())))
        if uses_model:
            item.add_marker(pytest.mark.slow)
            if layer == "unit":
                misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(
            "unit tests must not load the embedding model (move them to tests/integration): "
            + ", ".join(misplaced)
        )


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real default model (all-MiniLM-L6-v2 from the offline package)."""
    return SentenceTransformerEmbedder(EmbeddingSettings())


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for the whole session.

    Skipped where redis-server is not installed, except in CI (``CI=true``), where that is a
    set-up failure (scripts/setup installs it).
    """
    if redis_server_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed; scripts/setup --dev installs it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


_next_db = itertools.count(1)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A URL of a Redis database no other test of this session uses (db 1..63, then reused
    after FLUSHDB). The server is restarted first if an earlier test stopped it."""
    redis_server.start()
    db = next(_next_db) % 63 + 1
    client = redis_client.Redis.from_url(redis_server.url(db), socket_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server.url(db)


@pytest.fixture
def restartable(redis_server: RedisServer, redis_url: str) -> Iterator[RedisServer]:
    """The session's Redis for a test that stops it: started again afterwards, whatever happened."""
    try:
        yield redis_server
    finally:
        redis_server.start()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never sends a byte (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in accepted:
            connection.close()
        listener.close()
