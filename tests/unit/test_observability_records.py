"""Request records in the state store: kept by request id, bounded by count and by age."""

from __future__ import annotations

import time

import pytest

from app.config import load_settings
from app.observability import ChunkScore, RequestRecords, RequestTrace, StageClock
from app.state import MemoryStateStore

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def trace(request_id: str, **fields: object) -> RequestTrace:
    return RequestTrace(request_id=request_id, started_ns=time.time_ns(), **fields)  # type: ignore[arg-type]


async def test_a_saved_trace_is_read_back_by_its_request_id() -> None:
    records = RequestRecords(MemoryStateStore(), count=10, ttl_s=60)
    saved = trace(
        "r1",
        outcome="done",
        question="q?",
        candidates=[ChunkScore(id="p1", source="a.md", score=0.9, dense=0.8)],
        timings_ms={"total": 12.5},
    )

    await records.save(saved)

    assert await records.get("r1") == saved
    assert await records.get("r2") is None


async def test_only_the_newest_count_records_are_kept() -> None:
    state = MemoryStateStore()
    records = RequestRecords(state, count=3, ttl_s=60)

    for n in range(5):
        await records.save(trace(f"r{n}"))

    kept = [n for n in range(5) if await records.get(f"r{n}") is not None]
    assert kept == [2, 3, 4]


async def test_a_record_expires_after_its_ttl() -> None:
    clock = Clock()
    records = RequestRecords(MemoryStateStore(clock=clock), count=10, ttl_s=60)
    await records.save(trace("r1"))

    clock.now += 59
    assert await records.get("r1") is not None
    clock.now += 2
    assert await records.get("r1") is None


def test_without_text_drops_the_question_the_searched_question_and_the_answer_only() -> None:
    full = trace("r1", question="q", searched="s", answer="a", prompt="answer@v1", citations=[1])

    bare = full.without_text()

    assert (bare.question, bare.searched, bare.answer) == (None, None, None)
    assert (bare.prompt, bare.citations, bare.request_id) == ("answer@v1", [1], "r1")


def test_the_production_configuration_keeps_no_text_in_records() -> None:
    assert load_settings(environ={"KB_ENV": "production"}).observability.record_text is False
    assert load_settings(environ={}).observability.log_question is False


def test_a_stage_clock_places_stages_on_one_timeline_from_its_origin() -> None:
    clock = StageClock(origin=10.0, started_ns=5_000_000_000)
    assert clock.stage("validate", 10.0, 10.004) == 4.0
    run = clock.fork()
    run.stage("retrieve", 10.010, 10.030)

    assert [(s.name, s.start_ms, s.duration_ms) for s in run.stages] == [
        ("validate", 0.0, 4.0),
        ("retrieve", 10.0, 20.0),
    ]
    assert [s.name for s in clock.stages] == ["validate"]  # a run's stages are its own
    assert run.started_ns == clock.started_ns
