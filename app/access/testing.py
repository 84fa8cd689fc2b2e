"""Helpers for tests (shipped beside the code, like litestar.testing): real keys in settings.

``declared_key`` makes a key and the configuration entry that declares it by hash, exactly
what an operator puts in a static deployment's config; ``with_keys`` adds entries to settings;
``bearer`` is the header that presents a key.
"""

from __future__ import annotations

import msgspec

from app.access.hashing import hash_key, new_key
from app.records import DEFAULT_TENANT, Role
from app.settings import Settings, StaticKeySettings

__all__ = ["bearer", "declared_key", "with_keys"]


def declared_key(
    name: str = "test",
    *,
    tenant: str = DEFAULT_TENANT,
    role: Role = "user",
    tier: str = "default",
    origins: tuple[str, ...] = (),
    expires_at: str | None = None,
) -> tuple[str, StaticKeySettings]:
    """``(key, entry)``: send ``key`` as ``Authorization: Bearer <key>``; put ``entry`` in
    ``access.keys``."""
    if role == "anonymous":
        raise ValueError("an anonymous caller has no key")
    key_id, key = new_key()
    entry = StaticKeySettings(
        id=key_id,
        name=name,
        tenant=tenant,
        role=role,
        hash=hash_key(key),
        tier=tier,
        origins=origins,
        expires_at=expires_at,
    )
    return key, entry


def with_keys(settings: Settings, *entries: StaticKeySettings, anonymous: bool | None = None) -> Settings:
    """``settings`` with these keys declared (and anonymous access switched, when given)."""
    access = msgspec.structs.replace(
        settings.access,
        keys=settings.access.keys + entries,
        anonymous=settings.access.anonymous if anonymous is None else anonymous,
    )
    return msgspec.structs.replace(settings, access=access)


def bearer(key: str) -> dict[str, str]:
    """The request header that presents ``key``."""
    return {"Authorization": f"Bearer {key}"}
