"""The state store in one local SQLite file (WAL mode), for a deployment without Redis.

Every process on this machine that opens the same file shares the state: ``kb keys create`` in
a shell writes a key that a running ``kb serve`` sees on its next read, because nothing is
cached in the process and every read is a query. Each write is one transaction, so a crash (or
a kill) never leaves half of an operation behind.

sqlite3 blocks, so every call runs on this store's one worker thread, bounded on the event loop
by ``state.timeout_s`` (a call past it is interrupted) and, while another process holds the
write lock, by SQLite's busy timeout, which ends first so the reason says "locked". Any failure
is ``StateUnavailableError`` naming the file; a path that cannot be a state file (not writable,
not a database) is a ``ConfigError`` when the store is opened.

Expired entries are invisible to reads at once (every query compares the expiry with the clock)
and deleted lazily: a write deletes a bounded batch of them, at most every ``_PURGE_INTERVAL_S``
unless the previous batch was full, so they cannot pile up however fast they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from pathlib import Path
from typing import TypeVar

from app.errors import StateUnavailableError
from app.settings import StateSettings
from app.state import file_sql as sql

__all__ = ["FileStateStore"]

T = TypeVar("T")

_PURGE_INTERVAL_S = 60.0
_PURGE_BATCH = 500
_BUSY_SHARE = 0.8  # of the call timeout: a lock wait fails as "locked", not as "no answer"
_OPEN_TIMEOUTS = 10  # creating the file and its schema takes a few disk syncs, more than one call


def _expiry(now: float, ttl_s: float | None) -> float | None:
    return None if ttl_s is None else now + ttl_s


class FileStateStore:
    """``StateStore`` over one SQLite file shared by the processes of this machine.

    ``open`` creates the folder, the file and its schema. ``clock`` (wall-clock seconds: every
    process on the file must agree on it) is injectable so expiry is testable without sleeping.
    """

    def __init__(
        self, path: Path, settings: StateSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.clock = clock
        self._prefix = f"{settings.namespace}:"
        self._timeout_s = settings.timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-state")
        self._running: object | None = None  # the job on the worker now, for _interrupt
        self._running_lock = threading.Lock()
        self._next_purge = 0.0
        open_timeout_s = settings.timeout_s * _OPEN_TIMEOUTS
        try:
            self._conn: sqlite3.Connection | None = self._executor.submit(
                sql.connect, path, busy_timeout_s=settings.timeout_s * _BUSY_SHARE
            ).result(timeout=open_timeout_s)
        except FutureTimeoutError as exc:
            self._executor.shutdown(wait=False)
            raise StateUnavailableError(f"state file {path} did not open within {open_timeout_s:g}s") from exc
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    @classmethod
    def open(
        cls, path: Path, settings: StateSettings, *, clock: Callable[[], float] = time.time
    ) -> FileStateStore:
        """Open (or create) the state file at ``path``; ``ConfigError`` when it cannot be one."""
        return cls(path, settings, clock=clock)

    @property
    def description(self) -> str:
        return f"file {self.path}"

    # ------------------------------------------------------------------ the worker thread

    def _execute(self, job: object, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StateUnavailableError(f"state file {self.path} is closed")
        with self._running_lock:
            self._running = job
        try:
            return work(conn)
        finally:
            with self._running_lock:
                self._running = None

    def _interrupt(self, job: object) -> None:
        """Stop ``job``'s statement if it is the one running (not a later call's)."""
        with self._running_lock:
            if self._running is job and self._conn is not None:
                self._conn.interrupt()

    def _write(self, work: Callable[[sqlite3.Connection, float], T]) -> Callable[[sqlite3.Connection], T]:
        """``work`` in one write transaction, with a batch of expired entries purged when due."""

        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = self.clock()
                result = work(conn, now)
                if now >= self._next_purge:
                    purged = sql.purge(conn, now, limit=_PURGE_BATCH)
                    self._next_purge = now if purged >= _PURGE_BATCH else now + _PURGE_INTERVAL_S
                conn.execute("COMMIT")
                return result
            finally:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # an interrupt may have rolled it back
                        conn.execute("ROLLBACK")

        return run

    def _read(self, work: Callable[[sqlite3.Connection, float], T]) -> Callable[[sqlite3.Connection], T]:
        """``work`` as it is: one statement reads one consistent snapshot."""
        return lambda conn: work(conn, self.clock())

    # ------------------------------------------------------------------ the event loop

    async def _call(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        job = object()
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, self._execute, job, work)
        except RuntimeError as exc:  # the executor is shut down
            raise StateUnavailableError(f"state file {self.path} is closed") from exc
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError as exc:
            self._interrupt(job)
            raise StateUnavailableError(
                f"state file {self.path} did not answer within {self._timeout_s:g}s ({what})"
            ) from exc
        except (sqlite3.Error, OSError) as exc:
            raise StateUnavailableError(
                f"state file {self.path} failed ({what}): {sql.explain(exc)}"
            ) from exc

    def _key(self, key: str) -> str:
        return self._prefix + key

    # ------------------------------------------------------------------ the operations

    async def get(self, key: str) -> bytes | None:
        name = self._key(key)
        return await self._call("get", self._read(lambda conn, now: sql.get(conn, name, now)))

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        name, data = self._key(key), bytes(value)
        await self._call(
            "set", self._write(lambda conn, now: sql.set_value(conn, name, data, _expiry(now, ttl_s)))
        )

    async def delete(self, key: str) -> bool:
        name = self._key(key)
        return await self._call("delete", self._write(lambda conn, now: sql.delete(conn, name, now)))

    async def incr(self, key: str, amount: int = 1, *, ttl_s: float | None = None) -> int:
        name = self._key(key)
        return await self._call(
            "incr", self._write(lambda conn, now: sql.incr(conn, name, amount, now, _expiry(now, ttl_s)))
        )

    async def hash_get(self, key: str, field: str) -> bytes | None:
        name = self._key(key)
        return await self._call(
            "hash_get", self._read(lambda conn, now: sql.hash_get(conn, name, field, now))
        )

    async def hash_set(self, key: str, field: str, value: bytes) -> None:
        name, data = self._key(key), bytes(value)
        await self._call(
            "hash_set", self._write(lambda conn, now: sql.hash_set(conn, name, field, data, now))
        )

    async def hash_delete(self, key: str, field: str) -> bool:
        name = self._key(key)
        return await self._call(
            "hash_delete", self._write(lambda conn, now: sql.hash_delete(conn, name, field, now))
        )

    async def hash_items(self, key: str) -> dict[str, bytes]:
        name = self._key(key)
        return await self._call("hash_items", self._read(lambda conn, now: sql.hash_items(conn, name, now)))

    async def list_push(self, key: str, value: bytes, *, max_len: int, ttl_s: float | None = None) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, not {max_len}")
        name, data = self._key(key), bytes(value)
        await self._call(
            "list_push",
            self._write(lambda conn, now: sql.list_push(conn, name, data, max_len, now, _expiry(now, ttl_s))),
        )

    async def list_range(self, key: str, *, last: int) -> list[bytes]:
        if last < 1:
            return []
        name = self._key(key)
        return await self._call(
            "list_range", self._read(lambda conn, now: sql.list_range(conn, name, last, now))
        )

    async def ping(self) -> None:
        def work(conn: sqlite3.Connection) -> None:
            # Taking the write lock and reading the table proves what a write and a read need.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("SELECT 1 FROM entries LIMIT 1").fetchall()
            finally:
                conn.execute("ROLLBACK")

        await self._call("ping", work)

    async def aclose(self) -> None:
        def close(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        if self._conn is not None:
            with contextlib.suppress(StateUnavailableError):  # best effort: the process is stopping
                await self._call("close", close)
        self._executor.shutdown(wait=False)
