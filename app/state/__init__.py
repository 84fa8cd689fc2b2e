"""Shared state outside the process (``StateStore``): Redis when ``REDIS_URL`` is set, else a
local SQLite file under ``data_dir``; in memory for tests. docs/state.md describes them."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings
from app.state.file import FileStateStore
from app.state.memory import MemoryStateStore
from app.state.protocol import StateStore
from app.state.redis import RedisStateStore

__all__ = [
    "FileStateStore",
    "MemoryStateStore",
    "RedisStateStore",
    "StateStore",
    "open_state_store",
    "state_file",
]


def state_file(settings: Settings) -> Path:
    """The local state file: ``state.file``, relative to ``data_dir`` unless absolute."""
    return settings.data_path / Path(settings.state.file).expanduser()


def open_state_store(settings: Settings) -> StateStore:
    """The configured state store: Redis when ``REDIS_URL`` is set (connected on first use),
    else the local file (opened now; ``ConfigError`` when the path cannot be a state file)."""
    if settings.secrets.redis_url:
        return RedisStateStore.from_url(settings.secrets.redis_url, settings.state)
    return FileStateStore.open(state_file(settings), settings.state)
