"""A small client of the service's SSE stream, used by ``kb ask``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec

__all__ = ["SSEEvent", "stream_answer"]


class SSEEvent(msgspec.Struct):
    event: str
    data: dict[str, Any]


def parse_sse(lines: Iterator[str]) -> Iterator[SSEEvent]:
    """Events of a text/event-stream (comments skipped)."""
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield SSEEvent(event, msgspec.json.decode("\n".join(data)))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield SSEEvent(event, msgspec.json.decode("\n".join(data)))


def stream_answer(
    base_url: str, body: dict[str, Any], *, timeout: float = 120.0, headers: dict[str, str] | None = None
) -> Iterator[SSEEvent]:
    with (
        httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout, connect=5.0)) as client,
        client.stream("POST", "/ask", json=body, headers=headers or {}) as response,
    ):
        if response.status_code != 200:
            response.read()
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {"code": "http_error", "message": response.text}
            yield SSEEvent(
                "error",
                {
                    "code": error.get("code"),
                    "message": error.get("message"),
                    "status": response.status_code,
                },
            )
            return
        yield from parse_sse(response.iter_lines())
