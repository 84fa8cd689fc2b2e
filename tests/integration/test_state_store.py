"""The ``StateStore`` contract, one suite run against every backend: memory, the SQLite file and a
real Redis.

Expiry runs on an injected clock where the backend takes one (memory, file) and on real time for
Redis, so TTLs are written in ``backend.unit`` and time passes with ``backend.advance``. The
"second instance" tests (two store objects on one file or one Redis see each other's writes,
namespaces keep deployments apart) run on the shared backends only: memory shares nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.settings import StateSettings
from app.state import FileStateStore, MemoryStateStore, RedisStateStore, StateStore


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """Opens stores on one backend; ``unit`` is the TTL scale and ``advance`` lets time pass."""

    name: str
    opener: Callable[[str], StateStore]
    clock: FakeClock | None
    unit: float
    opened: list[StateStore] = field(default_factory=list)

    def open(self, namespace: str = "kb") -> StateStore:
        store = self.opener(namespace)
        self.opened.append(store)
        return store

    async def advance(self, units: float) -> None:
        if self.clock is not None:
            self.clock.now += units * self.unit
        else:
            await asyncio.sleep(units * self.unit)


def _memory() -> Backend:
    clock = FakeClock()
    return Backend("memory", lambda namespace: MemoryStateStore(clock=clock), clock, unit=10.0)


def _file(path: Path) -> Backend:
    clock = FakeClock()
    return Backend(
        "file",
        lambda namespace: FileStateStore.open(path, StateSettings(namespace=namespace), clock=clock),
        clock,
        unit=10.0,
    )


def _redis(url: str) -> Backend:
    # Real time: long enough that scheduling noise on a busy machine does not decide a test.
    return Backend(
        "redis",
        lambda namespace: RedisStateStore.from_url(url, StateSettings(namespace=namespace)),
        None,
        0.25,
    )


async def _opened(backend: Backend) -> AsyncIterator[Backend]:
    try:
        yield backend
    finally:
        for store in backend.opened:
            await store.aclose()


@pytest.fixture(params=["memory", "file", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        chosen = _memory()
    elif request.param == "file":
        chosen = _file(tmp_path / "state" / "state.sqlite3")
    else:
        chosen = _redis(request.getfixturevalue("redis_url"))
    async for opened in _opened(chosen):
        yield opened


@pytest.fixture(params=["file", "redis"])
async def shared(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A backend whose stores share state (one file, one Redis database)."""
    if request.param == "file":
        chosen = _file(tmp_path / "state.sqlite3")
    else:
        chosen = _redis(request.getfixturevalue("redis_url"))
    async for opened in _opened(chosen):
        yield opened


# --------------------------------------------------------------------------- values


async def test_a_value_is_read_back_as_written_and_a_missing_one_is_none(backend: Backend) -> None:
    store = backend.open()
    every_byte = bytes(range(256))

    await store.set("blob", every_byte)
    await store.set("empty", b"")

    assert await store.get("blob") == every_byte
    assert await store.get("empty") == b""
    assert await store.get("never-written") is None


async def test_set_replaces_the_value_and_its_expiry(backend: Backend) -> None:
    store = backend.open()
    await store.set("k", b"first", ttl_s=2 * backend.unit)
    await store.set("k", b"second")  # no TTL: the replacement never expires

    await backend.advance(3)

    assert await store.get("k") == b"second"


async def test_a_value_expires_after_its_ttl_and_not_before(backend: Backend) -> None:
    store = backend.open()
    await store.set("short", b"v", ttl_s=2 * backend.unit)

    await backend.advance(1)
    assert await store.get("short") == b"v"

    await backend.advance(1.5)
    assert await store.get("short") is None
    assert await store.delete("short") is False  # expired is absent


async def test_delete_says_whether_something_was_removed_whatever_the_key_held(backend: Backend) -> None:
    store = backend.open()
    await store.set("value", b"v")
    await store.incr("counter")
    await store.hash_set("hash", "f", b"v")
    await store.list_push("list", b"v", max_len=3)

    for key in ("value", "counter", "hash", "list"):
        assert await store.delete(key) is True, key
        assert await store.delete(key) is False, key

    assert await store.get("value") is None
    assert await store.hash_items("hash") == {}
    assert await store.list_range("list", last=3) == []


async def test_keys_may_hold_separators_spaces_and_any_letters(backend: Backend) -> None:
    store = backend.open()
    keys = ["conv:tenant-a/42", "a key with spaces", "ключ:日本語", "trailing:"]

    for number, key in enumerate(keys):
        await store.set(key, str(number).encode())

    assert [await store.get(key) for key in keys] == [b"0", b"1", b"2", b"3"]


# --------------------------------------------------------------------------- counters


async def test_incr_counts_from_zero_by_any_amount_and_get_reads_the_count(backend: Backend) -> None:
    store = backend.open()

    assert await store.incr("n") == 1
    assert await store.incr("n", 5) == 6
    assert await store.incr("n", -8) == -2
    assert await store.get("n") == b"-2"


async def test_incr_sets_the_expiry_when_it_creates_the_counter_only(backend: Backend) -> None:
    store = backend.open()
    await store.incr("window", ttl_s=2 * backend.unit)

    await backend.advance(1.2)
    assert await store.incr("window", ttl_s=2 * backend.unit) == 2  # same window, not restarted

    await backend.advance(1.2)  # 2.4 units after creation: the window is over
    assert await store.get("window") is None
    assert await store.incr("window", ttl_s=2 * backend.unit) == 1  # a new window


async def test_incr_without_ttl_never_expires(backend: Backend) -> None:
    store = backend.open()
    await store.incr("forever")

    await backend.advance(4)

    assert await store.incr("forever") == 2


async def test_concurrent_increments_are_none_of_them_lost(backend: Backend) -> None:
    store = backend.open()

    results = await asyncio.gather(*(store.incr("hits", ttl_s=100 * backend.unit) for _ in range(50)))

    assert sorted(results) == list(range(1, 51))
    assert await store.get("hits") == b"50"


# --------------------------------------------------------------------------- hashes


async def test_hash_fields_are_set_read_listed_and_removed_one_by_one(backend: Backend) -> None:
    store = backend.open()
    await store.hash_set("labels", "stable", b"answer@1")
    await store.hash_set("labels", "canary", b"answer@2")
    await store.hash_set("labels", "stable", b"answer@3")  # replaces the field

    assert await store.hash_get("labels", "stable") == b"answer@3"
    assert await store.hash_get("labels", "absent") is None
    assert await store.hash_get("no-such-hash", "stable") is None
    assert await store.hash_items("labels") == {"stable": b"answer@3", "canary": b"answer@2"}

    assert await store.hash_delete("labels", "canary") is True
    assert await store.hash_delete("labels", "canary") is False
    assert await store.hash_items("labels") == {"stable": b"answer@3"}


async def test_a_hash_without_fields_no_longer_exists(backend: Backend) -> None:
    store = backend.open()
    await store.hash_set("h", "only", b"v")

    await store.hash_delete("h", "only")

    assert await store.hash_items("h") == {}
    assert await store.delete("h") is False


async def test_hash_fields_take_any_letters_and_binary_values(backend: Backend) -> None:
    store = backend.open()
    await store.hash_set("h", "ärger:日本", b"\x00\xff")

    assert await store.hash_items("h") == {"ärger:日本": b"\x00\xff"}


# --------------------------------------------------------------------------- lists


async def test_a_capped_list_keeps_the_newest_items_oldest_first(backend: Backend) -> None:
    store = backend.open()
    for number in range(1, 8):
        await store.list_push("turns", str(number).encode(), max_len=3)

    assert await store.list_range("turns", last=10) == [b"5", b"6", b"7"]
    assert await store.list_range("turns", last=2) == [b"6", b"7"]
    assert await store.list_range("turns", last=0) == []
    assert await store.list_range("no-such-list", last=5) == []


async def test_each_push_restarts_the_list_expiry(backend: Backend) -> None:
    store = backend.open()
    await store.list_push("conv", b"q1", max_len=10, ttl_s=2 * backend.unit)

    await backend.advance(1.2)
    await store.list_push("conv", b"q2", max_len=10, ttl_s=2 * backend.unit)
    await backend.advance(1.2)  # 2.4 units after the first push, 1.2 after the second

    assert await store.list_range("conv", last=10) == [b"q1", b"q2"]

    await backend.advance(1.2)
    assert await store.list_range("conv", last=10) == []


async def test_a_push_without_ttl_makes_the_list_permanent(backend: Backend) -> None:
    store = backend.open()
    await store.list_push("log", b"a", max_len=5, ttl_s=2 * backend.unit)
    await store.list_push("log", b"b", max_len=5)

    await backend.advance(3)

    assert await store.list_range("log", last=5) == [b"a", b"b"]


async def test_a_list_capped_below_one_item_is_refused(backend: Backend) -> None:
    store = backend.open()

    with pytest.raises(ValueError, match="max_len"):
        await store.list_push("l", b"v", max_len=0)


async def test_ping_answers_and_the_description_names_the_backend(backend: Backend) -> None:
    store = backend.open()

    await store.ping()

    assert store.description.split()[0] == backend.name


# --------------------------------------------------------------------------- a second instance


async def test_a_second_store_on_the_same_backend_sees_every_write_of_the_first(shared: Backend) -> None:
    first, second = shared.open(), shared.open()

    await first.set("key:abc", b"hash-of-key")
    await first.incr("count")
    await first.hash_set("labels", "stable", b"v1")
    await first.list_push("conv", b"turn-1", max_len=5)

    assert await second.get("key:abc") == b"hash-of-key"
    assert await second.incr("count") == 2
    assert await second.hash_items("labels") == {"stable": b"v1"}
    assert await second.list_range("conv", last=5) == [b"turn-1"]

    await second.delete("key:abc")  # e.g. a key revoked from the other instance
    await second.hash_set("labels", "stable", b"v2")
    assert await first.get("key:abc") is None
    assert await first.hash_get("labels", "stable") == b"v2"


async def test_increments_from_two_stores_at_once_all_count(shared: Backend) -> None:
    first, second = shared.open(), shared.open()

    await asyncio.gather(*(store.incr("shared") for store in (first, second) for _ in range(40)))

    assert await first.get("shared") == b"80"


async def test_stores_in_different_namespaces_do_not_see_each_other(shared: Backend) -> None:
    production, staging = shared.open("prod"), shared.open("staging")

    await production.set("k", b"prod")
    await production.incr("n")
    await production.hash_set("h", "f", b"prod")
    await production.list_push("l", b"prod", max_len=3)

    assert await staging.get("k") is None
    assert await staging.incr("n") == 1
    assert await staging.hash_items("h") == {}
    assert await staging.list_range("l", last=3) == []
    assert await staging.delete("k") is False
    assert await production.get("k") == b"prod"
