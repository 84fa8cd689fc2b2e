"""A store call abandoned at the retrieval timeout, which fails later, is reported once, in the
service's structured log, and not as asyncio's "Future exception was never retrieved" traceback;
and the retrievals queued behind a hung store call are dropped at their deadline, never run.

The store is a stand-in that blocks until released and then raises, as a hung server connection
finally does; the retriever, its admission queue and worker thread and the event loop are the
real ones.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable

import msgspec
import pytest
import structlog

from app.records import SearchHit, SparseTerms
from app.retrieval import Retriever
from app.retrieval.admission import AdmissionQueue
from app.settings import RetrievalSettings
from tests.factories import ConstantEmbedder

pytestmark = pytest.mark.integration


class HangingStore:
    """Answers ``exists``; every search blocks until ``release`` is set, then fails."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.searches = 0

    def exists(self) -> bool:
        return True

    def search(self, **_: object) -> tuple[list[SearchHit], list[SearchHit]]:
        self.searches += 1
        self.release.wait(10.0)
        raise ConnectionError("server closed the connection")

    def sample_sparse(self, limit: int) -> list[SparseTerms]:
        return []

    def close(self) -> None:
        pass


async def eventually(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_store_call_failing_after_the_timeout_logs_one_structured_warning_and_no_traceback(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    store = HangingStore()
    settings = msgspec.structs.replace(RetrievalSettings(), timeout_s=0.05)
    retriever = Retriever(store, ConstantEmbedder(), settings)
    caplog.set_level(logging.DEBUG)
    try:
        with structlog.testing.capture_logs() as logs:
            result = await retriever.retrieve("which team approves payroll")
            assert result.status == "timeout"

            store.release.set()  # the abandoned call now fails, in the background
            await eventually(lambda: any(e["event"] == "abandoned_retrieval_failed" for e in logs))
            gc.collect()  # asyncio reports an unretrieved exception when the future is collected
            await asyncio.sleep(0.05)
    finally:
        retriever.close()

    warnings = [e for e in logs if e["event"] == "abandoned_retrieval_failed"]
    assert warnings == [
        {
            "event": "abandoned_retrieval_failed",
            "log_level": "warning",
            "error": "ConnectionError: server closed the connection",
        }
    ]
    printed = caplog.text + capfd.readouterr().err
    assert "Future exception was never retrieved" not in printed
    assert "Traceback" not in printed


async def test_a_store_call_that_fails_in_time_is_an_error_status_and_nothing_more() -> None:
    store = HangingStore()
    store.release.set()
    retriever = Retriever(store, ConstantEmbedder(), RetrievalSettings())
    try:
        with structlog.testing.capture_logs() as logs:
            result = await retriever.retrieve("which team approves payroll")
            await asyncio.sleep(0.05)
    finally:
        retriever.close()

    assert result.status == "error"
    assert result.detail == "ConnectionError: server closed the connection"
    assert not [e for e in logs if e["event"] == "abandoned_retrieval_failed"]


async def test_retrievals_queued_behind_a_hung_store_call_time_out_and_are_never_run() -> None:
    store = HangingStore()
    settings = msgspec.structs.replace(RetrievalSettings(), timeout_s=0.2)
    drops: list[str] = []
    queue = AdmissionQueue(capacity=16, workers=1, on_dropped=drops.append)
    retriever = Retriever(store, ConstantEmbedder(), settings, queue=queue)
    try:
        with structlog.testing.capture_logs():
            results = await asyncio.gather(
                *(retriever.retrieve(f"which team approves payroll {n}") for n in range(5))
            )
            assert [r.status for r in results] == ["timeout"] * 5
            store.release.set()  # the one call that ran now fails, in the background
            await eventually(lambda: queue.admitted == 0)
            await asyncio.sleep(0.1)  # time for a dropped one to run, were it not dropped
    finally:
        retriever.close()

    assert store.searches == 1  # the other four never reached the store
    assert drops == ["expired"] * 4
