"""Reading and checking a ``text/event-stream`` answer as a client sees it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.cli.client import SSEEvent, parse_sse

__all__ = ["Stream", "assert_event_grammar", "read_stream"]


@dataclass
class Stream:
    """One streamed answer: its events, and the comment lines that came before the first one."""

    events: list[SSEEvent]
    comments_before_first_event: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [e.event for e in self.events]

    def one(self, kind: str) -> dict[str, Any]:
        found = [e.data for e in self.events if e.event == kind]
        assert len(found) == 1, f"expected exactly one {kind!r} event, got {self.kinds}"
        return found[0]

    @property
    def answer(self) -> str:
        return "".join(e.data["text"] for e in self.events if e.event == "delta")


def read_stream(response: httpx.Response) -> Stream:
    """Read a streamed response to its end (wire lines, comments included)."""
    lines = list(response.iter_lines())
    comments: list[str] = []
    for line in lines:
        if line.startswith(("event:", "data:")):
            break
        if line.startswith(":"):
            comments.append(line)
    return Stream(events=list(parse_sse(iter(lines))), comments_before_first_event=comments)


def assert_event_grammar(kinds: Iterable[str]) -> None:
    """retrieval, delta*, then exactly one of done | error, and nothing after it."""
    kinds = list(kinds)
    assert kinds, "the stream carried no events"
    assert kinds[0] == "retrieval", kinds
    assert kinds.count("retrieval") == 1, kinds
    assert kinds[-1] in ("done", "error"), kinds
    assert kinds.count("done") + kinds.count("error") == 1, kinds
    assert set(kinds[1:-1]) <= {"delta"}, kinds
