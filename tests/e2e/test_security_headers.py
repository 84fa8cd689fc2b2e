"""HTTP hygiene: the headers every response carries, HTML policies, no server banner, and an
OpenAPI document that says how to authenticate."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from app.access.testing import bearer, declared_key
from app.http.security import HTML_CSP
from app.http.ui import PAGE_CSP
from tests.e2e.conftest import StartApp
from tests.e2e.servers import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ADMIN, ADMIN_ENTRY = declared_key("admin", role="admin")
PRODUCTION = {"KB_ENV": "production"}
KB = Path(sys.executable).with_name("kb")


@pytest.fixture
def production(start_app: StartApp) -> Iterator[LiveServer]:
    with start_app(PRODUCTION, access={"keys": [msgspec.to_builtins(ADMIN_ENTRY)]}) as server:
        yield server


def test_every_response_says_nosniff_and_sends_no_referrer(production: LiveServer) -> None:
    with httpx.Client(base_url=production.base_url, timeout=30.0) as client:
        responses = {
            "live": client.get("/health/live"),
            "401": client.post("/ask", json={"question": "hi"}),
            "unrouted 404": client.get("/no/such/path"),
            "405": client.delete("/health/live"),
            "page": client.get("/"),
            "widget": client.get("/widget.js"),
            "schema": client.get("/schema/openapi.json", headers=bearer(ADMIN)),
            "answer": client.post(
                "/ask",
                json={"question": "How do I install on Linux?", "stream": False},
                headers=bearer(ADMIN),
            ),
        }
        with client.stream(
            "POST", "/ask", json={"question": "How do I install?"}, headers=bearer(ADMIN)
        ) as stream:
            responses["stream"] = stream
            stream.read()

    assert responses["401"].status_code == 401 and responses["unrouted 404"].status_code == 404
    assert responses["405"].status_code == 405 and responses["stream"].status_code == 200
    for name, response in responses.items():
        assert response.headers.get("X-Content-Type-Options") == "nosniff", name
        assert response.headers.get("Referrer-Policy") == "no-referrer", name


def test_html_carries_a_policy_that_allows_only_what_it_needs(production: LiveServer) -> None:
    with httpx.Client(base_url=production.base_url, timeout=30.0) as client:
        page = client.get("/")
        other_html = client.get("/schema/no-such-page", headers=bearer(ADMIN))

    assert page.headers["Content-Security-Policy"] == PAGE_CSP
    assert other_html.status_code == 404 and other_html.headers["content-type"].startswith("text/html")
    assert other_html.headers["Content-Security-Policy"] == HTML_CSP
    assert "default-src 'none'" in HTML_CSP and "frame-ancestors 'none'" in HTML_CSP


def test_the_production_schema_declares_both_ways_to_send_a_key_and_that_ask_needs_one(
    production: LiveServer,
) -> None:
    with httpx.Client(base_url=production.base_url, timeout=30.0) as client:
        document = client.get("/schema/openapi.json", headers=bearer(ADMIN)).json()

    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    ask = document["paths"]["/ask"]["post"]
    assert ask["security"] == [{"bearer": []}, {"apiKey": []}]  # no {}: a key is required
    assert {"401", "403"} <= ask["responses"].keys()
    assert document["paths"]["/health/ready"]["get"]["security"] == ask["security"]
    assert "security" not in document["paths"]["/health/live"]["get"]


def test_the_demo_schema_says_a_key_is_optional(start_app: StartApp) -> None:
    with start_app() as server, httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        document = client.get("/schema/openapi.json").json()

    assert document["paths"]["/ask"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}, {}]


# --------------------------------------------------------------------------- kb serve


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_kb_serve_sends_no_server_banner_and_says_who_may_call(tmp_path: Path, ingested_store: Path) -> None:
    shutil.copytree(ingested_store, tmp_path / "data")
    port = _free_port()
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KB_") and k not in ("REDIS_URL", "QDRANT_URL")
    }
    environ.update(KB_DATA_DIR=str(tmp_path / "data"), HF_HUB_OFFLINE="1")
    process = subprocess.Popen(
        [str(KB), "serve", "--port", str(port)],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        response = _first_answer(f"http://127.0.0.1:{port}/health/live", process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()

    assert response.status_code == 200
    assert "server" not in response.headers, response.headers
    assert "anonymous access is ON" in err  # the development configuration: the local demo


def _first_answer(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    give_up = time.monotonic() + 120
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise AssertionError(f"kb serve exited with {process.returncode}")
        try:
            return httpx.get(url, timeout=2.0)
        except httpx.TransportError:
            time.sleep(0.25)
    raise AssertionError("kb serve did not answer within 120 s")
