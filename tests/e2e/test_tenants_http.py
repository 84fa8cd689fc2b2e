"""Tenant isolation over real HTTP: two tenants' keys ask the same question of one service.

Both teams keep ``docs/handbook.md`` and ``docs/secret.md`` with different content, and a policy
is shared with everyone. Each key gets its own tenant's documents and the shared one, in
streamed and in whole answers, and request filters naming the other tenant's paths reach only
the caller's own documents of those paths. The keys are declared in configuration by hash, as a
static deployment does; anonymous access is off.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.access.testing import declared_key, with_keys
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from app.store import SHARED_TENANT, open_store
from ingest.runner import Ingestor
from tests.e2e.conftest import settings_for
from tests.e2e.servers import LiveServer, live_server
from tests.e2e.sse import assert_event_grammar, read_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

QUESTION = "How many days of paid holiday do staff get?"
DOCUMENTS = {
    "acme": {
        "handbook.md": "# Holidays\n\nAcme staff get 30 days of paid holiday a year.\n",
        "secret.md": "# Holidays code name\n\nThe holiday code name of Acme is Redwood.\n",
    },
    "beta": {
        "handbook.md": "# Holidays\n\nBeta staff get 20 days of paid holiday a year.\n",
        "secret.md": "# Holidays code name\n\nThe holiday code name of Beta is Bluebird.\n",
    },
    SHARED_TENANT: {"holidays.md": "# Public holidays\n\nStaff of every team get public holidays off.\n"},
}
OWN = {"acme": ("30 days", "Redwood"), "beta": ("20 days", "Bluebird")}
"""What only each tenant's documents say."""

FILTERS: list[dict[str, Any] | None] = [
    None,
    {"sources": ["docs/handbook.md", "docs/secret.md"]},
    {"source_prefix": "docs"},
    {"source_prefix": "docs/handbook.md"},  # a path both tenants have
]


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """The service over a store holding both tenants' documents and the shared one, and a key
    per tenant."""
    root = tmp_path_factory.mktemp("tenants")
    settings = settings_for(root / "data")
    store = open_store(settings)
    try:
        ingestor = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest)
        for tenant, pages in DOCUMENTS.items():
            folder = root / (tenant if tenant != SHARED_TENANT else "everyone") / "docs"
            folder.mkdir(parents=True)
            for name, body in pages.items():
                (folder / name).write_text(body)
            assert ingestor.ingest_paths([folder], tenant=tenant).new == len(pages)
    finally:
        store.close()  # the app opens the store itself; the embedded one admits one client
    acme_key, acme = declared_key("acme-intranet", tenant="acme")
    beta_key, beta = declared_key("beta-intranet", tenant="beta")
    app = create_app(with_keys(settings, acme, beta, anonymous=False), embedder=embedder)
    with live_server(app) as server:
        yield server, {"acme": acme_key, "beta": beta_key}


def ask(
    server: LiveServer, key: str, body: dict[str, Any], *, stream: bool
) -> tuple[str, list[dict[str, Any]]]:
    """The answer's text and its sources, streamed or whole."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(
        base_url=server.base_url, headers=headers, timeout=httpx.Timeout(30.0, connect=2.0)
    ) as http:
        if stream:
            with http.stream("POST", "/ask", json=body) as response:
                assert response.status_code == 200, response.read()
                events = read_stream(response)
            assert_event_grammar(events.kinds)
            return events.answer, events.one("retrieval")["sources"]
        response = http.post("/ask", json={**body, "stream": False})
        assert response.status_code == 200, response.text
        whole = response.json()
        return whole["answer"], whole["sources"]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("filters", FILTERS, ids=["unfiltered", "other-paths", "prefix", "one-path"])
def test_each_key_gets_only_its_tenants_and_the_shared_documents(
    service: tuple[LiveServer, dict[str, str]], filters: dict[str, Any] | None, stream: bool
) -> None:
    server, keys = service
    body: dict[str, Any] = {"question": QUESTION, **({"filters": filters} if filters else {})}
    for tenant, other in (("acme", "beta"), ("beta", "acme")):
        answer, sources = ask(server, keys[tenant], body, stream=stream)

        seen = answer + "\n".join(s["snippet"] for s in sources)
        assert sources, f"{tenant} found nothing"
        assert any(phrase in seen for phrase in OWN[tenant]), seen
        assert not any(phrase in seen for phrase in OWN[other]), f"{tenant} saw {other}'s documents: {seen}"


def test_the_shared_document_reaches_every_tenant(service: tuple[LiveServer, dict[str, str]]) -> None:
    server, keys = service
    for tenant in ("acme", "beta"):
        _, sources = ask(
            server, keys[tenant], {"question": "Do staff get public holidays off?"}, stream=False
        )
        assert "docs/holidays.md" in {s["source"] for s in sources}


def test_without_a_key_nothing_is_retrieved(service: tuple[LiveServer, dict[str, str]]) -> None:
    server, _ = service
    response = httpx.post(f"{server.base_url}/ask", json={"question": QUESTION, "stream": False}, timeout=10)
    assert response.status_code == 401
