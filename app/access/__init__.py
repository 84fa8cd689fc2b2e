"""API keys, roles and tenants; request, concurrency and token limits (``limits``)."""

from __future__ import annotations

from app.access.key_records import (
    KeyRecord,
    KeyRole,
    KeyStatus,
    expiry_time,
    new_record,
    normalise_origin,
    parse_duration,
    with_secret,
)
from app.access.keys import KEYS_HASH, KeyRing

__all__ = [
    "KEYS_HASH",
    "KeyRecord",
    "KeyRing",
    "KeyRole",
    "KeyStatus",
    "expiry_time",
    "new_record",
    "normalise_origin",
    "parse_duration",
    "with_secret",
]
