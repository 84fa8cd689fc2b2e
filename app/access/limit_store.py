"""Where the limits count: in this process, or in Redis shared by every instance.

``LimitStore`` holds a ``limits`` storage (``MemoryStorage``, or ``RedisStorage`` over
``REDIS_URL``) for request and token counters, and a slot table for answers in progress
(``MemorySlots``, or ``RedisSlots``: one sorted set per caller, whose entries expire, so the
slots of an instance that crashed come free by themselves).

Every Redis call is bounded twice: the socket timeouts of the pool, and ``redis_timeout_s``
over the whole call. A failed call raises ``StorageDown`` and marks the store down: for
``retry_storage_after_s`` later calls raise it at once instead of each waiting for a timeout,
then Redis is tried again. The outage is logged once when it starts and once when it ends;
what a caller gets meanwhile (``fail_open`` / ``fail_closed``) is the limiter's decision.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import structlog
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.settings import Settings

__all__ = ["LimitStore", "MemorySlots", "RedisSlots", "Slots", "StorageDown", "open_limit_store"]

log = structlog.get_logger("kb.limits")

T = TypeVar("T")


class StorageDown(Exception):
    """The limits storage did not answer (or answered with an error) within its bounds."""


class Slots(Protocol):
    """Answers in progress per caller, each a lease that expires."""

    async def acquire(self, subject: str, lease_id: str, *, limit: int, lease_s: float) -> tuple[bool, int]:
        """Take a slot unless ``limit`` are held: ``(taken, held)``, ``held`` counting this one."""
        ...

    async def release(self, subject: str, lease_id: str) -> None:
        """Give the slot back (nothing happens if it has expired or was released)."""
        ...

    async def ping(self) -> None:
        """Raise unless the storage behind the slots (and the counters) answers now."""
        ...

    async def aclose(self) -> None: ...


class MemorySlots:
    """Slots of this process (they die with it, so a lease only matters for a lost release)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._held: dict[str, dict[str, float]] = {}

    async def acquire(self, subject: str, lease_id: str, *, limit: int, lease_s: float) -> tuple[bool, int]:
        now = self.clock()
        leases = {k: until for k, until in self._held.get(subject, {}).items() if until > now}
        if len(leases) >= limit:
            self._held[subject] = leases
            return False, len(leases)
        leases[lease_id] = now + lease_s
        self._held[subject] = leases
        return True, len(leases)

    async def release(self, subject: str, lease_id: str) -> None:
        leases = self._held.get(subject)
        if leases is not None:
            leases.pop(lease_id, None)
            if not leases:
                del self._held[subject]

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


# One sorted set per caller: member = lease id, score = when the lease ends (Redis's own clock,
# so instances whose clocks differ agree). Expired leases are dropped before counting.
_ACQUIRE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local limit = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= limit then
    return {0, held}
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000))
return {1, held + 1}
"""


class RedisSlots:
    """Slots in Redis, shared by every instance using the same database and namespace."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)

    def _key(self, subject: str) -> str:
        return f"{self.prefix}:slots:{subject}"

    async def acquire(self, subject: str, lease_id: str, *, limit: int, lease_s: float) -> tuple[bool, int]:
        taken, held = await self._acquire(keys=[self._key(subject)], args=[limit, lease_s, lease_id])
        return bool(taken), int(held)

    async def release(self, subject: str, lease_id: str) -> None:
        await self.client.zrem(self._key(subject), lease_id)

    async def ping(self) -> None:
        await self.client.ping()

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()  # shared with the limits storage


class LimitStore:
    """The counters and slots of the limiter, with the bounds and the outage bookkeeping."""

    def __init__(
        self,
        storage: Storage,
        slots: Slots,
        *,
        description: str,
        timeout_s: float | None = None,
        retry_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.slots = slots
        self.description = description
        self.timeout_s = timeout_s
        """None: a store in memory, which cannot fail or block."""
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._problem = ""
        # Settlements and releases run to completion even when the request that started them
        # is cancelled (a client gone); their tasks are kept here until they finish.
        self._detached: set[asyncio.Task[Any]] = set()

    @property
    def shared(self) -> bool:
        """Whether other instances see the same counters (Redis)."""
        return self.timeout_s is not None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @property
    def problem(self) -> str:
        """What the last failure was ('' while the store answers)."""
        return self._problem if self.down else ""

    async def run(self, call: Callable[[], Awaitable[T]], *, probe: bool = False) -> T:
        """``call()``'s result, or ``StorageDown``. ``probe`` tries even while marked down."""
        if self.timeout_s is None:
            return await call()
        if self._down_since is not None and not probe and self.clock() < self._retry_at:
            raise StorageDown(self._problem)
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await call()
        except (TimeoutError, StorageError, RedisError, OSError) as exc:
            self._failed(exc)
            raise StorageDown(self._problem) from exc
        if self._down_since is not None:
            log.warning(
                "limits_storage_recovered",
                storage=self.description,
                down_s=round(self.clock() - self._down_since, 3),
            )
            self._down_since = None
        return result

    def _failed(self, exc: BaseException) -> None:
        now = self.clock()
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {self.timeout_s:g}s"
        else:
            cause = exc.__cause__ if isinstance(exc, StorageError) and exc.__cause__ else exc
            reason = f"{type(cause).__name__}: {cause}".rstrip(": ")
        self._problem = f"rate-limit storage {self.description} unavailable: {reason}"
        self._retry_at = now + self.retry_after_s
        if self._down_since is None:
            self._down_since = now
            log.error("limits_storage_unavailable", storage=self.description, problem=self._problem)

    async def check(self) -> str | None:
        """Ask the storage now (readiness); the problem, or None."""
        try:
            await self.run(self.slots.ping, probe=True)  # the same pool as the counters'
        except StorageDown as exc:
            return str(exc)
        return None

    async def all(self, *calls: Callable[[], Awaitable[T]]) -> list[T]:
        """Every call's result, in order, one after the other. Not concurrently: on loopback,
        redis-py's pool hands out one connection per concurrent call, and measured three
        commands at once took longer than three in a row (bench/bench_access.py)."""
        return [await call() for call in calls]

    async def detached(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` in its own task and wait for it; if the waiting request is cancelled
        meanwhile, the work still completes (a refund or a release must not be lost).

        In memory the work never waits on anything, so no cancellation can interrupt it.
        """
        if not self.shared:
            await work()
            return
        task = asyncio.ensure_future(work())
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)
        await asyncio.shield(task)

    async def aclose(self) -> None:
        if self._detached:
            await asyncio.wait(list(self._detached), timeout=self.timeout_s or 1.0)
        await self.slots.aclose()


def _pool_options() -> dict[str, Any]:
    # As app.state.redis does: redis-py 8.1's asyncio pool skips its dead-connection check while
    # maintenance notifications are "auto", so the first call after a Redis restart would
    # fail; they are turned off where the option exists.
    if "maint_notifications_config" not in inspect.signature(Redis.__init__).parameters:
        return {}
    from redis.maint_notifications import MaintNotificationsConfig

    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def _where(kwargs: dict[str, Any]) -> str:
    """``host:port/db`` or ``unix:path/db``: never the password."""
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix:{kwargs['path']}/{db}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


def open_limit_store(settings: Settings) -> LimitStore:
    """In memory, or in Redis when ``REDIS_URL`` is set. Connects on first use."""
    limits = settings.limits
    url = settings.secrets.redis_url
    if not url:
        return LimitStore(MemoryStorage(), MemorySlots(), description="memory (this process only)")
    prefix = f"{settings.state.namespace}:limits"
    # One pool for both the limits library's counters and the slot script.
    pool = ConnectionPool.from_url(
        url,
        socket_connect_timeout=limits.redis_timeout_s,
        socket_timeout=limits.redis_timeout_s,
        # Not retried: a retried INCRBY whose reply was lost would count twice.
        retry=Retry(NoBackoff(), 0),
        **_pool_options(),
    )
    shared: dict[str, Any] = {"connection_pool": pool}
    storage = RedisStorage(url, implementation="redispy", key_prefix=prefix, wrap_exceptions=True, **shared)
    return LimitStore(
        storage,
        RedisSlots(Redis(connection_pool=pool), prefix),
        description=f"redis {_where(pool.connection_kwargs)}",
        timeout_s=limits.redis_timeout_s,
        retry_after_s=limits.retry_storage_after_s,
    )
