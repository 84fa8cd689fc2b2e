"""Put the process's logging back after a test that configures it as an entry point does."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

__all__ = ["logging_restored"]

_NAMES = ("kb", "app", "ingest")


@contextmanager
def logging_restored() -> Iterator[None]:
    """Save the root handlers and level, the project loggers' levels and structlog's
    configuration; restore them on exit, whatever the test did in between."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in _NAMES}
    config = structlog.get_config()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)
        structlog.configure(**config)
