"""The state store in Redis (``REDIS_URL``), shared by every instance that uses the same database
and namespace.

Every key is ``<namespace>:<key>``. Compound operations are one ``MULTI``/``EXEC`` transaction:
a counter gets its expiry in the same transaction that creates it, a list push trims and
(re)starts the expiry with the push. Every call is bounded: the socket connect and read
timeouts, and ``state.timeout_s`` over the whole call as a backstop. Commands are not retried
(a retried ``INCRBY`` whose reply was lost would count twice); a connection the server closed
is replaced when it is next taken from the pool, so a Redis that comes back after an outage is
used again without a restart. Every failure is ``StateUnavailableError`` naming host and port,
never the password.

The client binds its connections to the event loop that first uses them: use one store within
one loop.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.errors import ConfigError, StateUnavailableError
from app.settings import StateSettings

__all__ = ["RedisStateStore"]


def _where(url: str) -> tuple[str, str | None]:
    """``host:port/db`` (or the socket path) of ``url``, and its password (to keep out of messages)."""
    try:
        parts: dict[str, Any] = dict(parse_url(url))
    except ValueError as exc:  # the message names the accepted schemes, not the URL
        raise ConfigError(f"REDIS_URL is not a Redis URL: {exc}") from exc
    db = parts.get("db", 0)
    if "path" in parts:
        where = f"unix:{parts['path']}/{db}"
    else:
        where = f"{parts.get('host', 'localhost')}:{parts.get('port', 6379)}/{db}"
    if url.startswith("rediss:"):
        where += " (tls)"
    password = parts.get("password")
    return where, str(password) if password else None


def _pool_checks() -> dict[str, Any]:
    """Options that keep the pool's check for dead connections on.

    Before it hands out a pooled connection, redis-py checks that the server has not closed it
    (a restart) and reconnects if so. redis-py 8.1's asyncio client skips that check while
    maintenance notifications (a Redis Enterprise feature this service does not use) are on
    "auto", its default, so the first call after a restart would fail; they are turned off
    where the option exists.
    """
    if "maint_notifications_config" not in inspect.signature(Redis.__init__).parameters:
        return {}
    from redis.maint_notifications import MaintNotificationsConfig

    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def _ms(ttl_s: float) -> int:
    return max(1, math.ceil(ttl_s * 1000))


class RedisStateStore:
    """``StateStore`` over one Redis database (``redis.asyncio``)."""

    def __init__(self, url: str, settings: StateSettings) -> None:
        self._where, self._password = _where(url)
        self._prefix = f"{settings.namespace}:"
        self._timeout_s = settings.timeout_s
        self._client: Redis = Redis.from_url(
            url,
            socket_connect_timeout=min(settings.connect_timeout_s, settings.timeout_s),
            socket_timeout=settings.timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
            **_pool_checks(),
        )

    @classmethod
    def from_url(cls, url: str, settings: StateSettings) -> RedisStateStore:
        """A store for ``url`` (``redis://``, ``rediss://``, ``unix://``). Connects on first use;
        ``ConfigError`` when ``url`` is not a Redis URL."""
        return cls(url, settings)

    @property
    def description(self) -> str:
        return f"redis {self._where}"

    def _key(self, key: str) -> str:
        return self._prefix + key

    def _fault(self, exc: BaseException) -> StateUnavailableError:
        if isinstance(exc, TimeoutError | RedisTimeoutError):
            reason = f"no answer within {self._timeout_s:g}s"
        else:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if self._password:
                reason = reason.replace(self._password, "***")
        return StateUnavailableError(f"state store redis {self._where} unavailable: {reason}")

    async def _call(self, command: Awaitable[Any]) -> Any:
        """``command``'s reply (bytes, never decoded) within the timeout."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await command
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._fault(exc) from exc

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call(self._client.get(self._key(key)))
        return value

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        px = None if ttl_s is None else _ms(ttl_s)
        await self._call(self._client.set(self._key(key), bytes(value), px=px))

    async def delete(self, key: str) -> bool:
        removed: int = await self._call(self._client.delete(self._key(key)))
        return removed > 0

    async def incr(self, key: str, amount: int = 1, *, ttl_s: float | None = None) -> int:
        if ttl_s is None:
            value: int = await self._call(self._client.incrby(self._key(key), amount))
            return value
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._key(key), 0, nx=True, px=_ms(ttl_s))  # the window starts with the counter
        pipe.incrby(self._key(key), amount)
        results: list[Any] = await self._call(pipe.execute())
        return int(results[-1])

    async def hash_get(self, key: str, field: str) -> bytes | None:
        value: bytes | None = await self._call(self._client.hget(self._key(key), field))
        return value

    async def hash_set(self, key: str, field: str, value: bytes) -> None:
        await self._call(self._client.hset(self._key(key), field, bytes(value)))

    async def hash_delete(self, key: str, field: str) -> bool:
        removed: int = await self._call(self._client.hdel(self._key(key), field))
        return removed > 0

    async def hash_items(self, key: str) -> dict[str, bytes]:
        items: dict[bytes, bytes] = await self._call(self._client.hgetall(self._key(key)))
        return {name.decode(): value for name, value in items.items()}

    async def list_push(self, key: str, value: bytes, *, max_len: int, ttl_s: float | None = None) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, not {max_len}")
        name = self._key(key)
        pipe = self._client.pipeline(transaction=True)
        pipe.rpush(name, bytes(value))
        pipe.ltrim(name, -max_len, -1)
        if ttl_s is None:
            pipe.persist(name)
        else:
            pipe.pexpire(name, _ms(ttl_s))
        await self._call(pipe.execute())

    async def list_range(self, key: str, *, last: int) -> list[bytes]:
        if last < 1:
            return []
        items: list[bytes] = await self._call(self._client.lrange(self._key(key), -last, -1))
        return items

    async def ping(self) -> None:
        await self._call(self._client.ping())

    async def aclose(self) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._client.aclose()
        except (RedisError, OSError, TimeoutError):
            pass  # closing is best effort: the process is stopping
