"""State-store test helpers: a clock to move by hand and a store that is always down (unit
tests), and ``state_backend``, settings for each real shared store (integration and e2e tests).

Integration tests force the faults on the real stores (a stopped redis-server); the doubles keep
unit tests free of processes and sockets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from app.errors import StateUnavailableError

__all__ = ["Backend", "Clock", "UnavailableState", "state_backend"]


@dataclass(frozen=True)
class Backend:
    """One real state store, as the settings of an instance name it."""

    kind: Literal["redis", "file"]
    environ: dict[str, str]
    """``REDIS_URL`` for Redis; nothing for the file, which lives under each instance's data_dir."""

    @property
    def shared_between_instances(self) -> bool:
        """Redis is shared by instances anywhere; the file only by processes with one data_dir."""
        return self.kind == "redis"


@pytest.fixture(params=["redis", "file"])
def state_backend(request: pytest.FixtureRequest) -> Backend:
    """Each real state store in turn: a fresh database of the session's redis-server, then the
    local file."""
    if request.param == "redis":
        return Backend("redis", {"REDIS_URL": request.getfixturevalue("redis_url")})
    return Backend("file", {})


class Clock:
    """``time.time``/``time.monotonic`` stand-in: it only moves when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class UnavailableState:
    """A ``StateStore`` whose every call fails as the real ones do when the backend is down."""

    description = "unavailable (test double)"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _fail(self, operation: str) -> StateUnavailableError:
        self.calls.append(operation)
        return StateUnavailableError(f"state store unavailable ({operation})")

    async def get(self, key: str) -> bytes | None:
        raise self._fail("get")

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        raise self._fail("set")

    async def delete(self, key: str) -> bool:
        raise self._fail("delete")

    async def incr(self, key: str, amount: int = 1, *, ttl_s: float | None = None) -> int:
        raise self._fail("incr")

    async def hash_get(self, key: str, field: str) -> bytes | None:
        raise self._fail("hash_get")

    async def hash_set(self, key: str, field: str, value: bytes) -> None:
        raise self._fail("hash_set")

    async def hash_delete(self, key: str, field: str) -> bool:
        raise self._fail("hash_delete")

    async def hash_items(self, key: str) -> dict[str, bytes]:
        raise self._fail("hash_items")

    async def list_push(self, key: str, value: bytes, *, max_len: int, ttl_s: float | None = None) -> None:
        raise self._fail("list_push")

    async def list_range(self, key: str, *, last: int) -> list[bytes]:
        raise self._fail("list_range")

    async def ping(self) -> None:
        raise self._fail("ping")

    async def aclose(self) -> None:
        return None
