"""Settings: the state store shared by every instance (``app.state``): Redis when ``REDIS_URL`` is
set, a local SQLite file otherwise."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from app.settings.base import _Section

__all__ = ["StateSettings"]


class StateSettings(_Section, frozen=True):
    """The state store shared by every instance (``app.state``): Redis when ``REDIS_URL`` is set,
    a local file otherwise. docs/state.md describes both."""

    file: Annotated[str, Meta(min_length=1)] = "state.sqlite3"
    """The local state file (SQLite), used when ``REDIS_URL`` is not set. A relative path is
    under ``data_dir``. Every process on this machine that uses the same file shares the state
    (``kb serve`` and ``kb keys`` in a shell)."""

    namespace: Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] = "kb"
    """Prefix of every key (``<namespace>:<key>``). Instances that share state use the same
    namespace; deployments that share one Redis database (staging and production) use different
    ones and do not see each other's state."""

    timeout_s: Annotated[float, Meta(gt=0.0, le=30.0)] = 1.0
    """Bound of one state-store call, connecting included. Past it the call fails with
    ``state_unavailable`` (503 where a request depends on it), never hangs. With the file, a
    write waits for another process's write lock for most of this, then fails as locked."""

    connect_timeout_s: Annotated[float, Meta(gt=0.0, le=30.0)] = 0.5
    """Time to open a TCP connection to Redis (capped by ``timeout_s``), so an unreachable host
    fails fast."""
