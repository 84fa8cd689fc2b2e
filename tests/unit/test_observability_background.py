"""Post-response work: queued, run in order off the request, bounded, failures logged, drained."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from app.errors import StateUnavailableError
from app.observability import BackgroundWork

pytestmark = pytest.mark.unit


async def test_jobs_run_after_submit_returns_in_the_order_submitted() -> None:
    work = BackgroundWork(max_size=10, job_timeout_s=1)
    done: list[int] = []

    async def job(n: int) -> None:
        done.append(n)

    for n in range(3):
        assert work.submit("j", lambda n=n: job(n))
    assert done == []  # submit only enqueues: the caller never waits for the job
    await work.drain(1)
    assert done == [0, 1, 2]


async def test_a_failing_job_is_logged_with_its_context_and_the_next_job_still_runs() -> None:
    work = BackgroundWork(max_size=10, job_timeout_s=1)
    done: list[str] = []

    async def failing() -> None:
        raise StateUnavailableError("state store did not answer within 1.0 s")

    async def fine() -> None:
        done.append("fine")

    with capture_logs() as logs:
        work.submit("request_record", failing, request_id="r1")
        work.submit("request_record", fine, request_id="r2")
        await work.drain(1)

    assert done == ["fine"]
    failures = [line for line in logs if line["event"] == "background_job_failed"]
    assert len(failures) == 1
    assert failures[0]["job"] == "request_record" and failures[0]["request_id"] == "r1"
    assert "StateUnavailableError: state store did not answer" in failures[0]["error"]


async def test_a_job_past_its_timeout_is_abandoned_with_a_warning() -> None:
    work = BackgroundWork(max_size=10, job_timeout_s=0.05)

    with capture_logs() as logs:
        work.submit("slow", lambda: asyncio.sleep(5))
        await work.drain(1)

    assert [line["event"] for line in logs] == ["background_job_failed"]
    assert "timed out" in logs[0]["error"]


async def test_a_full_queue_drops_the_new_job_and_says_so() -> None:
    dropped: list[str] = []
    depths: list[int] = []
    work = BackgroundWork(max_size=2, job_timeout_s=1, on_depth=depths.append, on_dropped=dropped.append)
    gate = asyncio.Event()

    with capture_logs() as logs:
        accepted = [work.submit("j", gate.wait) for _ in range(4)]  # the worker has not started yet
    assert accepted == [True, True, False, False]
    assert dropped == ["j", "j"] and max(depths) == 2
    assert [line["reason"] for line in logs if line["event"] == "background_job_dropped"] == [
        "queue full"
    ] * 2
    gate.set()
    await work.drain(1)
    assert work.depth == 0 and depths[-1] == 0


async def test_drain_waits_for_queued_jobs_then_refuses_new_ones() -> None:
    work = BackgroundWork(max_size=10, job_timeout_s=1)
    done: list[str] = []

    async def job() -> None:
        await asyncio.sleep(0.05)
        done.append("x")

    work.submit("j", job)
    work.submit("j", job)
    await work.drain(2)
    assert done == ["x", "x"]
    with capture_logs() as logs:
        assert work.submit("j", job) is False
    assert logs[0]["reason"] == "shutting down"


async def test_drain_gives_up_after_its_timeout() -> None:
    work = BackgroundWork(max_size=10, job_timeout_s=10)
    work.submit("stuck", lambda: asyncio.sleep(10))
    work.submit("stuck", lambda: asyncio.sleep(10))

    with capture_logs() as logs:
        started = asyncio.get_running_loop().time()
        await work.drain(0.1)
        took = asyncio.get_running_loop().time() - started

    assert took < 1
    assert [line["event"] for line in logs] == ["background_jobs_abandoned"]
