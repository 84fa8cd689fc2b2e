"""One process at a time on an embedded store: an advisory lock taken at once or refused at once.

Qdrant Edge locks its write-ahead log too, but its error ("Can't init WAL: WouldBlock") says
nothing a user can act on, and comes only after part of the shard was opened. The store takes
its own lock on the folder first, without waiting, so a second ``kb ingest`` or ``kb serve`` is
told immediately which folder is held and what to do. The lock is ``flock``: the kernel releases
it when the process ends, however it ends, so a crash leaves nothing to clean up.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from app.errors import StoreLockedError

__all__ = ["FolderLock"]

_LOCK_FILE = ".lock"


class FolderLock:
    """An exclusive lock on ``folder``, held from construction until ``release``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        fd = os.open(folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(
                f"the embedded store at {folder} is in use by another process (a running `kb serve`, "
                "or another `kb ingest`). Stop that process and run again, or run a Qdrant server "
                "and point both at it with QDRANT_URL."
            ) from None
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
