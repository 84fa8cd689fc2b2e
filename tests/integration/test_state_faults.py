"""State-store faults: every one is ``StateUnavailableError`` within the call timeout, never a hang,
and the store works again once the fault is gone, without a restart.

Redis faults use the session's real redis-server (stopped and started again; every test here
restarts it even when it fails), a port nothing listens on, and a server that accepts
connections but never answers. File faults use a lock held by another connection, a stalled
worker and paths that cannot be a state file.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from collections.abc import Awaitable
from pathlib import Path

import pytest

from app.errors import ConfigError, StateUnavailableError
from app.settings import StateSettings
from app.state import FileStateStore, RedisStateStore
from tests.services.redis import RedisServer

TIMEOUT_S = 0.5
SETTINGS = StateSettings(timeout_s=TIMEOUT_S, connect_timeout_s=0.25)
SLACK_S = 0.5  # scheduling on a busy machine; a hang would take far longer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def failure(call: Awaitable[object]) -> tuple[StateUnavailableError, float]:
    """The error ``call`` fails with, and how long it took to."""
    started = time.monotonic()
    with pytest.raises(StateUnavailableError) as caught:
        await call
    return caught.value, time.monotonic() - started


# --------------------------------------------------------------------------- Redis


async def test_redis_stopped_mid_run_fails_fast_and_is_used_again_once_it_is_back(
    restartable: RedisServer, redis_url: str
) -> None:
    store = RedisStateStore.from_url(redis_url, SETTINGS)
    try:
        await store.set("k", b"before")

        restartable.stop()
        for call in (
            store.get("k"),
            store.incr("n", ttl_s=5),
            store.list_push("l", b"v", max_len=3),
            store.ping(),
        ):
            error, took = await failure(call)
            assert took < TIMEOUT_S + SLACK_S
            assert f"127.0.0.1:{restartable.port}" in error.message

        restartable.start()
        await store.set("k", b"after")  # the same store object: no restart of the service
        assert await store.get("k") == b"after"
    finally:
        await store.aclose()


async def test_the_first_call_after_redis_restarted_while_idle_succeeds(
    restartable: RedisServer, redis_url: str
) -> None:
    store = RedisStateStore.from_url(redis_url, SETTINGS)
    try:
        await store.set("k", b"v")  # a pooled connection the restart will close

        restartable.stop()
        restartable.start()
        await asyncio.sleep(0.05)  # a running service's loop notices the closed connection

        await store.ping()
        assert await store.incr("n") == 1
    finally:
        await store.aclose()


async def test_a_port_nothing_listens_on_fails_at_once() -> None:
    store = RedisStateStore.from_url(f"redis://127.0.0.1:{free_port()}/0", SETTINGS)
    try:
        error, took = await failure(store.get("k"))
    finally:
        await store.aclose()

    assert took < TIMEOUT_S
    assert "unavailable" in error.message


@pytest.mark.parametrize("operation", ["get", "incr_with_ttl", "list_push", "ping"])
async def test_a_redis_that_never_answers_fails_within_the_timeout(silent_port: int, operation: str) -> None:
    store = RedisStateStore.from_url(f"redis://127.0.0.1:{silent_port}/0", SETTINGS)
    calls = {
        "get": lambda: store.get("k"),
        "incr_with_ttl": lambda: store.incr("n", ttl_s=5),
        "list_push": lambda: store.list_push("l", b"v", max_len=3),
        "ping": store.ping,
    }
    try:
        error, took = await failure(calls[operation]())
    finally:
        await store.aclose()

    assert took < TIMEOUT_S + SLACK_S
    assert error.message == (
        f"state store redis 127.0.0.1:{silent_port}/0 unavailable: no answer within {TIMEOUT_S:g}s"
    )


async def test_the_password_appears_in_no_message_and_no_description(silent_port: int) -> None:
    password = "s3cret-Pa55"
    for port in (silent_port, free_port()):
        store = RedisStateStore.from_url(f"redis://kb:{password}@127.0.0.1:{port}/2", SETTINGS)
        try:
            error, _ = await failure(store.get("k"))
        finally:
            await store.aclose()

        assert password not in error.message and password not in repr(error.__cause__)
        assert store.description == f"redis 127.0.0.1:{port}/2"


# --------------------------------------------------------------------------- the file


async def test_a_file_locked_by_another_process_fails_writes_in_time_and_still_serves_reads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    store = FileStateStore.open(path, SETTINGS)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await store.set("k", b"v")
        other.execute("BEGIN IMMEDIATE")  # another process in a long write transaction

        error, took = await failure(store.set("k", b"w"))
        assert took < TIMEOUT_S + SLACK_S
        assert "locked by another process" in error.message and str(path) in error.message
        assert await store.get("k") == b"v"  # write-ahead logging: readers are not blocked
        await failure(store.ping())  # not ready: writes would fail

        other.execute("ROLLBACK")
        await store.set("k", b"w")
        assert await store.get("k") == b"w"
    finally:
        other.close()
        await store.aclose()


async def test_a_stalled_file_call_fails_within_the_timeout_and_the_store_recovers(tmp_path: Path) -> None:
    stall = threading.Event()

    def clock() -> float:
        if stall.is_set():
            stall.clear()
            time.sleep(TIMEOUT_S * 3)  # a disk that does not answer
        return time.time()

    store = FileStateStore.open(tmp_path / "state.sqlite3", SETTINGS, clock=clock)
    try:
        stall.set()
        error, took = await failure(store.get("k"))
        assert took < TIMEOUT_S + SLACK_S
        assert "did not answer within 0.5s (get)" in error.message

        await asyncio.sleep(TIMEOUT_S * 3)  # the stalled call finishes on the worker
        await store.set("k", b"v")
        assert await store.get("k") == b"v"
    finally:
        await store.aclose()


def test_a_state_file_whose_folder_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")

    with pytest.raises(ConfigError, match="cannot be created"):
        FileStateStore.open(blocker / "state.sqlite3", SETTINGS)


def test_a_file_that_is_not_a_database_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not SQLite " * 200)

    with pytest.raises(ConfigError, match="not a state file") as caught:
        FileStateStore.open(path, SETTINGS)

    assert str(path) in caught.value.message


def test_a_folder_in_place_of_the_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be opened"):
        FileStateStore.open(tmp_path, SETTINGS)


async def test_a_closed_store_refuses_calls_with_state_unavailable(tmp_path: Path) -> None:
    store = FileStateStore.open(tmp_path / "state.sqlite3", SETTINGS)
    await store.aclose()

    error, _ = await failure(store.get("k"))

    assert "closed" in error.message
