"""Two ``kb serve`` processes on one real redis-server behave as one service.

Two real ``kb`` executables (production configuration, anonymous access off) listen on their own
loopback ports with ``REDIS_URL`` pointing at the session's redis-server, as two replicas behind
a load balancer would. Each has its own copy of the ingested embedded store (the embedded store
is one process's; a cluster shares a Qdrant server instead), so what they share is the state in
Redis alone: a request limit counted across both, keys made once with ``kb keys create`` and
revoked once, a prompt label moved through one and followed by the other within
``prompts.refresh_s``, and a conversation started on one and continued on the other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_client
from click.testing import CliRunner

from app.access.testing import bearer
from app.cli import cli
from tests.e2e.test_serve_cli import free_port
from tests.services.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(400)]

KB = Path(sys.executable).with_name("kb")
QUESTION = "How do I install on Linux?"
REFRESH_S = 0.5
TIGHT_LIMIT = 3
# Db 0 of the session's redis-server: the per-test ``redis_url`` fixture hands out 1..63.
DB = 0


@dataclass
class Service:
    """The two processes, and how to make keys in the state they share."""

    urls: list[str]
    environ: dict[str, str]
    cli_data: Path

    def keys(self, *args: str) -> dict[str, Any]:
        # The CLI sees the same REDIS_URL and no state file: it writes where the servers read.
        env = {**self.environ, "KB_DATA_DIR": str(self.cli_data)}
        result = CliRunner().invoke(cli, ["keys", *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if "--json" in args else {}

    def ask(self, which: int, key: str, **body: Any) -> httpx.Response:
        with httpx.Client(base_url=self.urls[which], timeout=httpx.Timeout(30.0, connect=2.0)) as client:
            return client.post(
                "/ask", json={"question": QUESTION, "stream": False, **body}, headers=bearer(key)
            )


def _environment(redis_url: str) -> dict[str, str]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("KB_") and name not in ("QDRANT_URL", "ANTHROPIC_API_KEY", "OPENAI_API_KEY")
    }
    environ.update(
        KB_ENV="production",
        REDIS_URL=redis_url,
        KB_SERVER__HOST="127.0.0.1",
        KB_PROMPTS__REFRESH_S=str(REFRESH_S),
        KB_LIMITS__TIERS__TIGHT__REQUESTS=f'{{ask = "{TIGHT_LIMIT}/minute"}}',
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return environ


def _wait_live(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 240.0) -> None:
    # Start-up is each process importing torch and loading the model, both at once: generous,
    # because on a shared two-core machine that takes several times what it takes alone.
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"kb serve exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health/live", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"kb serve at {url} did not come up within {timeout} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, ingested_store: Path, redis_server: RedisServer
) -> Iterator[Service]:
    redis_server.start()
    url = redis_server.url(DB)
    flush = redis_client.Redis.from_url(url, socket_timeout=2)
    try:
        flush.flushdb()
    finally:
        flush.close()
    root = tmp_path_factory.mktemp("two_processes")
    environ = _environment(url)
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    logs: list[Path] = []
    try:
        for number in range(2):
            data_dir = root / f"data{number}"
            shutil.copytree(ingested_store, data_dir)  # its own embedded store, as on two hosts
            port = free_port()
            log = root / f"serve{number}.log"
            with log.open("wb") as sink:
                processes.append(
                    subprocess.Popen(
                        [str(KB), "serve", "--port", str(port)],
                        env={**environ, "KB_DATA_DIR": str(data_dir)},
                        cwd=root,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
            logs.append(log)
        for url_, process, log in zip(urls, processes, logs, strict=True):
            _wait_live(url_, process, log)
        yield Service(urls=urls, environ=environ, cli_data=root / "cli")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    assert not (root / "cli").exists()  # the CLI used Redis, not a state file of its own


def test_both_processes_are_ready_on_one_redis(service: Service) -> None:
    admin = service.keys("create", "--name", "ops", "--role", "admin", "--json")["key"]
    for url in service.urls:
        ready = httpx.get(f"{url}/health/ready", headers=bearer(admin), timeout=30.0)
        assert ready.status_code == 200, ready.text
        assert (ready.json()["state"], ready.json()["limits"]) == ("ok", "ok")


def test_a_request_limit_is_counted_across_both_processes(service: Service) -> None:
    key = service.keys("create", "--name", "tight", "--tier", "tight", "--json")["key"]

    answered = [service.ask(number % 2, key) for number in range(TIGHT_LIMIT)]
    refused = [service.ask(0, key), service.ask(1, key)]

    assert [r.status_code for r in answered] == [200] * TIGHT_LIMIT, [r.text for r in answered]
    # Each process alone saw fewer than the limit; together they reached it.
    assert [r.status_code for r in refused] == [429, 429], [r.text for r in refused]
    assert all(r.json()["error"]["code"] == "rate_limited" for r in refused), [r.text for r in refused]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)


def test_a_key_made_once_works_on_both_and_its_revocation_is_seen_by_both_at_once(service: Service) -> None:
    made = service.keys("create", "--name", "team", "--json")
    before = [service.ask(number, made["key"]) for number in (0, 1)]

    service.keys("revoke", made["id"])
    after = [service.ask(number, made["key"]) for number in (1, 0)]  # no wait between

    assert [r.status_code for r in before] == [200, 200], [r.text for r in before]
    assert [r.status_code for r in after] == [401, 401]
    assert all("revoked" in r.json()["error"]["message"] for r in after)


def test_a_prompt_label_moved_through_one_is_served_by_the_other(service: Service) -> None:
    admin = service.keys("create", "--name", "prompt-ops", "--role", "admin", "--json")["key"]
    user = service.keys("create", "--name", "asker", "--json")["key"]
    assert service.ask(1, user).json()["prompt_version"] == "answer@v1"

    with httpx.Client(base_url=service.urls[0], timeout=30.0) as first:
        moved = first.post(
            "/admin/prompts/answer/labels/production", json={"version": "v2"}, headers=bearer(admin)
        )
        moved_at = time.monotonic()
        try:
            assert moved.status_code == 200, moved.text
            while (version := service.ask(1, user).json()["prompt_version"]) != "answer@v2":
                assert time.monotonic() - moved_at < REFRESH_S + 10, version
        finally:
            rolled = first.post("/admin/prompts/answer/labels/production/rollback", headers=bearer(admin))
    assert rolled.status_code == 200, rolled.text


def test_a_conversation_started_on_one_continues_on_the_other(service: Service) -> None:
    key = service.keys("create", "--name", "talker", "--json")["key"]
    started = service.ask(0, key)
    assert started.status_code == 200, started.text
    conversation_id = started.json()["conversation_id"]

    followed = service.ask(1, key, question="and on macOS?", conversation_id=conversation_id)

    assert followed.status_code == 200, followed.text
    body = followed.json()
    assert body["conversation_id"] == conversation_id
    # The extractive answerer: the follow-up is searched with the first question's words.
    assert body["searched"] == "and on macOS? install Linux"
    assert body["retrieval_status"] == "ok"
    # And the other way round: the turn B added is history on A.
    third = service.ask(0, key, question="and on Windows?", conversation_id=conversation_id)
    assert third.status_code == 200 and third.json()["conversation_id"] == conversation_id
