"""Fixtures for end-to-end tests: the real app under uvicorn on loopback, over a real store.

The corpus (``tests/data/mixed``) is ingested once per session with the real ``Ingestor``; each
app gets its own copy of that store folder, because the embedded store is single-process and a
test must not see another test's app holding it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from app.settings import Settings
from app.store import open_store
from ingest.runner import Ingestor
from tests.e2e.servers import LiveServer, live_server
from tests.fakes.anthropic_server import fake_anthropic

__all__ = ["fake_anthropic"]  # re-exported so pytest finds the fixture for this folder

CORPUS = Path(__file__).resolve().parent.parent / "data" / "mixed"

StartApp = Callable[..., AbstractContextManager[LiveServer]]


@pytest.fixture(scope="session")
def ingested_store(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Path:
    """A data folder holding ``tests/data/mixed``, ingested once; copy it, never serve it."""
    data_dir = tmp_path_factory.mktemp("ingested")
    settings = load_settings(environ={"KB_DATA_DIR": str(data_dir)})
    store = open_store(settings)
    try:
        report = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
            [CORPUS]
        )
    finally:
        store.close()  # the app opens the store itself; the embedded one admits one client
    assert report.chunks_written > 0 and report.new >= 3, report
    return data_dir


def _copy_of(ingested: Path, into: Path) -> Path:
    shutil.copytree(ingested, into)  # the lock is an flock on the original; a copy is free
    return into


def settings_for(data_dir: Path, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Project settings (development env) with this data folder, extra environment and overrides.

    The environment is given explicitly, so nothing of the developer's shell (an API key, a
    QDRANT_URL) leaks into a test.
    """
    # Rate limits have their own tests (test_limits_http.py); elsewhere one address asking
    # dozens of questions would trip the demo's tight anonymous limit.
    overrides.setdefault("limits", {"enabled": False})
    return load_settings(environ={"KB_DATA_DIR": str(data_dir), **(environ or {})}, overrides=overrides)


@pytest.fixture
def start_app(tmp_path: Path, ingested_store: Path, embedder: SentenceTransformerEmbedder) -> StartApp:
    """``with start_app(environ=..., **overrides) as server:`` runs the app on a fresh copy of the
    ingested store (or, with ``QDRANT_URL`` in ``environ``, against that server)."""
    copies = iter(range(1_000))

    def start(
        environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> AbstractContextManager[LiveServer]:
        data_dir = _copy_of(ingested_store, tmp_path / f"data{next(copies)}")
        return live_server(create_app(settings_for(data_dir, environ, **overrides), embedder=embedder))

    return start


@pytest.fixture(scope="module")
def kb_server(
    tmp_path_factory: pytest.TempPathFactory, ingested_store: Path, embedder: SentenceTransformerEmbedder
) -> Iterator[LiveServer]:
    """The app with default settings (offline extractive answerer), shared by a module's tests."""
    data_dir = _copy_of(ingested_store, tmp_path_factory.mktemp("kb_server") / "data")
    with live_server(create_app(settings_for(data_dir), embedder=embedder)) as server:
        yield server


@pytest.fixture
def client(kb_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kb_server.base_url, timeout=httpx.Timeout(15.0, connect=2.0)) as http:
        yield http
