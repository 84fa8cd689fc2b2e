"""A burst of concurrent streaming ``/ask`` against a real server, and a lone request after it.

The app (real uvicorn on loopback, real model, real embedded store of ``tests/data/mixed``,
the offline extractive answerer, limits off) gets 100 streaming questions at once, each on its
own connection. Every stream must end with ``done`` after a retrieval event whose status is one
the API defines, no response may be a 5xx, and the next lone request right after the burst must
get ``ok``: timed-out or abandoned work of the burst must not keep the service from answering.

Nothing here is timed beyond generous bounds: under load (a shared CI machine) a retrieval may
end in ``timeout``, which is a defined outcome; its figures belong to
``bench/bench_concurrency.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import StartApp
from tests.e2e.sse import Stream, assert_event_grammar, parse_sse

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

BURST = 100
TOPICS = (
    "How do I install on Linux?",
    "What should Homebrew users install first?",
    "When does the nightly ingestion job run?",
    "Whom do I page when the question endpoint returns errors?",
    "Why are very large PDFs slow?",
)
PHRASINGS = ("", "Please tell me: ", "Quick question. ", "Hi! ", "I wonder: ")
ENDINGS = ("", " Thanks.", " Thank you!", " Please be brief.")
LONE = "How do I install the kb package on Linux?"
"""Asked only after the burst (so no cache answers it); it is answered from mixed/guide.md."""
STATUSES = {"ok", "empty", "timeout"}
"""Retrieval statuses a burst may produce (``error`` would be a store fault, not load)."""


def distinct_questions(count: int) -> list[str]:
    """``count`` distinct texts: no answer or embedding cache serves one from another."""
    texts = [f"{p}{t}{e}" for t, p, e in itertools.product(TOPICS, PHRASINGS, ENDINGS)]
    assert len(texts) >= count
    return texts[:count]


async def ask(client: httpx.AsyncClient, question: str) -> tuple[int, Stream | str]:
    """(HTTP status, the stream read to its end) or, for anything but 200, (status, body)."""
    async with client.stream("POST", "/ask", json={"question": question}) as response:
        if response.status_code != 200:
            return response.status_code, (await response.aread()).decode(errors="replace")
        lines = [line async for line in response.aiter_lines()]
    return 200, Stream(events=list(parse_sse(lines)))


async def test_a_burst_of_100_streams_all_end_with_done_and_a_lone_request_after_it_gets_ok(
    start_app: StartApp,
) -> None:
    with start_app() as server:
        limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
        # Generous: the bound is on hanging, not on speed.
        timeout = httpx.Timeout(90.0, connect=30.0)
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=timeout) as client:
            outcomes = await asyncio.gather(*(ask(client, q) for q in distinct_questions(BURST)))

        statuses = Counter(status for status, _ in outcomes)
        assert statuses == {200: BURST}, statuses  # no 5xx (nor any other refusal: limits are off)
        streams = [stream for _, stream in outcomes if isinstance(stream, Stream)]
        retrievals: Counter[str] = Counter()
        for stream in streams:
            assert_event_grammar(stream.kinds)
            assert stream.kinds[-1] == "done", stream.kinds  # not an error event
            retrievals[stream.one("retrieval")["status"]] += 1
        assert set(retrievals) <= STATUSES, retrievals

        # Right after the burst, on a fresh connection: the service is answering again.
        async with httpx.AsyncClient(base_url=server.base_url, timeout=timeout) as client:
            status, lone = await ask(client, LONE)
        assert status == 200, lone
        assert isinstance(lone, Stream)
        assert_event_grammar(lone.kinds)
        retrieval: dict[str, Any] = lone.one("retrieval")
        assert retrieval["status"] == "ok", (retrieval, retrievals)
        assert retrieval["sources"][0]["source"] == "mixed/guide.md"
        assert lone.kinds[-1] == "done"
