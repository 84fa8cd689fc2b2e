"""Two instances of the service on one real Redis share their keys: one revocation stops both."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from app.access.testing import bearer
from app.cli import cli
from tests.e2e.conftest import StartApp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

QUESTION = {"question": "How do I install on Linux?", "stream": False}


def test_two_instances_on_one_redis_honour_a_key_made_once_and_refuse_it_once_revoked(
    start_app: StartApp, redis_url: str, tmp_path: Path
) -> None:
    environ = {"KB_ENV": "production", "REDIS_URL": redis_url}

    def kb(*args: str) -> Result:
        env = {**environ, "KB_DATA_DIR": str(tmp_path / "cli")}  # no state file: Redis it is
        return CliRunner().invoke(cli, ["keys", *args], env=env, catch_exceptions=False)

    with start_app(environ) as one, start_app(environ) as two:
        made = json.loads(kb("create", "--name", "shared", "--json").stdout)
        clients = [httpx.Client(base_url=s.base_url, timeout=30.0) for s in (one, two)]
        try:
            before = [c.post("/ask", json=QUESTION, headers=bearer(made["key"])) for c in clients]
            revoked = kb("revoke", made["id"])
            after = [c.post("/ask", json=QUESTION, headers=bearer(made["key"])) for c in clients]
        finally:
            for client in clients:
                client.close()

    assert [r.status_code for r in before] == [200, 200], [r.text for r in before]
    assert revoked.exit_code == 0, revoked.output
    assert [r.status_code for r in after] == [401, 401]
    assert all("revoked" in r.json()["error"]["message"] for r in after)
    assert not (tmp_path / "cli").exists()  # the CLI used Redis, not a local state file
