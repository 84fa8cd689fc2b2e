"""Who may call what, over loopback, in the production configuration and in the local demo.

One production app serves the module: keys declared in its configuration by hash (user, admin,
widget, expired) and keys made with ``kb keys create`` in its state file, the way an operator
would, which the running app must honour, and stop honouring once revoked, on the next request.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from click.testing import CliRunner

from app.access.testing import bearer, declared_key
from app.cli import cli
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from app.logs import configure_logging
from app.settings import StaticKeySettings
from tests.e2e.conftest import StartApp, settings_for
from tests.e2e.servers import LiveServer, live_server
from tests.e2e.sse import read_stream
from tests.services.logging_state import logging_restored

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

QUESTION = {"question": "How do I install on Linux?", "stream": False}
PORTAL = "https://portal.example.com"
FOREIGN = "https://evil.example.net"
PRODUCTION = {"KB_ENV": "production"}


@dataclass
class Keys:
    user: str
    admin: str
    widget: str
    expired: str
    entries: tuple[StaticKeySettings, ...]


@dataclass
class Deployment:
    server: LiveServer
    environ: dict[str, str]
    """What ``kb`` needs to manage this deployment's keys (its env and data folder)."""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, timeout=httpx.Timeout(30.0, connect=2.0))

    def kb(self, *args: str) -> Any:
        env: dict[str, str | None] = {"REDIS_URL": None, **self.environ}
        return CliRunner().invoke(cli, ["keys", *args], env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def keys() -> Keys:
    user, user_entry = declared_key("user", tenant="default")
    admin, admin_entry = declared_key("admin", role="admin")
    widget, widget_entry = declared_key("portal", role="widget", origins=(PORTAL,))
    expired, expired_entry = declared_key("old", expires_at="2020-01-01T00:00:00+00:00")
    return Keys(user, admin, widget, expired, (user_entry, admin_entry, widget_entry, expired_entry))


@pytest.fixture(scope="module")
def production(
    tmp_path_factory: pytest.TempPathFactory,
    ingested_store: Path,
    embedder: SentenceTransformerEmbedder,
    keys: Keys,
) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("production") / "data"
    shutil.copytree(ingested_store, data_dir)
    environ = {**PRODUCTION, "KB_DATA_DIR": str(data_dir)}
    settings = settings_for(
        data_dir, PRODUCTION, access={"keys": [msgspec.to_builtins(e) for e in keys.entries]}
    )
    assert settings.env == "production" and not settings.access.anonymous
    with live_server(create_app(settings, embedder=embedder)) as server:
        yield Deployment(server, environ)


# --------------------------------------------------------------------------- 401


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/ask"), ("GET", "/health/ready"), ("GET", "/schema/openapi.json"), ("GET", "/schema")],
)
def test_production_refuses_every_data_endpoint_without_a_key(
    production: Deployment, method: str, path: str
) -> None:
    with production.client() as client:
        response = client.request(method, path, json=QUESTION if method == "POST" else None)

    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "kb keys create" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Authorization": "Bearer hunter2"}, "malformed API key"),
        ({"X-API-Key": "kb_0123456789ab_" + "A" * 43}, "unknown API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "must be `Bearer <API key>`"),
        ({"Authorization": "Bearer"}, "must be `Bearer <API key>`"),
    ],
    ids=["malformed", "unknown", "basic", "empty bearer"],
)
def test_production_refuses_a_key_that_is_not_one(
    production: Deployment, headers: dict[str, str], why: str
) -> None:
    with production.client() as client:
        response = client.post("/ask", json=QUESTION, headers=headers)

    assert response.status_code == 401
    assert why in response.json()["error"]["message"]


def test_a_key_with_the_right_id_and_a_wrong_secret_is_unknown(production: Deployment, keys: Keys) -> None:
    forged = keys.user[:-4] + ("AAAA" if not keys.user.endswith("AAAA") else "BBBB")

    with production.client() as client:
        response = client.post("/ask", json=QUESTION, headers=bearer(forged))

    assert response.status_code == 401 and response.json()["error"]["message"] == "unknown API key"
    assert forged not in response.text


def test_an_expired_key_is_refused(production: Deployment, keys: Keys) -> None:
    with production.client() as client:
        response = client.post("/ask", json=QUESTION, headers=bearer(keys.expired))

    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


# --------------------------------------------------------------------------- what keys may do


def test_a_user_key_asks_by_either_header(production: Deployment, keys: Keys) -> None:
    with production.client() as client:
        by_bearer = client.post("/ask", json=QUESTION, headers=bearer(keys.user))
        by_header = client.post("/ask", json=QUESTION, headers={"X-API-Key": keys.user})

    assert by_bearer.status_code == 200, by_bearer.text
    # An answer, whatever retrieval found in time (a loaded machine may time it out): access is the point.
    assert by_header.status_code == 200 and "retrieval_status" in by_header.json()


def test_liveness_and_the_widget_files_need_no_key(production: Deployment) -> None:
    with production.client() as client:
        for path in ("/health/live", "/", "/widget.js"):
            assert client.get(path).status_code == 200, path


def test_readiness_tells_a_user_key_the_status_only_and_an_admin_key_the_details(
    production: Deployment, keys: Keys
) -> None:
    with production.client() as client:
        as_user = client.get("/health/ready", headers=bearer(keys.user))
        as_admin = client.get("/health/ready", headers=bearer(keys.admin))

    assert as_user.status_code == as_admin.status_code == 200
    assert as_user.json() == {"status": "ready", "details": "admin keys only"}
    details = as_admin.json()
    assert details["status"] == "ready" and {"model", "store", "reasons"} <= details.keys()


def test_the_api_documents_are_for_admin_keys_and_the_html_pages_are_not_served(
    production: Deployment, keys: Keys
) -> None:
    with production.client() as client:
        as_user = client.get("/schema/openapi.json", headers=bearer(keys.user))
        as_admin = client.get("/schema/openapi.json", headers=bearer(keys.admin))
        yaml_doc = client.get("/schema/openapi.yaml", headers=bearer(keys.admin))
        pages = [client.get(f"/schema/{page}", headers=bearer(keys.admin)) for page in ("swagger", "redoc")]

    assert as_user.status_code == 403 and as_user.json()["error"]["code"] == "forbidden"
    assert as_admin.status_code == 200 and "/ask" in as_admin.json()["paths"]
    assert yaml_doc.status_code == 200 and "openapi:" in yaml_doc.text
    for page in pages:
        assert page.status_code == 404
        assert "cdn" not in page.text.lower() and "<script" not in page.text.lower()


# --------------------------------------------------------------------------- widget keys and CORS


def test_a_widget_key_works_from_its_origin_with_cors_headers_for_it(
    production: Deployment, keys: Keys
) -> None:
    with production.client() as client:
        response = client.post("/ask", json=QUESTION, headers={**bearer(keys.widget), "Origin": PORTAL})

    assert response.status_code == 200, response.text
    assert response.headers["Access-Control-Allow-Origin"] == PORTAL
    assert "Origin" in response.headers["Vary"]
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]


def test_a_streamed_answer_to_an_allowed_origin_carries_the_cors_headers(
    production: Deployment, keys: Keys
) -> None:
    body = {"question": QUESTION["question"]}
    with (
        production.client() as client,
        client.stream(
            "POST", "/ask", json=body, headers={**bearer(keys.widget), "Origin": PORTAL}
        ) as response,
    ):
        stream = read_stream(response)

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["Access-Control-Allow-Origin"] == PORTAL
    assert stream.kinds[0] == "retrieval" and stream.kinds[-1] == "done"


@pytest.mark.parametrize("origin", [FOREIGN, None], ids=["foreign origin", "no origin"])
def test_a_widget_key_is_refused_from_another_origin_or_without_one(
    production: Deployment, keys: Keys, origin: str | None
) -> None:
    headers = {**bearer(keys.widget), **({"Origin": origin} if origin else {})}
    with production.client() as client:
        response = client.post("/ask", json=QUESTION, headers=headers)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_preflight_from_a_widget_origin_is_answered_with_the_cors_headers(production: Deployment) -> None:
    with production.client() as client:
        response = client.options(
            "/ask",
            headers={
                "Origin": PORTAL,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == PORTAL
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-api-key", "content-type"} <= allowed
    assert "Origin" in response.headers["Vary"]


def test_a_preflight_from_a_foreign_origin_gets_no_cors_headers(production: Deployment) -> None:
    with production.client() as client:
        response = client.options(
            "/ask", headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST"}
        )

    assert not any(name.lower().startswith("access-control-") for name in response.headers)


def test_a_user_key_on_an_admin_endpoint_is_forbidden(production: Deployment, keys: Keys) -> None:
    with production.client() as client:
        response = client.get("/schema/openapi.yaml", headers={"X-API-Key": keys.user})

    assert response.status_code == 403 and "admin" in response.json()["error"]["message"]


# --------------------------------------------------------------------------- kb keys and the running app


def test_a_key_made_with_kb_keys_create_works_and_its_revocation_is_seen_on_the_next_request(
    production: Deployment,
) -> None:
    created = production.kb("create", "--name", "ops laptop", "--json")
    assert created.exit_code == 0, created.output
    made = json.loads(created.stdout)

    with production.client() as client:
        before = client.post("/ask", json=QUESTION, headers=bearer(made["key"]))
        revoked = production.kb("revoke", made["id"])
        after = client.post("/ask", json=QUESTION, headers=bearer(made["key"]))

    assert before.status_code == 200, before.text
    assert revoked.exit_code == 0, revoked.output
    assert after.status_code == 401 and "revoked" in after.json()["error"]["message"]


def test_a_rotated_key_works_and_the_old_one_stops(production: Deployment) -> None:
    made = json.loads(production.kb("create", "--name", "ci", "--json").stdout)

    rotated = production.kb("rotate", made["id"], "--json")
    fresh = json.loads(rotated.stdout)

    with production.client() as client:
        assert client.post("/ask", json=QUESTION, headers=bearer(fresh["key"])).status_code == 200
        assert client.post("/ask", json=QUESTION, headers=bearer(made["key"])).status_code == 401


def test_a_widget_key_made_with_kb_keys_create_opens_cors_for_its_origin_within_seconds(
    production: Deployment,
) -> None:
    origin = "https://intranet.example.org"
    created = production.kb("create", "--name", "intranet", "--role", "widget", "--origin", origin, "--json")
    made = json.loads(created.stdout)

    with production.client() as client:
        # The request itself is checked against the key's own origins at once.
        answer = client.post("/ask", json=QUESTION, headers={**bearer(made["key"]), "Origin": origin})
        # The origins preflights are answered for are re-read every few seconds.
        give_up = time.monotonic() + 10
        while True:
            preflight = client.options(
                "/ask", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
            )
            if "Access-Control-Allow-Origin" in preflight.headers or time.monotonic() > give_up:
                break
            time.sleep(0.25)

    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == origin
    assert preflight.headers.get("Access-Control-Allow-Origin") == origin


# --------------------------------------------------------------------------- logs


@pytest.fixture
def service_logging() -> Iterator[None]:
    """JSON lines at the service's level, as ``kb serve`` in production; put back afterwards."""
    with logging_restored():
        configure_logging(json_lines=True)
        yield


def test_keys_never_appear_in_the_logs_of_requests_or_of_kb_keys(
    production: Deployment, keys: Keys, service_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    created = production.kb("create", "--name", "logged", "--json")
    made = json.loads(created.stdout)["key"]
    forged = keys.admin[:-4] + ("AAAA" if not keys.admin.endswith("AAAA") else "BBBB")

    with production.client() as client:
        client.post("/ask", json=QUESTION, headers=bearer(made))
        client.post("/ask", json=QUESTION, headers={"X-API-Key": keys.user})
        client.post("/ask", json=QUESTION, headers=bearer(forged))
        client.post("/ask", json=QUESTION, headers={**bearer(keys.widget), "Origin": FOREIGN})
        client.get("/health/ready", headers=bearer(keys.admin))
    logs = capsys.readouterr().err + created.stderr

    assert "answered" in logs  # the requests were logged: there was something to leak into
    for key in (made, keys.user, forged, keys.widget, keys.admin):
        assert key not in logs and key.split("_", 2)[2] not in logs


# --------------------------------------------------------------------------- the local demo


@pytest.fixture
def demo(start_app: StartApp) -> Iterator[LiveServer]:
    with start_app() as server:  # the development configuration
        yield server


def test_the_demo_answers_without_a_key_but_still_checks_a_key_it_is_given(demo: LiveServer) -> None:
    with httpx.Client(base_url=demo.base_url, timeout=30.0) as client:
        anonymous = client.post("/ask", json=QUESTION)
        wrong = client.post("/ask", json=QUESTION, headers=bearer("kb_0123456789ab_" + "A" * 43))
        ready = client.get("/health/ready")
        docs = client.get("/schema/swagger")

    assert anonymous.status_code == 200 and "retrieval_status" in anonymous.json()
    assert wrong.status_code == 401
    assert ready.status_code == 200 and "model" in ready.json()  # the demo shows its details
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
