"""The limiter: request limits, answers in progress, and token budgets, per caller.

A caller is limited by its key (``Caller.subject``; by client address when anonymous) under
its tier (``limits.tiers``; ``limits.anonymous`` without a key), its tenant's token budget,
and the model's token budget shared by everyone. The HTTP layer asks, before streaming
anything:

1. ``count_request(caller, endpoint)``: one request more against the endpoint's request
   limits (the ``limits`` library's strategies); 429 when one is reached.
2. ``admit(caller)``: the token budgets must not be spent (429 otherwise), and an answer slot
   must be free (429 otherwise). The ``Admission`` carries the token budget the pipeline
   reserves from and settles to (``app.access.budget``), the slot to release when the answer
   ends, and the headers that report what is left (``app.access.limit_headers``).

While the storage (Redis) is down, ``limits.storage_failure`` decides: ``fail_open`` lets the
request through unlimited, ``fail_closed`` refuses it (``StateUnavailableError``, 503).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from app.access.budget import CallerBudget, TokenLimit, Unmetered
from app.access.limit_headers import Quota, rate_limit_headers
from app.access.limit_store import LimitStore, StorageDown, open_limit_store
from app.errors import RateLimitedError, StateUnavailableError
from app.records import Caller
from app.settings import Settings
from app.settings.limits import LimitSettings, TierSettings

__all__ = ["Admission", "LimitHealth", "Limiter", "Slot", "open_limiter"]

log = structlog.get_logger("kb.limits")

LimitHealth = Literal["ok", "off", "fail_open", "unavailable"]
"""``ok``: limits enforced; ``off``: disabled; ``fail_open``: storage down, requests served
unlimited; ``unavailable``: storage down, requests refused (not ready)."""

_STRATEGIES: dict[str, Callable[[Storage], RateLimiter]] = {
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
}
_CONCURRENCY_RETRY_S = 1.0  # when a slot frees is unknown: an answer ends when it ends


@dataclass(slots=True)
class Slot:
    """One answer in progress of one caller. ``release`` is idempotent."""

    store: LimitStore
    subject: str
    lease_id: str
    released: bool = False

    async def release(self) -> None:
        if self.released:
            return
        self.released = True

        async def give_back() -> None:
            # If this fails, the lease expires by itself (``limits.concurrency_lease_s``).
            with contextlib.suppress(StorageDown):
                await self.store.run(partial(self.store.slots.release, self.subject, self.lease_id))

        await self.store.detached(give_back)


@dataclass(slots=True)
class Admission:
    """What an admitted answer holds until it ends."""

    budget: CallerBudget | Unmetered = field(default_factory=Unmetered)
    slot: Slot | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """The rate-limit headers of the response (request limits and the key's and tenant's
    token budgets before this answer)."""

    async def release(self) -> None:
        """Free the answer slot (when the answer ends or its client went away)."""
        if self.slot is not None:
            await self.slot.release()


class Limiter:
    """Request, concurrency and token limits over one ``LimitStore``. Built once, shared."""

    def __init__(
        self, settings: LimitSettings, store: LimitStore, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.strategy: RateLimiter = _STRATEGIES[settings.strategy](store.storage)
        self._items: dict[str, list[RateLimitItem]] = {}

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def tier(self, caller: Caller) -> TierSettings:
        return self.settings.tier(caller.tier, anonymous=caller.role == "anonymous")

    def _parsed(self, spec: str) -> list[RateLimitItem]:
        items = self._items.get(spec)
        if items is None:
            items = self._items[spec] = parse_many(spec)
        return items

    def _on_storage_down(self, exc: StorageDown) -> None:
        """Return to let the request through (fail open), or refuse it (fail closed)."""
        if self.settings.storage_failure == "fail_closed":
            raise StateUnavailableError(
                f"{exc}; requests are refused until it answers (limits.storage_failure = fail_closed)",
                retry_after_s=self.settings.retry_storage_after_s,
            )

    # -- 1. requests ------------------------------------------------------------------------

    async def count_request(self, caller: Caller, endpoint: str) -> list[Quota]:
        """Count one request of ``caller`` to ``endpoint``; what is left of each of its limits.

        Raises ``RateLimitedError`` when a limit is reached (the request is not answered).
        """
        spec = self.tier(caller).requests.get(endpoint) if self.enabled else None
        if spec is None:
            return []
        items = self._parsed(spec)
        quotas = []
        for item in items:
            name = endpoint if len(items) == 1 else f"{endpoint}-{item.get_expiry()}s"
            try:
                allowed = await self.store.run(partial(self.strategy.hit, item, endpoint, caller.subject))
                stats = await self.store.run(
                    partial(self.strategy.get_window_stats, item, endpoint, caller.subject)
                )
            except StorageDown as exc:
                self._on_storage_down(exc)
                return []
            quota = Quota(
                policy=name,
                quota=item.amount,
                remaining=stats.remaining,
                reset_s=max(0.0, stats.reset_time - self.clock()),
                window_s=item.get_expiry(),
            )
            if not allowed:
                raise _refusal(
                    quota,
                    f"rate limit reached: {item.amount} requests per {_window(item)} to /{endpoint}",
                )
            quotas.append(quota)
        return quotas

    # -- 2. tokens and answers in progress ----------------------------------------------------

    def budget_for(self, caller: Caller) -> CallerBudget | Unmetered:
        """The token budgets an answer of ``caller`` draws on."""
        if not self.enabled:
            return Unmetered()
        settings = self.settings
        specs = [
            ("tokens-key", self.tier(caller).tokens, caller.subject),
            ("tokens-tenant", settings.tenants.get(caller.tenant, settings.tenant_tokens), caller.tenant),
            ("tokens-model", settings.model_tokens, "all"),
        ]
        limits = [TokenLimit(policy, self._parsed(spec)[0], owner) for policy, spec, owner in specs if spec]
        if not limits:
            return Unmetered()
        return CallerBudget(
            self.store, limits, fail_open=settings.storage_failure == "fail_open", clock=self.clock
        )

    async def admit(self, caller: Caller, *, requests: Sequence[Quota] = ()) -> Admission:
        """Admit one answer of ``caller``: its token budgets are not spent and a slot is free.

        ``requests`` are ``count_request``'s figures, reported in the admission's headers.
        Raises ``RateLimitedError`` (429) or, failing closed, ``StateUnavailableError`` (503).
        """
        if not self.enabled:
            return Admission()
        # Tokens first: a refused answer then has no slot to give back.
        budget, tokens = await self._token_figures(self.budget_for(caller))
        slot = await self._take_slot(caller)
        # The model's budget is everyone's: it is reported only when it refuses.
        shown = [*requests, *(quota for quota in tokens if quota.policy != "tokens-model")]
        return Admission(budget=budget, slot=slot, headers=rate_limit_headers(shown))

    async def _token_figures(
        self, budget: CallerBudget | Unmetered
    ) -> tuple[CallerBudget | Unmetered, list[Quota]]:
        """What is left of each token budget; 429 when one is spent."""
        if not isinstance(budget, CallerBudget):
            return budget, []
        try:
            tokens = await budget.remaining()
        except StorageDown as exc:
            self._on_storage_down(exc)
            return Unmetered(), []
        spent = [quota for quota in tokens if quota.remaining <= 0]
        if spent:
            # Retry when every spent budget has a new window: the latest of their resets.
            last = max(spent, key=lambda quota: quota.reset_s or 0.0)
            raise _refusal(
                last,
                f"token budget spent: {_owner(last.policy)} may use {last.quota} tokens "
                f"per {_seconds(last.window_s)}",
            )
        return budget, tokens

    async def _take_slot(self, caller: Caller) -> Slot | None:
        limit = self.tier(caller).concurrency
        if limit is None:
            return None
        lease_id = uuid.uuid4().hex
        acquire = partial(
            self.store.slots.acquire,
            caller.subject,
            lease_id,
            limit=limit,
            lease_s=self.settings.concurrency_lease_s,
        )
        try:
            taken, _ = await self.store.run(acquire)
        except StorageDown as exc:
            self._on_storage_down(exc)
            return None
        if not taken:
            quota = Quota("concurrency", quota=limit, remaining=0, reset_s=None, unit="concurrent-requests")
            raise _refusal(
                quota,
                f"too many answers in progress: this key may have {limit} at once",
                retry_after_s=_CONCURRENCY_RETRY_S,
            )
        return Slot(self.store, caller.subject, lease_id)

    # -- health -------------------------------------------------------------------------------

    async def health(self) -> tuple[LimitHealth, str | None]:
        """The limits' state for readiness, and the storage's problem if it has one."""
        if not self.enabled:
            return "off", None
        problem = await self.store.check()
        if problem is None:
            return "ok", None
        return ("fail_open" if self.settings.storage_failure == "fail_open" else "unavailable"), problem

    async def aclose(self) -> None:
        await self.store.aclose()


def _refusal(quota: Quota, message: str, *, retry_after_s: float | None = None) -> RateLimitedError:
    retry = retry_after_s if retry_after_s is not None else max(1.0, quota.reset_s or 0.0)
    return RateLimitedError(
        f"{message}; retry in {retry:.0f}s",
        limit=quota.policy,
        retry_after_s=retry,
        headers=rate_limit_headers([quota]),
    )


def _window(item: RateLimitItem) -> str:
    name = item.GRANULARITY.name
    return name if item.multiples == 1 else f"{item.multiples} {name}s"


def _seconds(window_s: int | None) -> str:
    for length, name in ((86_400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if window_s and window_s % length == 0:
            count = window_s // length
            return name if count == 1 else f"{count} {name}s"
    return "window"


def _owner(policy: str) -> str:
    owners = {"tokens-key": "this caller", "tokens-tenant": "this tenant", "tokens-model": "the service"}
    return owners.get(policy, policy)


def open_limiter(settings: Settings) -> Limiter:
    """The configured limiter: counting in memory, or in Redis when ``REDIS_URL`` is set."""
    store = open_limit_store(settings)
    limits = settings.limits
    if limits.enabled:
        log.info("limits", storage=store.description, storage_failure=limits.storage_failure)
    else:
        log.warning("limits_off", detail="limits.enabled = false: nothing is rate-limited")
    return Limiter(limits, store)
