"""A state store in this process's memory: one instance, nothing persisted.

For tests and for single-process use where losing the state on restart is fine. It never fails
and never blocks. ``clock`` is injectable so expiry is testable without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MemoryStateStore"]


@dataclass(slots=True)
class _Entry:
    value: bytes | int | dict[str, bytes] | list[bytes]
    expires_at: float | None = None


@dataclass(slots=True)
class MemoryStateStore:
    """``StateStore`` over a dict. Not shared between processes."""

    clock: Callable[[], float] = time.monotonic
    _data: dict[str, _Entry] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return "memory (this process only)"

    def _live(self, key: str) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= self.clock():
            del self._data[key]
            return None
        return entry

    def _expiry(self, ttl_s: float | None) -> float | None:
        return None if ttl_s is None else self.clock() + ttl_s

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        if entry is not None and isinstance(entry.value, int):
            return str(entry.value).encode()
        return entry.value if entry is not None and isinstance(entry.value, bytes) else None

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        self._data[key] = _Entry(bytes(value), self._expiry(ttl_s))

    async def delete(self, key: str) -> bool:
        return self._live(key) is not None and self._data.pop(key, None) is not None

    async def incr(self, key: str, amount: int = 1, *, ttl_s: float | None = None) -> int:
        entry = self._live(key)
        if entry is None or not isinstance(entry.value, int):
            entry = self._data[key] = _Entry(0, self._expiry(ttl_s))
        assert isinstance(entry.value, int)
        entry.value += amount
        return entry.value

    def _hash(self, key: str, *, create: bool = False) -> dict[str, bytes] | None:
        entry = self._live(key)
        if entry is None or not isinstance(entry.value, dict):
            if not create:
                return None
            entry = self._data[key] = _Entry({})
        assert isinstance(entry.value, dict)
        return entry.value

    async def hash_get(self, key: str, field: str) -> bytes | None:
        mapping = self._hash(key)
        return None if mapping is None else mapping.get(field)

    async def hash_set(self, key: str, field: str, value: bytes) -> None:
        mapping = self._hash(key, create=True)
        assert mapping is not None
        mapping[field] = bytes(value)

    async def hash_delete(self, key: str, field: str) -> bool:
        mapping = self._hash(key)
        removed = mapping is not None and mapping.pop(field, None) is not None
        if mapping == {}:
            del self._data[key]
        return removed

    async def hash_items(self, key: str) -> dict[str, bytes]:
        return dict(self._hash(key) or {})

    async def list_push(self, key: str, value: bytes, *, max_len: int, ttl_s: float | None = None) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, not {max_len}")
        entry = self._live(key)
        if entry is None or not isinstance(entry.value, list):
            entry = self._data[key] = _Entry([])
        assert isinstance(entry.value, list)
        entry.value.append(bytes(value))
        del entry.value[: max(0, len(entry.value) - max_len)]
        entry.expires_at = self._expiry(ttl_s)

    async def list_range(self, key: str, *, last: int) -> list[bytes]:
        entry = self._live(key)
        if entry is None or not isinstance(entry.value, list) or last <= 0:
            return []
        return list(entry.value[-last:])

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
