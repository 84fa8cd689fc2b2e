"""The state store contract: the small set of operations every shared piece of state needs.

API keys, prompt labels, conversations, cached answers, feedback and request traces live here,
outside any one process, so that a second instance behaves exactly like the first. Values are
bytes (callers encode msgspec Structs); keys are plain strings that the store prefixes with its
namespace. Each operation is atomic on its own, also against other processes using the same
backend, and reads the backend every time (nothing is cached in the process), so what one
instance writes the next read of any other instance sees.

A key holds one kind of value for its life: bytes (``set``), a counter (``incr``), a hash or a
list. Using a key as another kind is a caller bug whose outcome the backends do not agree on;
callers give each kind its own key. ``get`` of a counter reads its decimal value.

Failure outcome: every implementation bounds each call by its timeout and raises
``StateUnavailableError`` when the backend fails or does not answer in time; nothing else
escapes. Callers decide what that means for them (a refusal, a cache miss, a log line).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["StateStore"]


class StateStore(Protocol):
    """Shared key-value state with expiry, counters, hashes and capped lists."""

    @property
    def description(self) -> str:
        """Where the state lives, for logs and readiness (never a password)."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when it is absent or expired."""
        ...

    async def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        """Store ``value`` under ``key``, replacing any value; it expires after ``ttl_s``."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (a value, a hash or a list); True when something was removed."""
        ...

    async def incr(self, key: str, amount: int = 1, *, ttl_s: float | None = None) -> int:
        """Add ``amount`` (may be negative) to the integer at ``key`` (0 when absent); the new value.

        ``ttl_s`` sets the expiry only when the counter is created, so a window counter keeps
        its window.
        """
        ...

    async def hash_get(self, key: str, field: str) -> bytes | None:
        """One field of the hash at ``key``."""
        ...

    async def hash_set(self, key: str, field: str, value: bytes) -> None:
        """Set one field of the hash at ``key`` (hashes do not expire)."""
        ...

    async def hash_delete(self, key: str, field: str) -> bool:
        """Remove one field; True when it existed. A hash without fields no longer exists."""
        ...

    async def hash_items(self, key: str) -> dict[str, bytes]:
        """Every field of the hash at ``key``."""
        ...

    async def list_push(self, key: str, value: bytes, *, max_len: int, ttl_s: float | None = None) -> None:
        """Append ``value`` to the list at ``key``, keep only the newest ``max_len`` items, and
        (re)start the list's expiry at ``ttl_s`` (None: the list no longer expires).

        ``max_len`` below 1 is a ``ValueError``.
        """
        ...

    async def list_range(self, key: str, *, last: int) -> list[bytes]:
        """The newest ``last`` items of the list at ``key``, oldest first (none for ``last`` < 1)."""
        ...

    async def ping(self) -> None:
        """Raise ``StateUnavailableError`` unless the store answers now."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...
