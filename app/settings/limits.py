"""Settings: request, concurrency and token rate limits (``app.access.limits``).

Limits are written in the ``limits`` library's notation: ``30/minute``, ``5 per second``,
``50000/hour``; several request limits for one endpoint are separated by ``;``
(``30/minute;500/day``). A key's ``tier`` picks its ``TierSettings``; a caller without a key
gets ``anonymous``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from limits import parse_many
from msgspec import Meta

from app.settings.base import PositiveFloat, PositiveInt, _Section

__all__ = ["AnonymousTierSettings", "LimitSettings", "StorageFailure", "TierSettings"]

StorageFailure = Literal["fail_open", "fail_closed"]
"""What a request gets while the limits storage (Redis) cannot be reached: ``fail_open`` answers
it unlimited, ``fail_closed`` refuses it with 503."""


def _check_limits(value: str, where: str, *, single: bool = False) -> None:
    try:
        items = parse_many(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a rate limit such as '30/minute'") from None
    if single and len(items) != 1:
        raise ValueError(f"{where}: a token limit is one limit such as '50000/hour', got {value!r}")
    if any(item.amount <= 0 for item in items):
        raise ValueError(f"{where}: a limit must allow at least 1, got {value!r}")


class TierSettings(_Section, frozen=True):
    """The limits of one tier of keys (or of anonymous callers, per client address)."""

    requests: dict[str, str] = msgspec.field(default_factory=lambda: {"ask": "30/minute"})
    """Request limits per endpoint (``ask`` is ``POST /ask``), counted per key; an endpoint not
    listed has no request limit."""

    concurrency: PositiveInt | None = 4
    """Answers one key may have in progress at once (open streams, or JSON answers being
    generated); None: no limit."""

    tokens: str | None = "50000/hour"
    """Model tokens (prompt and answer) one key may use per window; None: no limit."""

    def __post_init__(self) -> None:
        for endpoint, value in self.requests.items():
            _check_limits(value, f"requests.{endpoint}")
        if self.tokens is not None:
            _check_limits(self.tokens, "tokens", single=True)


class AnonymousTierSettings(TierSettings, frozen=True):
    """The tier of callers without a key: the same fields, tighter defaults (a subclass, so that
    overriding one of its fields keeps these defaults for the others)."""

    requests: dict[str, str] = msgspec.field(default_factory=lambda: {"ask": "10/minute"})
    """Request limits per endpoint, counted per client address."""

    concurrency: PositiveInt | None = 2
    """Answers one client address may have in progress at once."""

    tokens: str | None = "20000/hour"
    """Model tokens one client address may use per window."""


class LimitSettings(_Section, frozen=True):
    """Request, concurrency and token rate limits (``app.access.limits``)."""

    enabled: bool = True
    """Enforce the limits below. Off: nothing is limited, and no rate-limit headers are sent."""

    default: TierSettings = msgspec.field(default_factory=TierSettings)
    """The tier of keys whose tier is ``default`` (or names a tier not in ``tiers``)."""

    anonymous: AnonymousTierSettings = msgspec.field(default_factory=AnonymousTierSettings)
    """The tier of callers without a key (where ``access.anonymous`` allows them), counted per
    client address: tighter than ``default``."""

    tiers: dict[str, TierSettings] = msgspec.field(default_factory=dict)
    """Further tiers by name (``[limits.tiers.batch]``), for keys created with that tier."""

    tenant_tokens: str | None = "500000/hour"
    """Model tokens all keys of one tenant may use together per window; None: no limit."""

    tenants: dict[str, str] = msgspec.field(default_factory=dict)
    """Per-tenant token limits that replace ``tenant_tokens`` for those tenants."""

    model_tokens: str | None = "400000/minute"
    """Model tokens every caller together may use per window, to stay inside the model
    provider's own quota; None: no limit."""

    strategy: Literal["moving-window", "sliding-window-counter", "fixed-window"] = "moving-window"
    """How request limits count (``limits`` strategies): ``moving-window`` is exact (never more
    than the limit in any window; one entry per request counted), the others keep two or one
    counters per key and allow bursts at window edges. Token limits always use fixed windows
    aligned to the clock (docs/limits.md says why)."""

    storage_failure: StorageFailure = "fail_open"
    """What requests get while Redis (``REDIS_URL``) does not answer: ``fail_open`` serves them
    unlimited (logged once per outage), ``fail_closed`` refuses them with 503. Production
    configuration sets ``fail_closed``; in memory (no ``REDIS_URL``) the limits never fail."""

    redis_timeout_s: PositiveFloat = 0.25
    """Bound of one Redis call of the limiter (connect included); past it the call counts as a
    failure and ``storage_failure`` decides."""

    retry_storage_after_s: PositiveFloat = 1.0
    """After a failed Redis call, requests apply ``storage_failure`` at once for this long
    instead of each waiting for its own timeout; then Redis is tried again."""

    concurrency_lease_s: Annotated[float, Meta(ge=10.0, le=86_400.0)] = 300.0
    """An answer in progress holds its concurrency slot at most this long. A slot is released
    when its answer ends or its client goes away; the lease only frees the slots of an instance
    that crashed. Keep it longer than the longest answer (``generation.total_timeout_s``)."""

    def __post_init__(self) -> None:
        for value, where in (
            (self.tenant_tokens, "tenant_tokens"),
            (self.model_tokens, "model_tokens"),
            *((v, f"tenants.{k}") for k, v in self.tenants.items()),
        ):
            if value is not None:
                _check_limits(value, where, single=True)

    def tier(self, name: str, *, anonymous: bool = False) -> TierSettings:
        """The tier of a caller: ``anonymous`` for callers without a key, ``name`` if it is
        configured, else ``default``."""
        if anonymous:
            return self.anonymous
        if name == "default":
            return self.default
        return self.tiers.get(name, self.default)
