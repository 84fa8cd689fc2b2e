"""The question batcher (``app.embedding.batching``): concurrent questions share one model call,
each gets the vector it would have got alone, and what its caller gave up on is not embedded.

The embedder under it is a small real ``Embedder`` (vectors derived from the text) that records
every call it gets; where a test needs questions to gather, a gate holds its first call, as a
busy model does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor

import numpy as np
import pytest

from app.embedding import EmbeddingBatcher, EmbeddingExpired, QueryEmbeddingCache

pytestmark = pytest.mark.unit


class RecordingModel:
    """An ``Embedder`` that records its calls; ``hold`` makes the next call wait for ``go``."""

    model_name = "recording"
    dimension = 4
    max_tokens = 128

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.hold = False
        self.holding = threading.Event()
        self.go = threading.Event()
        self.fail: Exception | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.hold:
            self.hold = False
            self.holding.set()
            self.go.wait(10.0)
        if self.fail is not None:
            raise self.fail
        return vectors_of(texts)

    def count(self, text: str) -> int:
        return len(text.split())

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def vectors_of(texts: Sequence[str]) -> np.ndarray:
    rows = [[len(t), sum(map(ord, t)) % 97, t.count(" "), 1.0] for t in texts]
    vectors = np.array(rows, dtype=np.float32).reshape(len(texts), 4)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


QUESTIONS = [f"question number {n} about {'x' * n}" for n in range(12)]


def hold_the_model(model: RecordingModel, batcher: EmbeddingBatcher) -> Future[np.ndarray]:
    """Start a call that the model holds until ``model.go`` is set."""
    model.hold = True
    first = batcher.submit(["the call that keeps the model busy"])
    assert model.holding.wait(10.0)
    return first


def test_questions_arriving_while_the_model_is_busy_share_one_call_and_get_their_own_vectors() -> None:
    model = RecordingModel()
    batcher = EmbeddingBatcher(model, window_s=0.0, max_batch=64)
    try:
        first = hold_the_model(model, batcher)
        with ThreadPoolExecutor(max_workers=len(QUESTIONS)) as pool:
            futures = [pool.submit(batcher.submit, [q]) for q in QUESTIONS]
            pending = [f.result(10.0) for f in futures]
        model.go.set()
        first.result(10.0)
        vectors = [p.result(10.0) for p in pending]

        assert len(model.calls) == 2  # the held call, then all twelve questions together
        assert sorted(model.calls[1]) == sorted(QUESTIONS)
        for question, vector in zip(QUESTIONS, vectors, strict=True):
            # Exactly what one call of its own gives, in its shape.
            np.testing.assert_array_equal(vector, vectors_of([question]))
    finally:
        batcher.close()


def test_a_burst_shares_a_call_through_the_window_when_the_model_is_idle() -> None:
    model = RecordingModel()
    # A window far longer than the burst takes to arrive; the batch closes when it is full.
    batcher = EmbeddingBatcher(model, window_s=5.0, max_batch=8)
    try:
        batcher.embed(["a first question, a while before the burst"])
        start = threading.Barrier(8, timeout=10.0)

        def ask(question: str) -> np.ndarray:
            start.wait()
            return batcher.embed([question])

        with ThreadPoolExecutor(max_workers=8) as pool:
            vectors = list(pool.map(ask, QUESTIONS[:8]))

        assert [len(call) for call in model.calls] == [1, 8]
        for question, vector in zip(QUESTIONS[:8], vectors, strict=True):
            np.testing.assert_array_equal(vector, vectors_of([question]))
    finally:
        batcher.close()


def test_a_lone_question_after_a_quiet_spell_waits_for_no_window() -> None:
    model = RecordingModel()
    batcher = EmbeddingBatcher(model, window_s=5.0, max_batch=8)
    try:
        started = time.perf_counter()
        batcher.embed(["a lone question"])
        assert time.perf_counter() - started < 2.5  # well under the 5 s window
    finally:
        batcher.close()


def test_a_batch_holds_at_most_max_batch_texts() -> None:
    model = RecordingModel()
    batcher = EmbeddingBatcher(model, window_s=0.0, max_batch=4)
    try:
        first = hold_the_model(model, batcher)
        pending = [batcher.submit([q]) for q in QUESTIONS[:10]]
        model.go.set()
        first.result(10.0)
        for p in pending:
            p.result(10.0)
        assert [len(call) for call in model.calls] == [1, 4, 4, 2]
        assert [t for call in model.calls[1:] for t in call] == QUESTIONS[:10]  # oldest first
    finally:
        batcher.close()


def test_a_cancelled_question_is_not_embedded() -> None:
    model = RecordingModel()
    batcher = EmbeddingBatcher(model, window_s=0.0)
    try:
        first = hold_the_model(model, batcher)
        gone = batcher.submit(["the client left"])
        kept = batcher.submit(["the client waits"])
        assert gone.cancel()
        model.go.set()
        first.result(10.0)
        kept.result(10.0)
        assert model.calls[1:] == [["the client waits"]]
        with pytest.raises(CancelledError):
            gone.result(0)
    finally:
        batcher.close()


def test_a_question_past_its_deadline_is_not_embedded() -> None:
    now = [100.0]
    model = RecordingModel()
    batcher = EmbeddingBatcher(model, window_s=0.0, clock=lambda: now[0])
    try:
        first = hold_the_model(model, batcher)
        late = batcher.submit(["timed out while queued"], deadline=101.0)
        on_time = batcher.submit(["still in time"], deadline=200.0)
        now[0] = 150.0
        model.go.set()
        first.result(10.0)
        on_time.result(10.0)
        with pytest.raises(EmbeddingExpired):
            late.result(10.0)
        assert model.calls[1:] == [["still in time"]]
    finally:
        batcher.close()


def test_a_model_failure_reaches_every_question_of_the_batch_and_the_batcher_goes_on() -> None:
    model = RecordingModel()
    batcher = EmbeddingBatcher(model, window_s=0.0)
    try:
        first = hold_the_model(model, batcher)
        pending = [batcher.submit([q]) for q in QUESTIONS[:3]]
        model.fail = RuntimeError("out of memory")
        model.go.set()
        for p in (first, *pending):
            with pytest.raises(RuntimeError, match="out of memory"):
                p.result(10.0)
        model.fail = None
        np.testing.assert_array_equal(batcher.embed(["again"]), vectors_of(["again"]))
    finally:
        batcher.close()


def test_over_the_cache_a_repeated_question_is_answered_without_queueing() -> None:
    model = RecordingModel()
    cache = QueryEmbeddingCache(model, size=16)
    batcher = EmbeddingBatcher(cache, window_s=0.0)
    try:
        batcher.embed(["how do I ingest?"])
        first = hold_the_model(model, batcher)  # the model is busy: a queued question would wait
        repeated = batcher.submit(["how do I ingest?"])
        assert repeated.done()
        np.testing.assert_array_equal(repeated.result(0), vectors_of(["how do I ingest?"]))
        mixed = batcher.submit(["how do I ingest?", "a new question"])
        model.go.set()
        first.result(10.0)
        np.testing.assert_array_equal(mixed.result(10.0), vectors_of(["how do I ingest?", "a new question"]))
        # The mixed call's miss went to the model, its hit came from the cache.
        assert model.calls[-1] == ["a new question"]
    finally:
        batcher.close()


def test_it_is_an_embedder_for_blocking_callers() -> None:
    model = RecordingModel()
    batcher = EmbeddingBatcher(model)
    try:
        assert (batcher.model_name, batcher.dimension, batcher.max_tokens) == ("recording", 4, 128)
        assert batcher.embed([]).shape == (0, 4)
        np.testing.assert_array_equal(batcher.embed(QUESTIONS[:3]), vectors_of(QUESTIONS[:3]))
        assert batcher.count("three words here") == 3
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(lambda q: batcher.embed([q]), QUESTIONS))
        for question, vector in zip(QUESTIONS, results, strict=True):
            np.testing.assert_array_equal(vector, vectors_of([question]))
    finally:
        batcher.close()


def test_close_cancels_what_waits() -> None:
    model = RecordingModel()
    batcher = EmbeddingBatcher(model, window_s=0.0)
    first = hold_the_model(model, batcher)
    waiting = batcher.submit(["never embedded"])
    batcher.close()
    model.go.set()
    first.result(10.0)
    assert waiting.cancelled()
    with pytest.raises(RuntimeError):
        batcher.submit(["after close"])


class CountingTokenizer(RecordingModel):
    def __init__(self) -> None:
        super().__init__()
        self.counted: list[str] = []

    def count(self, text: str) -> int:
        self.counted.append(text)
        return len(text.split())


def test_token_counts_are_remembered_for_the_last_texts_counted() -> None:
    model = CountingTokenizer()
    batcher = EmbeddingBatcher(model, count_cache=2)
    try:
        assert [batcher.count(t) for t in ("a b", "c d e", "a b", "f")] == [2, 3, 2, 1]
        assert model.counted == ["a b", "c d e", "f"]  # "a b" came from the cache
        assert batcher.count("c d e") == 3  # evicted by "f" (least recently used): counted again
        assert model.counted[-1] == "c d e"
        uncached = EmbeddingBatcher(model, count_cache=0)
        uncached.count("a b")
        assert model.counted[-1] == "a b"
    finally:
        batcher.close()


# -- the background lane (the offline answerer's sentences) -------------------------------------

SENTENCES = ["the question again", "a first sentence of the context", "a second one"]


def test_questions_go_before_background_work_queued_earlier() -> None:
    model = RecordingModel()
    batcher = EmbeddingBatcher(model, window_s=0.0, max_batch=8)
    try:
        first = hold_the_model(model, batcher)
        sentences = batcher.submit(SENTENCES, background=True)
        question = batcher.submit(["a question that arrived later"])
        model.go.set()
        first.result(10.0)
        np.testing.assert_array_equal(question.result(10.0), vectors_of(["a question that arrived later"]))
        np.testing.assert_array_equal(sentences.result(10.0), vectors_of(SENTENCES))
        assert model.calls[1:] == [["a question that arrived later"], SENTENCES]  # never one batch
    finally:
        batcher.close()


def test_background_work_that_waited_its_turn_goes_next_then_questions_again() -> None:
    now = [100.0]
    model = RecordingModel()
    batcher = EmbeddingBatcher(model, window_s=0.0, max_batch=1, background_wait_s=2.0, clock=lambda: now[0])
    try:
        first = hold_the_model(model, batcher)
        sentences = [batcher.submit([f"sentence {n}"], background=True) for n in range(2)]
        questions = [batcher.submit([q]) for q in QUESTIONS[:3]]
        now[0] = 103.0  # both background calls have now waited longer than 2 s
        model.go.set()
        first.result(10.0)
        for future in (*sentences, *questions):
            future.result(10.0)
        # One overdue background call, one question, the other overdue call, then the rest.
        assert model.calls[1:] == [
            ["sentence 0"],
            [QUESTIONS[0]],
            ["sentence 1"],
            [QUESTIONS[1]],
            [QUESTIONS[2]],
        ]
    finally:
        batcher.close()


def test_background_texts_bypass_the_question_cache_and_the_batch_metric() -> None:
    model = RecordingModel()
    cache = QueryEmbeddingCache(model, size=16)
    sizes: list[int] = []
    batcher = EmbeddingBatcher(cache, window_s=0.0, on_batch=sizes.append)
    try:
        batcher.embed(["a question"])
        vectors = batcher.background.embed(["a question", *SENTENCES])
        np.testing.assert_array_equal(vectors, vectors_of(["a question", *SENTENCES]))
        assert model.calls[-1] == ["a question", *SENTENCES]  # the model, not the cache, answered
        assert len(cache) == 1  # sentences do not evict questions
        assert sizes == [1]  # the metric counts question batches
        lane = batcher.background
        assert (lane.model_name, lane.dimension, lane.max_tokens) == ("recording", 4, 128)
        assert lane.count("three words here") == 3
    finally:
        batcher.close()


def test_close_cancels_waiting_background_work() -> None:
    model = RecordingModel()
    batcher = EmbeddingBatcher(model, window_s=0.0)
    first = hold_the_model(model, batcher)
    waiting = batcher.submit(SENTENCES, background=True)
    batcher.close()
    model.go.set()
    first.result(10.0)
    assert waiting.cancelled()
