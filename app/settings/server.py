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

    header_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10.0
    """Time a connection has to send a complete request head (request line and headers): from
    connecting, or from its first byte after a previous response. A connection that sends
    nothing at all is closed after it too; one idle between requests is closed by uvicorn's
    keep-alive timeout (5 s)."""

    body_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10.0
    """Longest pause while a request body arrives: a body that stops arriving for this long is
    answered 408 and its connection closed."""

    max_connections: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    """Open connections one worker process holds at most. At the cap, the connection that has
    waited longest for its request head is closed to make room; if every one is busy with a
    request, the new connection is refused at once. None: the process's open-file limit
    (``ulimit -n``) minus ``open_files_reserve``, computed when ``kb serve`` starts. A value
    above that fails start-up: the cap must be reached before the open files run out."""

    open_files_reserve: Annotated[int, Meta(ge=32, le=100_000)] = 128
    """Open files kept back from connections for the model, the store, the logs, and the
    connections accepted in one go before the cap closes the extra ones."""
