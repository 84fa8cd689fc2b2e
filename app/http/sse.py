"""Server-sent events: encoding pipeline events, and heartbeats while the stream waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from app.pipeline import PipelineEvent

__all__ = ["encode_event", "with_heartbeats"]

HEARTBEAT = b": keep-alive\n\n"


def encode_event(event: PipelineEvent) -> bytes:
    """``event: <type>`` + ``data: <json>``; the JSON never contains a raw newline."""
    payload: dict[str, Any] = msgspec.to_builtins(event)
    kind: str = payload.pop("type")
    return b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode(payload) + b"\n\n"


async def with_heartbeats(events: AsyncIterator[bytes], interval: float) -> AsyncIterator[bytes]:
    """Yield ``events``, and a comment line whenever nothing came for ``interval`` seconds.

    Proxies and browsers drop quiet connections; a comment keeps them open while retrieval or
    the model's first token is slow. When this generator is closed or cancelled (the client went
    away), the upstream iterator is closed too, which cancels the model call behind it.
    """
    iterator = aiter(events)
    pending: asyncio.Task[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield HEARTBEAT
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BaseException):
                await aclose()
