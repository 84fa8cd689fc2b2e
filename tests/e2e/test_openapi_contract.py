"""The OpenAPI document tells the truth about the API.

schemathesis generates requests from the document, valid ones and deliberately invalid ones
(its examples, coverage and fuzzing phases), sends them over loopback to the real app (real
model, real embedded store), and checks every response against the same document: no 5xx, only
documented status codes, documented content types and headers, bodies (and each streamed event)
matching their schemas, and every invalid request refused. Bounded: a few dozen generated
examples per operation, each within a deadline.

schemathesis builds its tests when this module is collected, before any server runs, so the
document is built then from an app with the project's default settings; the first test checks
that the running app serves exactly that document.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.access.testing import declared_key, with_keys
from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from tests.e2e.conftest import settings_for
from tests.e2e.servers import LiveServer, live_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Deliberately not ``positive_data_acceptance``: a body the schema allows may still be refused
# with a documented 422 (a whitespace-only question, one over the token limit), which a JSON
# Schema cannot express.

# An invalid request is refused with one of these and nothing else (schemathesis's default list
# also takes auth failures and any 5xx): 413 because a generated body may be larger than the
# configured limit and 415 because a request without a body has no JSON content type, neither of
# which a JSON Schema states.
REFUSALS = [400, 413, 415, 422]


def _document() -> dict[str, Any]:
    return create_app(load_settings(environ={})).openapi_schema.to_schema()


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
    ),
)


ADMIN_KEY, ADMIN_ENTRY = declared_key("contract", role="admin")
"""Requests carry an admin key, so that the admin routes are exercised too (not only refused)."""


@pytest.fixture(scope="module")
def contract_server(
    tmp_path_factory: pytest.TempPathFactory, ingested_store: Path, embedder: SentenceTransformerEmbedder
) -> Iterator[LiveServer]:
    """The app with the project's default settings plus one declared admin key."""
    data_dir = tmp_path_factory.mktemp("contract") / "data"
    shutil.copytree(ingested_store, data_dir)
    settings = with_keys(settings_for(data_dir), ADMIN_ENTRY)
    with live_server(create_app(settings, embedder=embedder)) as server:
        yield server


def test_the_running_app_serves_the_document_under_test(contract_server: LiveServer) -> None:
    served = httpx.get(f"{contract_server.base_url}/schema/openapi.json", timeout=15)

    assert served.status_code == 200
    assert served.json() == DOCUMENT
    assert {"/ask", "/health/live", "/health/ready"} <= served.json()["paths"].keys()


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=timedelta(seconds=10),
    database=None,  # no replay of earlier failures: every run generates afresh
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_response_matches_the_document(case: schemathesis.Case, contract_server: LiveServer) -> None:
    case.call_and_validate(
        base_url=contract_server.base_url,
        checks=CHECKS,
        timeout=30,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
