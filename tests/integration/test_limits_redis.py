"""The limiter over a real redis-server: shared by instances, bounded, and its outage policy.

Each "instance" is its own ``Limiter`` with its own connection pool (exactly what two processes
have), on the session's redis-server with a fresh database per test. Outages stop that server
(every such test starts it again, whatever happens in it) or point at a port that accepts
connections and never answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from app.access.budget import CallerBudget
from app.access.limit_store import RedisSlots
from app.access.limits import Limiter, open_limiter
from app.config import load_settings
from app.errors import RateLimitedError, StateUnavailableError
from app.records import Caller
from tests.services.redis import RedisServer

ALICE = Caller(key_id="a1", name="alice", tenant="acme", role="user")
NO_SHARED_BUDGETS: dict[str, Any] = {"tenant_tokens": None, "model_tokens": None}
TIMEOUT_S = 0.25
SLACK_S = 0.75  # a busy machine's scheduling; a hang would take far longer


def redis_limiter(url: str, **limits: Any) -> Limiter:
    settings = load_settings(
        environ={"REDIS_URL": url},
        overrides={"limits": {"redis_timeout_s": TIMEOUT_S, "retry_storage_after_s": 0.2, **limits}},
    )
    return open_limiter(settings)


@pytest.fixture
async def two_instances(redis_url: str) -> AsyncIterator[tuple[Limiter, Limiter]]:
    limits = {
        "default": {"requests": {"ask": "5/minute"}, "concurrency": 2, "tokens": "10000/hour"},
        **NO_SHARED_BUDGETS,
    }
    first, second = redis_limiter(redis_url, **limits), redis_limiter(redis_url, **limits)
    try:
        yield first, second
    finally:
        await first.aclose()
        await second.aclose()


# --------------------------------------------------------------------------- shared by instances


async def test_two_instances_count_one_request_limit(two_instances: tuple[Limiter, Limiter]) -> None:
    first, second = two_instances
    for instance in (first, second, first, second, first):
        await instance.count_request(ALICE, "ask")

    with pytest.raises(RateLimitedError) as refused:
        await second.count_request(ALICE, "ask")

    assert refused.value.limit == "ask"
    assert refused.value.headers["RateLimit"].startswith('"ask";r=0;t=')


async def test_two_instances_draw_on_one_token_budget_and_a_burst_cannot_overshoot_it(
    two_instances: tuple[Limiter, Limiter],
) -> None:
    first, second = two_instances
    budgets = [(first if i % 2 else second).budget_for(ALICE) for i in range(10)]

    grants = await asyncio.gather(*(b.reserve(input_tokens=1000, max_output_tokens=1000) for b in budgets))

    assert sum(1000 + g for g in grants if g > 0) <= 10_000
    assert grants.count(1000) == 5
    for budget, granted in zip(budgets, grants, strict=True):
        await budget.settle(input_tokens=1000 if granted else 0, output_tokens=granted // 2)
    left = await _remaining(second.budget_for(ALICE))
    assert left == 10_000 - 5 * 1500


async def test_two_instances_share_the_answer_slots_of_a_key(two_instances: tuple[Limiter, Limiter]) -> None:
    first, second = two_instances
    held = [await first.admit(ALICE), await second.admit(ALICE)]

    with pytest.raises(RateLimitedError) as refused:
        await first.admit(ALICE)
    await held[0].release()
    again = await second.admit(ALICE)

    assert refused.value.limit == "concurrency"
    for admission in (held[1], again):
        await admission.release()


async def test_a_refusal_for_a_spent_token_budget_holds_no_slot(redis_url: str) -> None:
    limits = {"default": {"requests": {}, "concurrency": 1, "tokens": "1000/hour"}, **NO_SHARED_BUDGETS}
    limiter = redis_limiter(redis_url, **limits)
    try:
        spender = limiter.budget_for(ALICE)
        await spender.reserve(input_tokens=1000, max_output_tokens=0)

        with pytest.raises(RateLimitedError) as refused:
            await limiter.admit(ALICE)

        assert refused.value.limit == "tokens-key"
        slots = limiter.store.slots
        assert isinstance(slots, RedisSlots)
        assert await slots.client.zcard(slots._key(ALICE.subject)) == 0
    finally:
        await limiter.aclose()


async def test_the_slots_of_a_crashed_instance_expire_with_their_lease(redis_url: str) -> None:
    limiter = redis_limiter(redis_url)
    slots = limiter.store.slots
    assert isinstance(slots, RedisSlots)
    try:
        # An instance took the slot and died: nothing will ever release it.
        assert await slots.acquire("key:a1", "lost", limit=1, lease_s=0.3) == (True, 1)
        assert (await slots.acquire("key:a1", "next", limit=1, lease_s=0.3))[0] is False
        await asyncio.sleep(0.4)

        assert await slots.acquire("key:a1", "next", limit=1, lease_s=0.3) == (True, 1)
        ttl_ms = await slots.client.pttl(slots._key("key:a1"))
        assert 0 < ttl_ms <= 300  # the set itself expires too: nothing stays behind
    finally:
        await limiter.aclose()


# --------------------------------------------------------------------------- Redis down


async def test_failing_open_answers_unlimited_logs_the_outage_once_and_limits_again_after_it(
    restartable: RedisServer, redis_url: str
) -> None:
    limiter = redis_limiter(
        redis_url,
        storage_failure="fail_open",
        default={"requests": {"ask": "2/minute"}, "tokens": "5000/hour"},
    )
    try:
        await limiter.count_request(ALICE, "ask")
        restartable.stop()
        with structlog.testing.capture_logs() as logs:
            started = time.monotonic()
            for _ in range(5):
                assert await limiter.count_request(ALICE, "ask") == []
                admission = await limiter.admit(ALICE)
                assert await admission.budget.reserve(input_tokens=100, max_output_tokens=50) == 50
                await admission.budget.settle(input_tokens=100, output_tokens=50)
                await admission.release()
            took = time.monotonic() - started
            state, problem = await limiter.health()
        outages = [line for line in logs if line["event"] == "limits_storage_unavailable"]

        assert took < TIMEOUT_S * 3 + SLACK_S  # the first call waits its timeout, the rest do not
        assert len(outages) == 1
        assert f"127.0.0.1:{restartable.port}" in outages[0]["problem"]
        assert state == "fail_open" and problem is not None

        restartable.start()
        await asyncio.sleep(0.25)  # past retry_storage_after_s
        with structlog.testing.capture_logs() as logs:
            await limiter.count_request(ALICE, "ask")
        assert [line["event"] for line in logs] == ["limits_storage_recovered"]
        # Limited again (this server keeps nothing across a restart: counting starts afresh).
        await limiter.count_request(ALICE, "ask")
        with pytest.raises(RateLimitedError):
            await limiter.count_request(ALICE, "ask")
        assert await limiter.health() == ("ok", None)
    finally:
        await limiter.aclose()


async def test_failing_closed_refuses_with_a_retry_time_within_the_timeout(
    restartable: RedisServer, redis_url: str
) -> None:
    limiter = redis_limiter(redis_url, storage_failure="fail_closed")
    try:
        await limiter.count_request(ALICE, "ask")
        restartable.stop()
        refusals = []
        started = time.monotonic()
        for call in (lambda: limiter.count_request(ALICE, "ask"), lambda: limiter.admit(ALICE)):
            with pytest.raises(StateUnavailableError) as refused:
                await call()
            refusals.append(refused.value)
        took = time.monotonic() - started
        state, problem = await limiter.health()

        assert took < TIMEOUT_S * 2 + SLACK_S
        assert all(r.retry_after_s == 0.2 for r in refusals)
        assert "fail_closed" in refusals[0].message and f"127.0.0.1:{restartable.port}" in refusals[0].message
        assert state == "unavailable" and problem is not None
    finally:
        await limiter.aclose()


async def test_a_redis_that_never_answers_costs_one_timeout_not_a_hang(silent_port: int) -> None:
    limiter = redis_limiter(f"redis://127.0.0.1:{silent_port}/0", storage_failure="fail_closed")
    try:
        started = time.monotonic()
        with pytest.raises(StateUnavailableError, match="no answer within"):
            await limiter.count_request(ALICE, "ask")
        assert time.monotonic() - started < TIMEOUT_S + SLACK_S
    finally:
        await limiter.aclose()


async def test_a_stream_reserved_before_an_outage_settles_without_raising_into_the_answer(
    restartable: RedisServer, redis_url: str
) -> None:
    limiter = redis_limiter(redis_url, storage_failure="fail_closed")
    try:
        budget = limiter.budget_for(ALICE)
        assert await budget.reserve(input_tokens=100, max_output_tokens=100) == 100
        restartable.stop()
        started = time.monotonic()

        await budget.settle(input_tokens=100, output_tokens=20)  # logged, never raised

        assert time.monotonic() - started < TIMEOUT_S + SLACK_S
        # Failing closed, a reservation the storage cannot record grants nothing.
        assert await limiter.budget_for(ALICE).reserve(input_tokens=100, max_output_tokens=100) == 0
    finally:
        await limiter.aclose()


async def _remaining(budget: object) -> int:
    assert isinstance(budget, CallerBudget)
    [quota] = await budget.remaining()
    return quota.remaining
