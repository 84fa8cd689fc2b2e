"""Admission control (``app.retrieval.admission``): a bound on retrievals in flight, deadlines and
cancellation that drop queued work before it runs, and an immediate refusal when full.

The queue, its threads and the futures are the real ones; the work is plain functions that
record whether they ran, and a gate (an event) holds the single worker busy where a test needs
work to wait. Deadlines are tested with an injected clock, so no test depends on timing. The
last test runs the real retriever over a store stand-in whose search waits for a gate.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future

import msgspec
import pytest

from app.observability import Metrics
from app.retrieval import Retriever
from app.retrieval.admission import AdmissionQueue, DropReason, WorkExpired, default_search_workers
from app.settings import RetrievalSettings
from tests.factories import ConstantEmbedder

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.drops: list[DropReason] = []
        self.depths: list[int] = []

    def queue(
        self, *, capacity: int = 8, workers: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> AdmissionQueue:
        return AdmissionQueue(
            capacity=capacity,
            workers=workers,
            clock=clock,
            on_depth=self.depths.append,
            on_dropped=self.drops.append,
        )


def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def busy(queue: AdmissionQueue) -> tuple[threading.Event, Future[str]]:
    """Hold the queue's one worker until the event is set; returns it and the running future."""
    gate = threading.Event()
    started = threading.Event()

    def hold() -> str:
        started.set()
        gate.wait(10.0)
        return "held"

    slot = queue.admit(60.0)
    assert slot is not None
    future = slot.submit(hold)
    assert started.wait(10.0)
    return gate, future


def test_the_bound_refuses_at_once_and_frees_a_slot_when_a_retrieval_ends() -> None:
    recorder = Recorder()
    queue = recorder.queue(capacity=2)
    try:
        first, second = queue.admit(3.0), queue.admit(3.0)
        assert first is not None and second is not None

        started = time.perf_counter()
        assert queue.admit(3.0) is None
        assert time.perf_counter() - started < 1.0  # refused, not queued: no waiting at all
        assert recorder.drops == ["full"]
        assert queue.admitted == 2

        first.release()
        third = queue.admit(3.0)
        assert third is not None
        assert queue.admitted == 2
    finally:
        queue.close()


def test_work_whose_deadline_passed_while_queued_is_dropped_unrun() -> None:
    clock = Clock()
    recorder = Recorder()
    queue = recorder.queue(clock=clock)
    ran: list[str] = []
    try:
        gate, held = busy(queue)
        slot = queue.admit(3.0)
        assert slot is not None
        late = slot.submit(lambda: ran.append("late"))
        assert queue.depth == 1

        clock.now += 3.5  # the retrieval's deadline passes while the worker is busy
        gate.set()
        assert held.result(10.0) == "held"
        with pytest.raises(WorkExpired):
            late.result(10.0)
        assert ran == []
        assert not slot.started

        slot.release()
        assert recorder.drops == ["expired"]
        wait_until(lambda: queue.admitted == 1)  # the busy one still holds its slot
    finally:
        queue.close()


def test_cancelled_work_leaves_the_queue_at_once_and_never_runs() -> None:
    recorder = Recorder()
    queue = recorder.queue()
    ran: list[str] = []
    try:
        gate, held = busy(queue)
        slot = queue.admit(60.0)
        assert slot is not None
        queued = slot.submit(lambda: ran.append("queued"))
        assert queue.depth == 1

        assert queued.cancel()  # its client left
        assert queue.depth == 0
        assert recorder.depths[-1] == 0
        slot.release(cancelled=True)
        assert recorder.drops == ["cancelled"]

        gate.set()
        held.result(10.0)
        time.sleep(0.05)  # give the worker every chance to run what it should not
        assert ran == []
        with pytest.raises(CancelledError):
            queued.result(0)
    finally:
        queue.close()


def test_running_work_keeps_its_slot_until_it_finishes() -> None:
    queue = Recorder().queue(capacity=1)
    try:
        gate = threading.Event()
        slot = queue.admit(60.0)
        assert slot is not None
        running = slot.submit(lambda: gate.wait(10.0))
        wait_until(lambda: slot.started)

        slot.release()  # the retrieval gave up (timed out); its store call cannot be stopped
        assert queue.admit(60.0) is None  # so it still counts against the bound

        gate.set()
        running.result(10.0)
        wait_until(lambda: queue.admitted == 0)
        assert queue.admit(60.0) is not None
    finally:
        queue.close()


def test_several_workers_run_work_at_the_same_time() -> None:
    queue = Recorder().queue(workers=3)
    try:
        inside = threading.Barrier(3, timeout=10.0)
        slots = [queue.admit(60.0) for _ in range(3)]
        futures = [slot.submit(inside.wait) for slot in slots if slot is not None]
        # Each call waits for the other two: this only finishes if all three run at once.
        assert sorted(f.result(10.0) for f in futures) == [0, 1, 2]
    finally:
        queue.close()


async def test_a_timed_out_awaiter_cancels_its_queued_work() -> None:
    recorder = Recorder()
    queue = recorder.queue()
    ran: list[str] = []
    try:
        gate, held = busy(queue)
        slot = queue.admit(60.0)
        assert slot is not None
        queued = slot.submit(lambda: ran.append("queued"))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await asyncio.wrap_future(queued)
        assert queued.cancelled()
        assert queue.depth == 0
        gate.set()
        await asyncio.wrap_future(held)
        await asyncio.sleep(0.05)
        assert ran == []
    finally:
        queue.close()


def test_a_probe_runs_when_every_slot_is_taken_and_ahead_of_queued_searches() -> None:
    queue = Recorder().queue(capacity=2)
    order: list[str] = []
    try:
        gate, held = busy(queue)  # takes one slot and the worker
        slot = queue.admit(60.0)
        assert slot is not None
        search = slot.submit(lambda: order.append("search"))
        assert queue.admit(60.0) is None  # full

        probe = queue.submit(lambda: order.append("probe"), timeout_s=10.0)
        gate.set()
        held.result(10.0)
        probe.result(10.0)
        search.result(10.0)
        assert order == ["probe", "search"]
    finally:
        queue.close()


def test_a_failure_reaches_the_awaiter_and_the_worker_goes_on() -> None:
    queue = Recorder().queue()
    try:

        def fail() -> None:
            raise ConnectionError("server closed the connection")

        with pytest.raises(ConnectionError):
            queue.submit(fail, timeout_s=10.0).result(10.0)
        assert queue.submit(lambda: 42, timeout_s=10.0).result(10.0) == 42
    finally:
        queue.close()


def test_bad_bounds_fail_early() -> None:
    with pytest.raises(ValueError):
        AdmissionQueue(capacity=0, workers=1)
    with pytest.raises(ValueError):
        AdmissionQueue(capacity=1, workers=0)


@pytest.mark.parametrize(("cores", "workers"), [(1, 2), (2, 4), (3, 6), (16, 8)])
def test_default_search_workers_follow_the_cores_within_bounds(cores: int, workers: int) -> None:
    assert default_search_workers(cores) == workers


class HeldStore:
    """A store stand-in whose searches wait for ``release``; it counts the searches it ran."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.searches = 0

    def exists(self) -> bool:
        return True

    def search(self, **_: object) -> tuple[list[object], list[object]]:
        self.searches += 1
        self.release.wait(10.0)
        return [], []

    def sample_sparse(self, limit: int, **_: object) -> list[object]:
        return []

    def close(self) -> None:
        pass


async def test_a_retrieval_beyond_the_bound_gets_timeout_at_once_saying_the_service_is_busy() -> None:
    store = HeldStore()
    settings = msgspec.structs.replace(RetrievalSettings(), queue_size=1, expansion_terms=0)
    recorder = Recorder()
    retriever = Retriever(
        store,  # type: ignore[arg-type]
        ConstantEmbedder(),
        settings,
        queue=recorder.queue(capacity=settings.queue_size),
    )
    try:
        first = asyncio.create_task(retriever.retrieve("which team approves payroll"))
        while store.searches == 0:
            await asyncio.sleep(0.005)

        refused = await retriever.retrieve("who signs the contracts")
        assert refused.status == "timeout"
        assert refused.detail is not None and "busy" in refused.detail
        assert refused.took_ms < 1000  # at once, not after the 3 s timeout
        assert recorder.drops == ["full"]

        store.release.set()
        assert (await first).status == "empty"
        assert (await retriever.retrieve("who signs the contracts")).status == "empty"
        assert store.searches == 2
    finally:
        retriever.close()


async def test_a_retrieval_after_close_is_an_error_status_not_an_exception() -> None:
    retriever = Retriever(HeldStore(), ConstantEmbedder(), RetrievalSettings())  # type: ignore[arg-type]
    retriever.close()
    result = await retriever.retrieve("which team approves payroll")
    assert result.status == "error"
    assert result.detail == "the retrieval queue is closed"


def test_close_waits_a_bounded_time_for_running_work_and_cancels_what_waits() -> None:
    queue = Recorder().queue()
    gate, held = busy(queue)
    slot = queue.admit(60.0)
    assert slot is not None
    waiting = slot.submit(lambda: "never")
    threading.Timer(0.2, gate.set).start()  # the running call ends a little later

    queue.close(wait_s=10.0)
    assert held.done() and held.result(0) == "held"  # close waited for it
    assert waiting.cancelled()

    stuck = Recorder().queue()
    stuck_gate, stuck_call = busy(stuck)
    started = time.perf_counter()
    stuck.close(wait_s=0.1)  # a call that does not end is not waited for beyond the bound
    assert time.perf_counter() - started < 5.0
    assert not stuck_call.done()
    stuck_gate.set()


def test_drops_depth_and_batches_reach_the_service_metrics() -> None:
    metrics = Metrics()
    queue = AdmissionQueue(
        capacity=1, workers=1, on_depth=metrics.retrieval_depth, on_dropped=metrics.retrieval_dropped
    )
    try:
        gate, held = busy(queue)
        assert queue.admit(1.0) is None
        assert metrics.registry.get_sample_value("kb_retrieval_dropped_total", {"reason": "full"}) == 1
        queue.submit(lambda: None, timeout_s=10.0)
        assert metrics.registry.get_sample_value("kb_retrieval_queue_depth") == 1
        gate.set()
        held.result(10.0)
        wait_until(lambda: metrics.registry.get_sample_value("kb_retrieval_queue_depth") == 0)
    finally:
        queue.close()
    metrics.query_batch(5)
    assert metrics.registry.get_sample_value("kb_query_embedding_batch_size_sum") == 5
