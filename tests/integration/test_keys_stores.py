"""The key ring over the real shared stores: the local state file and Redis.

Two rings stand for two processes (``kb keys`` in a shell, a running ``kb serve``): each opens
the store itself, and a revocation through one is what the other reads next. With Redis down,
stored keys are refused with ``state_unavailable`` (503, never a 500 and never a pass) within
the state timeout, while keys declared in configuration keep working.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from app.access import KeyRing
from app.access.testing import declared_key
from app.errors import AuthenticationError, StateUnavailableError
from app.settings import AccessSettings, StateSettings
from app.state import FileStateStore, RedisStateStore, StateStore
from tests.services.redis import RedisServer

pytestmark = pytest.mark.integration

OpenStore = Callable[[], StateStore]


@pytest.fixture(params=["file", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens a new client of one shared store, as another process would."""
    settings = StateSettings()
    if request.param == "file":
        path = tmp_path / "state.sqlite3"
        return lambda: FileStateStore.open(path, settings)
    url: str = request.getfixturevalue("redis_url")
    return lambda: RedisStateStore.from_url(url, settings)


@pytest.fixture
async def two_rings(open_store: OpenStore) -> AsyncIterator[tuple[KeyRing, KeyRing]]:
    stores = [open_store(), open_store()]
    try:
        yield KeyRing(stores[0], AccessSettings()), KeyRing(stores[1], AccessSettings())
    finally:
        for store in stores:
            await store.aclose()


async def test_a_key_made_through_one_client_resolves_through_another(
    two_rings: tuple[KeyRing, KeyRing],
) -> None:
    admin, serving = two_rings
    key, record = await admin.create(name="ci", tenant="team-a", role="user")

    assert (await serving.resolve(key)).tenant == "team-a"
    assert [r.id for r in await serving.records()] == [record.id]


async def test_a_revocation_through_one_client_is_refused_by_the_other_on_its_next_resolve(
    two_rings: tuple[KeyRing, KeyRing],
) -> None:
    admin, serving = two_rings
    key, record = await admin.create(name="ci", tenant="t", role="user")
    await serving.resolve(key)  # verified and cached by the serving ring

    await admin.revoke(record.id)

    with pytest.raises(AuthenticationError, match="revoked"):
        await serving.resolve(key)


async def test_a_rotation_through_one_client_switches_the_other_over(
    two_rings: tuple[KeyRing, KeyRing],
) -> None:
    admin, serving = two_rings
    old_key, record = await admin.create(
        name="ci", tenant="t", role="widget", origins=["https://a.example.com"]
    )

    new_key, _, _ = await admin.rotate(record.id)

    await serving.resolve(new_key)
    with pytest.raises(AuthenticationError, match="revoked"):
        await serving.resolve(old_key)
    assert await serving.widget_origins() == {"https://a.example.com"}


async def test_with_redis_down_stored_keys_are_refused_as_unavailable_and_configured_ones_still_work(
    redis_server: RedisServer, redis_url: str
) -> None:
    static_key, entry = declared_key("static", role="widget", origins=("https://static.example.com",))
    store = RedisStateStore.from_url(redis_url, StateSettings(timeout_s=1.0))
    keys = KeyRing(store, AccessSettings(keys=(entry,)))
    try:
        stored_key, _ = await keys.create(
            name="stored", tenant="t", role="widget", origins=["https://a.example.com"]
        )
        redis_server.stop()

        started = time.monotonic()
        with pytest.raises(StateUnavailableError):
            await keys.resolve(stored_key)
        took = time.monotonic() - started

        assert took < 3.0  # bounded by the state timeout, not a hang
        assert (await keys.resolve(static_key)).name == "static"
        # Preflights fall back to what is known without the store: the configured keys' origins.
        assert await keys.widget_origins() == {"https://static.example.com"}
    finally:
        redis_server.start()
        await store.aclose()
