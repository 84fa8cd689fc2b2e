"""Token budgets: what one answer may spend of its key's, its tenant's and the model's tokens.

Each budget is a counter per fixed window aligned to the clock (``50000/hour``: the hours
since the epoch), kept by the ``limits`` storage (``incr``, in memory or Redis). The window's
index is part of the counter's key, so a settlement always lands in the window its reservation
was taken from, even after the window has turned (the refund then goes to a counter nobody
reads any more, which expires).

Reserving takes what is left, atomically: ``INCRBY`` the whole wish (prompt + max output),
and if the new total is over the limit, give the excess back. Concurrent reservations are
ordered by the counter itself, so a burst can never be granted more than the limit; the
reservations of answers in flight count until they settle. The grant of an answer is the
smallest of its budgets' grants (the others give the difference back). Settling replaces the
reservation by the real usage with one more ``INCRBY`` of the difference (negative: a refund;
positive when the model counted more prompt tokens than estimated: at most that estimate's
error over the limit). A budget whose remainder cannot hold the prompt keeps that remainder:
it is spent until its window ends, and the next request is refused before streaming.

Moving windows (one entry per token) and the sliding-window counter (whose Redis keys are
renamed when the window turns, so a late refund would reach the wrong window) do not fit this.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from limits import RateLimitItem

from app.access.limit_headers import Quota
from app.access.limit_store import LimitStore, StorageDown

__all__ = ["CallerBudget", "TokenLimit", "Unmetered"]

TOKENS = "tokens"
"""The quota unit of token policies in the rate-limit headers."""


@dataclass(frozen=True, slots=True)
class TokenLimit:
    """One token budget: a policy name, its limit, and whose it is."""

    policy: str
    """``tokens-key``, ``tokens-tenant``, ``tokens-model``."""
    item: RateLimitItem
    owner: str
    """The key (or client address), the tenant, or ``all``."""

    def window(self, now: float) -> tuple[str, float]:
        """The counter's key for the window containing ``now``, and when that window ends."""
        length = self.item.get_expiry()
        index = int(now // length)
        return self.item.key_for(TOKENS, self.policy, self.owner, index), float((index + 1) * length)


@dataclass(frozen=True, slots=True)
class _Held:
    key: str
    expiry: int
    tokens: int
    kept: bool = False
    """Not given back when settling: the remainder of a budget too small for the prompt."""


class Unmetered:
    """The budget of an answer no token limit applies to (limits off, or failing open)."""

    async def reserve(self, *, input_tokens: int, max_output_tokens: int) -> int:
        return max_output_tokens

    async def settle(self, *, input_tokens: int, output_tokens: int) -> None:
        return None


class CallerBudget:
    """The token budgets one answer draws on (``app.pipeline.hooks.TokenBudget``).

    One per request: it remembers what it reserved until it settles.
    """

    def __init__(
        self,
        store: LimitStore,
        limits: Sequence[TokenLimit],
        *,
        fail_open: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.limits = tuple(limits)
        self.fail_open = fail_open
        self.clock = clock
        self._held: list[_Held] = []

    async def remaining(self) -> list[Quota]:
        """Each budget's tokens left in its current window (the check before streaming).

        Raises ``StorageDown``.
        """
        now = self.clock()
        windows = [limit.window(now) for limit in self.limits]
        used = await self.store.all(*(partial(self._get, key) for key, _ in windows))
        return [
            Quota(
                policy=limit.policy,
                quota=limit.item.amount,
                remaining=limit.item.amount - spent,
                reset_s=ends - now,
                window_s=limit.item.get_expiry(),
                unit=TOKENS,
            )
            for limit, (_, ends), spent in zip(self.limits, windows, used, strict=True)
        ]

    async def reserve(self, *, input_tokens: int, max_output_tokens: int) -> int:
        """Hold the prompt plus up to ``max_output_tokens`` in every budget; the output tokens
        granted (fewer when a budget is nearly spent, 0 when not even the prompt fits)."""
        wish = input_tokens + max_output_tokens
        if not self.limits or wish <= 0:
            return max_output_tokens
        now = self.clock()
        targets = [(limit, limit.window(now)[0]) for limit in self.limits]
        try:
            taken = await self.store.all(
                *(
                    partial(self._take, key, limit.item.amount, limit.item.get_expiry(), wish)
                    for limit, key in targets
                )
            )
        except StorageDown:
            # The store logged the outage. Failing open answers unmetered; failing closed
            # grants nothing (the stream ends with ``token_budget_exhausted``).
            return max_output_tokens if self.fail_open else 0
        grant = min(taken)
        extras = [
            (limit, key, got - grant) for (limit, key), got in zip(targets, taken, strict=True) if got > grant
        ]
        if extras:
            # If this fails, those budgets keep the excess until their window ends: never an overdraft.
            with contextlib.suppress(StorageDown):
                await self.store.all(
                    *(
                        partial(self._incr, key, limit.item.get_expiry(), -extra)
                        for limit, key, extra in extras
                    )
                )
        # A budget whose remainder cannot even hold the prompt is spent for the rest of its
        # window: it keeps that remainder, so the next request is refused (429) up front
        # instead of being answered with an empty, cut-off stream.
        spent = grant < wish and grant <= input_tokens
        self._held = [
            _Held(key, limit.item.get_expiry(), grant, kept=spent and got == grant)
            for (limit, key), got in zip(targets, taken, strict=True)
        ]
        return max(0, min(max_output_tokens, grant - input_tokens))

    async def settle(self, *, input_tokens: int, output_tokens: int) -> None:
        """Replace the reservation by the real usage (in the windows it was taken from)."""
        held, self._held = self._held, []
        used = input_tokens + output_tokens
        moves = [(h.key, h.expiry, used - h.tokens) for h in held if used != h.tokens and not h.kept]
        if not moves:
            return

        async def move() -> None:
            # If this fails (the store logs it), the reservation stays counted instead.
            with contextlib.suppress(StorageDown):
                await self.store.all(
                    *(partial(self._incr, key, expiry, delta) for key, expiry, delta in moves)
                )

        await self.store.detached(move)

    async def _get(self, key: str) -> int:
        return await self.store.run(partial(self.store.storage.get, key))

    async def _incr(self, key: str, expiry: int, amount: int) -> int:
        return await self.store.run(partial(self.store.storage.incr, key, expiry, amount))

    async def _take(self, key: str, limit: int, expiry: int, wish: int) -> int:
        """Up to ``wish`` tokens of one budget, atomically: the counter orders the takers."""
        total = await self._incr(key, expiry, wish)
        over = total - limit
        if over <= 0:
            return wish
        back = min(over, wish)
        await self._incr(key, expiry, -back)
        return wish - back
