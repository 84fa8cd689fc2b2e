"""Settings: the HTTP server (``kb serve``, ``app.http``)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from app.settings.base import PositiveFloat, _Section

__all__ = ["ServerSettings"]


class ServerSettings(_Section, frozen=True):
    host: str = "127.0.0.1"
    """Interface to bind."""

    port: Annotated[int, Meta(ge=1, le=65535)] = 8000
    """TCP port."""

    workers: Annotated[int, Meta(ge=1, le=64)] = 1
    """Worker processes. More than one needs a Qdrant server (QDRANT_URL): the embedded store can
    be opened by one process only."""

    max_body_bytes: Annotated[int, Meta(ge=1024, le=10_000_000)] = 65_536
    """Largest accepted request body."""

    heartbeat_s: PositiveFloat = 10.0
    """Interval of SSE comment heartbeats while the stream waits."""
