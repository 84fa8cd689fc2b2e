"""A store that could not be opened at start-up is opened by the first request that needs it.

``kb serve`` can start while ``kb ingest`` holds the embedded store. Each ``/ask`` then reports
retrieval ``error`` (not a failed request); once the store is free, the next ``/ask`` opens it,
with no readiness probe in between, and with the same embedding-model check as start-up.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.embedding import Embedder
from app.http import create_app
from app.store import open_store
from tests.e2e.conftest import settings_for
from tests.e2e.servers import live_server
from tests.e2e.sse import read_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

QUESTION = "How do I install on Linux?"


def ask(client: httpx.Client) -> dict[str, Any]:
    with client.stream("POST", "/ask", json={"question": QUESTION}) as response:
        assert response.status_code == 200, response.read()
        return read_stream(response).one("retrieval")


def test_a_store_locked_at_start_up_is_opened_by_the_first_ask_after_it_is_freed(
    tmp_path: Path, ingested_store: Path, embedder: Embedder
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(ingested_store, data_dir)
    settings = settings_for(data_dir)
    holder = open_store(settings)  # stands in for a running `kb ingest`
    try:
        with (
            live_server(create_app(settings, embedder=embedder)) as server,
            httpx.Client(base_url=server.base_url, timeout=15.0) as client,
        ):
            locked = ask(client)
            assert locked["status"] == "error"
            assert locked["sources"] == []

            holder.close()
            opened = ask(client)  # no /health/ready in between
            assert opened["status"] == "ok"
            assert opened["sources"]
            assert client.get("/health/ready").status_code == 200
    finally:
        holder.close()


def test_a_store_reopened_on_demand_is_refused_when_another_model_filled_it(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = settings_for(tmp_path / "data")
    holder = open_store(settings)
    try:
        with (
            live_server(create_app(settings, embedder=embedder)) as server,
            httpx.Client(base_url=server.base_url, timeout=15.0) as client,
        ):
            # While the app waits for the store, another model's ingestion fills it.
            holder.ensure_collection(model_name="some-other-model", dimension=embedder.dimension)
            holder.close()

            retrieval = ask(client)
            assert retrieval["status"] == "error"
            ready = client.get("/health/ready")
            assert ready.status_code == 503
            assert any("some-other-model" in reason for reason in ready.json()["reasons"])
    finally:
        holder.close()
