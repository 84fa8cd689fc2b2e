"""``/metrics`` over HTTP: the series after a few real requests, who may read them, the port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.access.testing import declared_key, with_keys
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from tests.e2e.conftest import _copy_of, settings_for
from tests.e2e.servers import LiveServer, live_server
from tests.e2e.sse import read_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ADMIN, ADMIN_ENTRY = declared_key("ops", role="admin")
USER, USER_ENTRY = declared_key("team")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def serve(data_dir: Path, embedder: SentenceTransformerEmbedder, **overrides: Any) -> Any:
    settings = with_keys(settings_for(data_dir, **overrides), ADMIN_ENTRY, USER_ENTRY, anonymous=False)
    return live_server(create_app(settings, embedder=embedder))


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels (parsed by prometheus-client's own parser)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ingested_store: Path, embedder: SentenceTransformerEmbedder
) -> Iterator[LiveServer]:
    with serve(_copy_of(ingested_store, tmp_path_factory.mktemp("metrics") / "data"), embedder) as live:
        yield live


def test_metrics_expose_the_series_of_the_requests_served(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=15.0, headers=bearer(USER)) as client:
        for _ in range(2):  # the second is answered from the answer cache
            with client.stream("POST", "/ask", json={"question": "How do I install on Linux?"}) as response:
                assert response.status_code == 200
                read_stream(response)
        assert client.post("/ask", json={"question": "  "}).status_code == 422
        assert client.get("/no/such/page").status_code == 404
        scrape = client.get("/metrics", headers=bearer(ADMIN))

    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    got = samples(scrape.text)
    assert value(got, "kb_http_requests_total", route="/ask", method="POST", status="200") == 2
    assert value(got, "kb_http_requests_total", route="/ask", method="POST", status="422") == 1
    assert value(got, "kb_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert value(got, "kb_http_request_duration_seconds_count", route="/ask", method="POST") == 3
    assert value(got, "kb_answers_total", outcome="done") == 1
    assert value(got, "kb_answers_total", outcome="cached") == 1
    assert value(got, "kb_answer_cache_lookups_total", result="hit") == 1
    assert value(got, "kb_answer_cache_lookups_total", result="miss") == 1
    assert value(got, "kb_retrievals_total", status="ok") == 2
    for stage in ("validate", "retrieve", "retrieve.embed", "retrieve.search", "rank", "prompt", "generate"):
        assert value(got, "kb_stage_duration_seconds_count", stage=stage) >= 1, stage
    assert value(got, "kb_time_to_first_token_seconds_count", model="extractive-v1") == 1
    assert value(got, "kb_model_tokens_total", model="extractive-v1", type="input") > 0
    assert value(got, "kb_model_tokens_total", model="extractive-v1", type="output") > 0
    # Gauges are back to rest once the streams are closed and the retrievals done.
    assert ("kb_active_streams", frozenset()) in got and value(got, "kb_active_streams") == 0
    assert value(got, "kb_retrieval_queue_depth") == 0
    # Series other parts increment are declared from the start (their names are stable).
    families = {family.name for family in text_string_to_metric_families(scrape.text)}
    assert {
        "kb_rate_limit_refusals",
        "kb_ingest_chunks",
        "kb_ingest_failures",
        "kb_background_queue_depth",
    } <= families


def test_metrics_are_for_admin_keys_only(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=15.0) as client:
        assert client.get("/metrics", headers=bearer(USER)).status_code == 403
        assert client.get("/metrics").status_code == 401


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_metrics_on_their_own_port_need_no_key_and_leave_the_api_port(
    tmp_path: Path, ingested_store: Path, embedder: SentenceTransformerEmbedder
) -> None:
    port = _free_port()
    data_dir = _copy_of(ingested_store, tmp_path / "data")
    with serve(data_dir, embedder, observability={"metrics_port": port}) as live:
        with httpx.Client(base_url=live.base_url, timeout=15.0) as client:
            assert (
                client.post(
                    "/ask", json={"question": "What is in the notes?", "stream": False}, headers=bearer(USER)
                ).status_code
                == 200
            )
            assert client.get("/metrics", headers=bearer(ADMIN)).status_code == 404
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
        assert scrape.status_code == 200
        assert value(samples(scrape.text), "kb_answers_total", outcome="done") == 1
    with pytest.raises(httpx.ConnectError):  # stopped with the app
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0)
