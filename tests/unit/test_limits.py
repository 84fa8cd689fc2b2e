"""The limiter in memory: request limits, answer slots, token reservation and settlement, headers.

Real ``limits`` storage and strategies (``MemoryStorage``); nothing is mocked. Token windows
take an injected clock so that turning a window needs no waiting.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from limits.aio.storage import MemoryStorage

from app.access.budget import CallerBudget, Unmetered
from app.access.limit_headers import Quota, rate_limit_headers
from app.access.limit_store import LimitStore, MemorySlots
from app.access.limits import Limiter
from app.config import load_settings
from app.errors import ConfigError, RateLimitedError
from app.records import Caller
from app.settings.limits import LimitSettings, TierSettings

pytestmark = pytest.mark.unit

ALICE = Caller(key_id="a1", name="alice", tenant="acme", role="user")
BOB = Caller(key_id="b2", name="bob", tenant="acme", role="user")
CAROL = Caller(key_id="c3", name="carol", tenant="other", role="user")
ANONYMOUS = Caller(key_id=None, name="anonymous", tenant="default", role="anonymous", client="10.0.0.7")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock | None = None, **settings: object) -> Limiter:
    store = LimitStore(MemoryStorage(), MemorySlots(), description="memory")
    return Limiter(msgspec.convert(settings, LimitSettings), store, **({"clock": clock} if clock else {}))


def tokens_only(
    key: str | None = None, tenant: str | None = None, model: str | None = None
) -> dict[str, object]:
    return {
        "default": {"requests": {}, "concurrency": None, "tokens": key},
        "tenant_tokens": tenant,
        "model_tokens": model,
    }


# --------------------------------------------------------------------------- settings


def test_tiers_resolve_by_name_with_default_and_anonymous() -> None:
    settings = msgspec.convert({"tiers": {"batch": {"concurrency": 16}}}, LimitSettings)

    assert settings.tier("batch").concurrency == 16
    assert settings.tier("default") is settings.default
    assert settings.tier("no-such-tier") is settings.default
    assert settings.tier("batch", anonymous=True) is settings.anonymous


def test_overriding_one_anonymous_field_keeps_the_other_tight_defaults() -> None:
    settings = load_settings(environ={"KB_LIMITS__ANONYMOUS__CONCURRENCY": "1"})

    assert settings.limits.anonymous.concurrency == 1
    assert settings.limits.anonymous.requests == {"ask": "10/minute"}
    assert settings.limits.anonymous.tokens == LimitSettings().anonymous.tokens


@pytest.mark.parametrize(
    "override",
    [
        {"default": {"requests": {"ask": "lots"}}},
        {"default": {"tokens": "0/hour"}},
        {"tenant_tokens": "5/second;60/minute"},
        {"tenants": {"acme": "many"}},
        {"storage_failure": "fail_sometimes"},
    ],
)
def test_a_malformed_limit_is_a_configuration_error_naming_it(override: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="limits"):
        load_settings(environ={}, overrides={"limits": override})


def test_production_fails_closed_and_development_fails_open() -> None:
    assert load_settings(environ={"KB_ENV": "production"}).limits.storage_failure == "fail_closed"
    assert load_settings(environ={}).limits.storage_failure == "fail_open"


# --------------------------------------------------------------------------- headers


def test_headers_follow_the_ietf_ratelimit_fields() -> None:
    headers = rate_limit_headers(
        [
            Quota("ask", quota=30, remaining=29, reset_s=59.2, window_s=60),
            Quota("tokens-key", quota=50_000, remaining=-12, reset_s=0.4, window_s=3600, unit="tokens"),
            Quota("concurrency", quota=4, remaining=0, reset_s=None, unit="concurrent-requests"),
        ]
    )

    assert headers == {
        "RateLimit-Policy": '"ask";q=30;w=60, "tokens-key";q=50000;w=3600;qu="tokens", '
        '"concurrency";q=4;qu="concurrent-requests"',
        "RateLimit": '"ask";r=29;t=60, "tokens-key";r=0;t=1, "concurrency";r=0',
    }
    assert rate_limit_headers([]) == {}


# --------------------------------------------------------------------------- requests


async def test_the_request_limit_refuses_the_request_past_it_with_headers_and_a_retry_time() -> None:
    limits = limiter(default={"requests": {"ask": "3/minute"}})

    seen = [await limits.count_request(ALICE, "ask") for _ in range(3)]
    with pytest.raises(RateLimitedError) as refused:
        await limits.count_request(ALICE, "ask")

    assert [quotas[0].remaining for quotas in seen] == [2, 1, 0]
    error = refused.value
    assert error.limit == "ask"
    assert 55 <= error.retry_after_s <= 60
    assert error.headers["RateLimit-Policy"] == '"ask";q=3;w=60'
    assert error.headers["RateLimit"].startswith('"ask";r=0;t=')
    assert "3 requests per minute to /ask" in error.message


async def test_request_limits_count_per_key_per_endpoint_and_per_client_address_when_anonymous() -> None:
    limits = limiter(default={"requests": {"ask": "1/minute", "feedback": "1/minute"}})
    await limits.count_request(ALICE, "ask")

    await limits.count_request(BOB, "ask")  # another key
    await limits.count_request(ALICE, "feedback")  # another endpoint
    assert await limits.count_request(ALICE, "unlisted") == []  # no limit configured
    other_address = msgspec.structs.replace(ANONYMOUS, client="10.0.0.8")
    for caller in (ANONYMOUS, other_address):
        await limits.count_request(caller, "ask")
    with pytest.raises(RateLimitedError):
        await limits.count_request(ALICE, "ask")


async def test_anonymous_callers_get_the_anonymous_tier_whatever_their_tier_field_says() -> None:
    limits = limiter(default={"requests": {"ask": "100/minute"}}, anonymous={"requests": {"ask": "1/minute"}})
    tiered = msgspec.structs.replace(ANONYMOUS, tier="default")

    await limits.count_request(tiered, "ask")
    with pytest.raises(RateLimitedError):
        await limits.count_request(tiered, "ask")


async def test_several_request_limits_on_one_endpoint_are_each_enforced_and_reported() -> None:
    limits = limiter(default={"requests": {"ask": "2/second;3/hour"}})

    first = await limits.count_request(ALICE, "ask")

    assert [q.policy for q in first] == ["ask-1s", "ask-3600s"]
    await limits.count_request(ALICE, "ask")
    await asyncio.sleep(1.05)
    await limits.count_request(ALICE, "ask")
    with pytest.raises(RateLimitedError) as refused:
        await limits.count_request(ALICE, "ask")
    assert refused.value.limit == "ask-3600s"


async def test_disabled_limits_limit_nothing_and_send_no_headers() -> None:
    limits = limiter(
        enabled=False, default={"requests": {"ask": "1/minute"}, "concurrency": 1, "tokens": "1/hour"}
    )

    for _ in range(3):
        assert await limits.count_request(ALICE, "ask") == []
        admission = await limits.admit(ALICE)
        assert admission.headers == {} and isinstance(admission.budget, Unmetered)


# --------------------------------------------------------------------------- answers in progress


async def test_the_concurrency_limit_refuses_one_answer_more_and_frees_a_slot_on_release() -> None:
    limits = limiter(
        default={"requests": {}, "concurrency": 2, "tokens": None}, tenant_tokens=None, model_tokens=None
    )
    first, second = await limits.admit(ALICE), await limits.admit(ALICE)

    with pytest.raises(RateLimitedError) as refused:
        await limits.admit(ALICE)
    await limits.admit(BOB)  # another key has its own slots
    await first.release()
    await first.release()  # idempotent: frees one slot, not two
    third = await limits.admit(ALICE)

    assert refused.value.limit == "concurrency"
    assert refused.value.retry_after_s == 1.0
    assert refused.value.headers["RateLimit"] == '"concurrency";r=0'
    with pytest.raises(RateLimitedError):
        await limits.admit(ALICE)
    await second.release()
    await third.release()


async def test_a_slot_whose_release_was_lost_comes_free_when_its_lease_ends() -> None:
    clock = Clock()
    slots = MemorySlots(clock=clock)

    assert await slots.acquire("key:a1", "lease-1", limit=1, lease_s=300) == (True, 1)
    assert await slots.acquire("key:a1", "lease-2", limit=1, lease_s=300) == (False, 1)
    clock.now += 301

    assert await slots.acquire("key:a1", "lease-2", limit=1, lease_s=300) == (True, 1)


async def test_a_release_completes_even_when_the_request_releasing_it_is_cancelled() -> None:
    limits = limiter(
        default={"requests": {}, "concurrency": 1, "tokens": None}, tenant_tokens=None, model_tokens=None
    )
    admission = await limits.admit(ALICE)
    gate = asyncio.Event()

    async def leave() -> None:
        gate.set()
        await admission.release()

    task = asyncio.ensure_future(leave())
    await gate.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)

    await (await limits.admit(ALICE)).release()


# --------------------------------------------------------------------------- tokens


async def test_a_reservation_grants_the_whole_wish_while_the_budget_covers_it() -> None:
    limits = limiter(**tokens_only(key="10000/hour"))
    budget = limits.budget_for(ALICE)

    granted = await budget.reserve(input_tokens=1000, max_output_tokens=500)
    [quota] = await _remaining(budget)

    assert granted == 500
    assert quota.remaining == 10_000 - 1500


async def test_settling_replaces_the_reservation_by_the_real_usage() -> None:
    limits = limiter(**tokens_only(key="10000/hour", tenant="100000/hour"))
    budget = limits.budget_for(ALICE)
    await budget.reserve(input_tokens=1000, max_output_tokens=500)

    await budget.settle(input_tokens=900, output_tokens=120)

    assert [q.remaining for q in await _remaining(budget)] == [10_000 - 1020, 100_000 - 1020]


async def test_a_nearly_spent_budget_grants_what_is_left_after_the_prompt() -> None:
    limits = limiter(**tokens_only(key="2000/hour"))
    spender = limits.budget_for(ALICE)
    await spender.reserve(input_tokens=1000, max_output_tokens=0)
    await spender.settle(input_tokens=1000, output_tokens=200)  # 800 left

    budget = limits.budget_for(ALICE)
    granted = await budget.reserve(input_tokens=600, max_output_tokens=1024)

    assert granted == 200
    assert (await _remaining(budget))[0].remaining == 0


async def test_a_budget_too_small_for_the_prompt_grants_nothing_and_stays_spent_until_its_window_ends() -> (
    None
):
    limits = limiter(**tokens_only(key="1000/hour", tenant="100000/hour"))
    first = limits.budget_for(ALICE)
    await first.reserve(input_tokens=900, max_output_tokens=0)
    budget = limits.budget_for(ALICE)

    granted = await budget.reserve(input_tokens=300, max_output_tokens=100)
    await budget.settle(input_tokens=0, output_tokens=0)  # what the pipeline reports: nothing ran

    assert granted == 0
    key, tenant = await _remaining(budget)
    assert key.remaining == 0  # the 100 left could not hold a prompt: the next request gets 429
    assert tenant.remaining == 100_000 - 900  # the budget with room gets its share back
    with pytest.raises(RateLimitedError, match="token budget spent"):
        await limits.admit(ALICE)


async def test_a_burst_of_reservations_is_never_granted_more_than_the_budget() -> None:
    limits = limiter(**tokens_only(key="10000/hour"))
    budgets = [limits.budget_for(ALICE) for _ in range(12)]

    grants = await asyncio.gather(*(b.reserve(input_tokens=500, max_output_tokens=1000) for b in budgets))

    held = sum(500 + g for g in grants if g > 0)
    assert held <= 10_000
    assert sum(1 for g in grants if g == 1000) == 6  # 6 full reservations of 1,500 fit in 10,000
    assert (await _remaining(budgets[0]))[0].remaining >= 0


async def test_the_smallest_budget_decides_the_grant_and_the_others_give_the_difference_back() -> None:
    limits = limiter(**tokens_only(key="100000/hour", tenant="1500/hour", model="100000/minute"))
    budget = limits.budget_for(ALICE)

    granted = await budget.reserve(input_tokens=1000, max_output_tokens=1024)

    assert granted == 500
    key, tenant, model = await _remaining(budget)
    assert (key.remaining, tenant.remaining, model.remaining) == (100_000 - 1500, 0, 100_000 - 1500)


async def test_a_tenant_budget_is_shared_by_its_keys_and_only_by_them() -> None:
    limits = limiter(**tokens_only(tenant="3000/hour"), tenants={"other": "10000/hour"})
    await limits.budget_for(ALICE).reserve(input_tokens=2000, max_output_tokens=0)

    bob = await limits.budget_for(BOB).reserve(input_tokens=500, max_output_tokens=1000)
    carol = await limits.budget_for(CAROL).reserve(input_tokens=500, max_output_tokens=1000)

    assert bob == 500  # acme has 1,000 left
    assert carol == 1000  # "other" has its own, larger budget


async def test_a_spent_budget_is_refused_before_the_answer_with_its_name_and_reset() -> None:
    clock = Clock(now=3600 * 100 + 600)  # ten minutes into an hour window
    limits = limiter(clock, **tokens_only(key="1000/hour"))
    spender = limits.budget_for(ALICE)
    await spender.reserve(input_tokens=900, max_output_tokens=100)
    await spender.settle(input_tokens=900, output_tokens=100)

    with pytest.raises(RateLimitedError) as refused:
        await limits.admit(ALICE)

    error = refused.value
    assert error.limit == "tokens-key"
    assert error.retry_after_s == pytest.approx(3000)
    assert error.headers == {
        "RateLimit-Policy": '"tokens-key";q=1000;w=3600;qu="tokens"',
        "RateLimit": '"tokens-key";r=0;t=3000',
    }
    await limits.admit(BOB)  # another key of the same tenant still has its budget


async def test_a_new_window_restores_the_budget_and_a_late_settlement_stays_in_its_own_window() -> None:
    clock = Clock(now=3600 * 100 + 3599)
    limits = limiter(clock, **tokens_only(key="1000/hour"))
    budget = limits.budget_for(ALICE)
    await budget.reserve(input_tokens=500, max_output_tokens=500)
    clock.now += 2  # the hour turns while the answer streams

    await budget.settle(input_tokens=500, output_tokens=10)

    fresh = limits.budget_for(ALICE)
    assert (await _remaining(fresh))[0].remaining == 1000  # neither the charge nor the refund leaks
    assert await fresh.reserve(input_tokens=500, max_output_tokens=500) == 500


async def test_allowed_answers_report_requests_and_the_key_and_tenant_budgets_not_the_models() -> None:
    limits = limiter(
        default={"requests": {"ask": "30/minute"}, "concurrency": 4, "tokens": "50000/hour"},
        tenant_tokens="500000/hour",
        model_tokens="400000/minute",
    )
    requests = await limits.count_request(ALICE, "ask")

    admission = await limits.admit(ALICE, requests=requests)

    policies = admission.headers["RateLimit-Policy"]
    assert policies.startswith('"ask";q=30;w=60, "tokens-key";q=50000;w=3600;qu="tokens", "tokens-tenant"')
    assert "tokens-model" not in policies
    assert admission.headers["RateLimit"].startswith('"ask";r=29;t=')
    assert isinstance(admission.budget, CallerBudget)
    await admission.release()


async def _remaining(budget: CallerBudget | Unmetered) -> list[Quota]:
    assert isinstance(budget, CallerBudget)
    return await budget.remaining()


def test_tier_settings_reject_a_non_positive_concurrency() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"concurrency": 0}, TierSettings)
