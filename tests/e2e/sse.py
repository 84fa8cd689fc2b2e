"""Reading and checking a ``text/event-stream`` answer as a client sees it.

The parser is written here from the WHATWG "server-sent events" rules, independently of the
product's own client (``app.cli.client``), so a mistake shared by the server's encoder and the
product's parser cannot pass unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["SSEEvent", "Stream", "assert_event_grammar", "parse_sse", "read_stream"]


@dataclass
class SSEEvent:
    event: str
    data: Any
    """The event's data, decoded as JSON (every event of this API carries a JSON object)."""


def parse_sse(lines: Iterable[str]) -> Iterator[SSEEvent]:
    """Events of a stream, one per blank-line-terminated block that has data; comments skipped.

    Per the standard: ``field: value`` loses one space after the colon, a line without a colon
    is a field with an empty value, ``data`` lines join with newlines, unknown fields are ignored,
    and a block cut off before its blank line is not an event.
    """
    event, data = "", list[str]()
    for line in lines:
        if not line:
            if data:
                yield SSEEvent(event or "message", json.loads("\n".join(data)))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


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
