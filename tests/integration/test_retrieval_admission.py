"""The query path under a burst, end to end: the real model, the real embedded store (Qdrant Edge),
the real retriever with its admission queue, question batcher and store workers.

A burst beyond ``retrieval.queue_size`` is refused at once with ``timeout`` (the service is
busy), and the next lone request is served; a burst that outlasts its deadline leaves no backlog
behind (what was still queued is dropped unrun, and the next lone request gets ``ok``); requests
whose clients left never reach the store; questions asked together share model calls and get
the candidates they get alone. The store is wrapped only to count the searches that reach it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import pytest

from app.embedding import EmbeddingBatcher
from app.retrieval import Retriever
from app.retrieval.admission import AdmissionQueue, DropReason
from app.retrieval.bm25 import LexicalEncoder
from app.settings import RetrievalSettings, Settings
from app.store import DEFAULT_TENANT, QdrantStore
from tests.factories import chunk_record

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSAGES = [
    "Payroll runs on the 25th of each month; the finance team approves it two days before.",
    "Database snapshots are taken nightly and kept for thirty days on the backup volume.",
    "New laptops are ordered through the IT portal and arrive within five working days.",
    "Travel expenses are reimbursed within two weeks once the receipts are uploaded.",
    "The office opens at eight; the front desk issues visitor badges until six.",
    "Production deploys need a green build and one approving review from the on-call engineer.",
]
QUESTIONS = [
    "When does payroll run?",
    "How long are database snapshots kept?",
    "How do I order a new laptop?",
    "When are travel expenses reimbursed?",
    "When does the office open?",
    "What does a production deploy need?",
    "Who approves payroll?",
    "Where are backups stored?",
]


class CountingStore:
    """The real store, counting the searches that reach it."""

    def __init__(self, store: QdrantStore) -> None:
        self.store = store
        self.searches = 0

    def exists(self) -> bool:
        return self.store.exists()

    def search(self, **kwargs: Any) -> Any:
        self.searches += 1
        return self.store.search(**kwargs)

    def sample_sparse(self, limit: int, **kwargs: Any) -> Any:
        return self.store.sample_sparse(limit, **kwargs)

    def close(self) -> None:
        pass


@pytest.fixture
def filled(store: QdrantStore, embedder) -> CountingStore:
    store.ensure_collection(model_name=embedder.model_name, dimension=embedder.dimension)
    records = [
        chunk_record(
            f"3c1e2b7a-5d4f-4e8a-9b6c-0000000000{n:02d}", text=text, title="Office", source=f"kb/{n}.md"
        )
        for n, text in enumerate(PASSAGES)
    ]
    texts = [r.embedding_text() for r in records]
    encoder = LexicalEncoder()
    store.upsert(
        records, embedder.embed(texts), [encoder.encode_document(t) for t in texts], tenant=DEFAULT_TENANT
    )
    return CountingStore(store)


def retriever_for(
    store: CountingStore, embedder, settings: Settings, *, batches: list[int] | None = None, **retrieval: Any
) -> tuple[Retriever, AdmissionQueue, list[DropReason]]:
    chosen: RetrievalSettings = msgspec.structs.replace(settings.retrieval, **retrieval)
    drops: list[DropReason] = []
    queue = AdmissionQueue(capacity=chosen.queue_size, workers=2, on_dropped=drops.append)
    batcher = EmbeddingBatcher(
        embedder,
        window_s=chosen.batch_window_ms / 1000,
        max_batch=chosen.batch_max,
        on_batch=batches.append if batches is not None else None,
    )
    return Retriever(store, batcher, chosen, queue=queue), queue, drops  # type: ignore[arg-type]


async def eventually(condition: Callable[[], bool], *, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def burst(count: int) -> list[str]:
    """``count`` distinct questions (the batcher must embed each)."""
    return [f"{QUESTIONS[n % len(QUESTIONS)]} (asked {n})" for n in range(count)]


async def test_a_burst_beyond_the_bound_is_refused_at_once_and_the_next_request_is_served(
    filled: CountingStore, embedder, settings: Settings
) -> None:
    # A generous timeout: here the admitted ones must be served, however loaded the machine.
    retriever, queue, drops = retriever_for(filled, embedder, settings, queue_size=4, timeout_s=30.0)
    try:
        results = await asyncio.gather(*(retriever.retrieve(q) for q in burst(40)))
        busy = [r.detail is not None and "busy" in r.detail for r in results]
        refused = [r for r, b in zip(results, busy, strict=True) if b]
        served = [r for r, b in zip(results, busy, strict=True) if not b]

        assert len(refused) == 36 and all(r.status == "timeout" for r in refused)
        assert all(r.took_ms < 1000 for r in refused)  # at once, not at any deadline
        assert [r.status for r in served] == ["ok"] * 4
        assert drops == ["full"] * 36
        assert queue.admitted == 0

        lone = await retriever.retrieve("Who approves payroll?")
        assert lone.status == "ok"
        assert lone.candidates[0].record.text == PASSAGES[0]
    finally:
        retriever.close()


async def test_a_burst_that_outlasts_its_deadline_leaves_no_backlog(
    filled: CountingStore, embedder, settings: Settings
) -> None:
    # One store search per retrieval (no expansion), so searches count retrievals that ran.
    retriever, queue, drops = retriever_for(
        filled, embedder, settings, queue_size=10_000, timeout_s=1.0, expansion_terms=0
    )
    try:
        results = await asyncio.gather(*(retriever.retrieve(q) for q in burst(600)))
        statuses = [r.status for r in results]
        timed_out = statuses.count("timeout")
        assert timed_out > 0, "the burst did not outlast its deadline: make it larger"
        assert "error" not in statuses

        # What was queued when its deadline passed is dropped, not run later: the queue empties
        # as soon as the few searches running at their deadline finish, and nothing runs after.
        await eventually(lambda: queue.admitted == 0, within=10.0)
        ran = filled.searches
        await asyncio.sleep(0.5)
        assert filled.searches == ran
        served = len(results) - timed_out
        # Timed out after their search started: while it ran (a few per worker), or after it
        # ended, while the event loop, busy with the burst's coroutines, had not yet resumed
        # them. Either way a small share of the burst; a backlog run late would be hundreds.
        abandoned = ran - served
        assert 0 <= abandoned <= max(5 * queue.workers, len(results) // 20), (abandoned, timed_out)
        assert drops.count("expired") == timed_out - abandoned

        lone = await retriever.retrieve("Who approves payroll?")
        assert lone.status == "ok", lone.detail
    finally:
        retriever.close()


async def test_retrievals_whose_clients_left_never_reach_the_store(
    filled: CountingStore, embedder, settings: Settings
) -> None:
    retriever, queue, drops = retriever_for(filled, embedder, settings)
    try:
        tasks = [asyncio.create_task(retriever.retrieve(q)) for q in burst(50)]
        await asyncio.sleep(0)  # every one admitted and waiting for its question's vector
        for task in tasks:
            task.cancel()  # the clients left
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.5)  # time for a dropped one to run, were it not dropped

        assert all(task.cancelled() for task in tasks)
        assert filled.searches == 0
        assert drops == ["cancelled"] * 50
        assert queue.admitted == 0
        assert (await retriever.retrieve("Who approves payroll?")).status == "ok"
    finally:
        retriever.close()


async def test_questions_asked_together_share_model_calls_and_get_the_candidates_they_get_alone(
    filled: CountingStore, embedder, settings: Settings
) -> None:
    batches: list[int] = []
    retriever, _, _ = retriever_for(filled, embedder, settings, batches=batches)
    try:
        alone = [await retriever.retrieve(q) for q in QUESTIONS]
        assert batches == [1] * len(QUESTIONS)
        batches.clear()

        together = await asyncio.gather(*(retriever.retrieve(q) for q in QUESTIONS))
        # The first goes at once (the model was idle); the rest gather while it is embedded.
        assert sum(batches) == len(QUESTIONS) and len(batches) <= 3
        for one, many in zip(alone, together, strict=True):
            assert many.status == one.status
            assert [c.record.point_id for c in many.candidates] == [c.record.point_id for c in one.candidates]
            np.testing.assert_allclose(
                [c.score for c in many.candidates], [c.score for c in one.candidates], atol=1e-4
            )
    finally:
        retriever.close()
