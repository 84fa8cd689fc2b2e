"""The rate-limit response headers: the IETF ``RateLimit-Policy`` and ``RateLimit`` fields.

The convention is draft-ietf-httpapi-ratelimit-headers (version 10): both fields are lists of
quota policies named by a string, in HTTP structured-field syntax::

    RateLimit-Policy: "ask";q=30;w=60, "tokens-key";q=50000;w=3600;qu="tokens"
    RateLimit: "ask";r=29;t=60, "tokens-key";r=48120;t=1312

``q`` is the quota, ``w`` its window in seconds, ``qu`` the unit (absent: requests), ``r`` what
is left and ``t`` the seconds until it resets (for a moving window: until one more is
allowed). Tokens are a unit this service defines (the draft registers requests, content bytes
and concurrent requests). docs/limits.md lists the policies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["POLICY_HEADER", "STATE_HEADER", "Quota", "rate_limit_headers"]

POLICY_HEADER = "RateLimit-Policy"
STATE_HEADER = "RateLimit"


@dataclass(frozen=True, slots=True)
class Quota:
    """One limit as a client sees it now."""

    policy: str
    """Its name: ``ask`` (requests to ``/ask``), ``tokens-key``, ``tokens-tenant``,
    ``tokens-model``, ``concurrency``."""
    quota: int
    remaining: int
    reset_s: float | None
    """Seconds until it resets; None where that is not known (an answer in progress ends)."""
    window_s: int | None = None
    unit: str | None = None
    """None: requests."""


def _policy(quota: Quota) -> str:
    text = f'"{quota.policy}";q={quota.quota}'
    if quota.window_s is not None:
        text += f";w={quota.window_s}"
    if quota.unit is not None:
        text += f';qu="{quota.unit}"'
    return text


def _state(quota: Quota) -> str:
    text = f'"{quota.policy}";r={max(0, quota.remaining)}'
    if quota.reset_s is not None:
        text += f";t={max(0, math.ceil(quota.reset_s))}"
    return text


def rate_limit_headers(quotas: Sequence[Quota]) -> dict[str, str]:
    """The two header fields describing ``quotas`` (none for no quotas)."""
    if not quotas:
        return {}
    return {
        POLICY_HEADER: ", ".join(_policy(q) for q in quotas),
        STATE_HEADER: ", ".join(_state(q) for q in quotas),
    }
