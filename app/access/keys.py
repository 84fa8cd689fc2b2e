"""The key ring: API keys resolved to their records, from configuration and the state store.

A request's key is parsed for its id, its record is read (configuration first, then the state
store's ``keys`` hash) on every request, so a revocation or an expiry is seen by every instance
at once; only the slow hash check of a key already verified is skipped for a short while.

Revoking keeps the record (marked ``revoked_at``) so that listings still say what the key was;
rotating makes a new key with the same attributes and revokes the old one, at once or after a
grace period (the old key's expiry is brought forward to the end of the grace period).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from app.access.hashing import key_id_of, verify_key
from app.access.key_records import (
    KeyRecord,
    KeyRole,
    checked_origin,
    format_time,
    new_record,
    parse_time,
    with_secret,
)
from app.errors import (
    AuthenticationError,
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    StateUnavailableError,
)
from app.settings import AccessSettings, StaticKeySettings
from app.state import StateStore

__all__ = ["KEYS_HASH", "KeyRing"]

KEYS_HASH = "keys"
"""The state-store hash of stored keys: field = key id, value = a JSON ``KeyRecord``."""

_VERIFIED_MAX = 4096  # verified keys remembered at once; beyond it the oldest is forgotten
# How long the union of widget origins (what a preflight is answered for) is reused. A preflight
# carries no key, so this list only decides which browsers may try; each request is still checked
# against its own key's origins, read afresh.
_ORIGINS_TTL_S = 5.0


class KeyRing:
    """Resolves presented keys; creates, lists, revokes and rotates keys in the state store."""

    def __init__(
        self,
        state: StateStore,
        settings: AccessSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.settings = settings
        self.clock = clock
        self._static = _static_records(settings.keys)
        # sha256(key) + stored hash -> when the verification stops counting.
        self._verified: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._origins: tuple[float, frozenset[str]] | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def record(self, key_id: str) -> KeyRecord | None:
        """The record of ``key_id``: configuration first, then the state store."""
        if (static := self._static.get(key_id)) is not None:
            return static
        return _decoded(await self.state.hash_get(KEYS_HASH, key_id))

    async def resolve(self, key: str) -> KeyRecord:
        """The record of a valid, unexpired, unrevoked key; ``AuthenticationError`` otherwise.

        The message never repeats the key.
        """
        key_id = key_id_of(key)
        if key_id is None:
            raise AuthenticationError("malformed API key")
        found = await self.record(key_id)
        if found is None or not await self._matches(key, found.hash):
            raise AuthenticationError("unknown API key")
        if (why := found.refusal(self.now())) is not None:
            raise AuthenticationError(why)
        return found

    async def records(self) -> list[KeyRecord]:
        """Every key: those declared in configuration, then the stored ones, oldest first."""
        stored = [r for raw in (await self.state.hash_items(KEYS_HASH)).values() if (r := _decoded(raw))]
        stored.sort(key=lambda r: (r.created_at, r.id))
        return [*self._static.values(), *(r for r in stored if r.id not in self._static)]

    async def create(
        self,
        *,
        name: str,
        tenant: str,
        role: KeyRole,
        tier: str = "default",
        origins: Iterable[str] = (),
        expires_at: str | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new key stored in the state store: ``(key, record)``. The key is not kept anywhere.

        ``InvalidRequestError`` for attributes a key cannot have (a widget without origins, an
        origin that is not ``scheme://host[:port]``, an expiry in the past, ...).
        """
        record = new_record(
            name=name,
            tenant=tenant,
            role=role,
            now=self.now(),
            tier=tier,
            origins=origins,
            expires_at=expires_at,
        )
        key, record = with_secret(record)
        await self.state.hash_set(KEYS_HASH, record.id, msgspec.json.encode(record))
        return key, record

    async def revoke(self, key_id: str) -> KeyRecord:
        """Mark a stored key revoked (already revoked: unchanged); its record is kept for listings.

        ``NotFoundError`` for an unknown id; ``InvalidRequestError`` for a key declared in
        configuration, which only its entry there can withdraw.
        """
        record = await self._stored(key_id)
        if record.revoked_at:
            return record
        revoked = msgspec.structs.replace(record, revoked_at=format_time(self.now()))
        await self.state.hash_set(KEYS_HASH, key_id, msgspec.json.encode(revoked))
        return revoked

    async def rotate(
        self, key_id: str, *, grace_s: float = 0.0, expires_at: str | None = None
    ) -> tuple[str, KeyRecord, KeyRecord]:
        """A new key with the old one's name, tenant, role, tier and origins (and expiry, unless
        ``expires_at`` is given); the old key is revoked now, or expires after ``grace_s`` (so
        clients can switch). ``(new key, new record, old record as updated)``."""
        old = await self._stored(key_id)
        if old.revoked_at:
            raise InvalidRequestError(f"key {key_id} is revoked; create a new key instead")
        if grace_s < 0:
            raise InvalidRequestError("the grace period cannot be negative")
        now = self.now()
        fresh = new_record(
            now=now,
            name=old.name,
            tenant=old.tenant,
            role=old.role,
            tier=old.tier,
            origins=old.origins,
            expires_at=expires_at if expires_at is not None else old.expires_at,
        )
        key, fresh = with_secret(fresh)
        if grace_s > 0:
            ends = now + timedelta(seconds=grace_s)
            if old.expires_at is None or parse_time(old.expires_at) > ends:
                retired = msgspec.structs.replace(old, expires_at=format_time(ends), replaced_by=fresh.id)
            else:
                retired = msgspec.structs.replace(old, replaced_by=fresh.id)
        else:
            retired = msgspec.structs.replace(old, revoked_at=format_time(now), replaced_by=fresh.id)
        # The new key first: a failure in between leaves two working keys, never none.
        await self.state.hash_set(KEYS_HASH, fresh.id, msgspec.json.encode(fresh))
        await self.state.hash_set(KEYS_HASH, key_id, msgspec.json.encode(retired))
        return key, fresh, retired

    async def widget_origins(self) -> frozenset[str]:
        """Every origin some usable widget key allows: what CORS preflights are answered for.

        Reused for a few seconds; when the state store fails, the last list (or the configured
        keys' origins) stands, since a preflight only lets a browser try.
        """
        now = time.monotonic()
        if self._origins is not None and self._origins[0] > now:
            return self._origins[1]
        try:
            records = await self.records()
        except StateUnavailableError:
            # Kept (not retried) for the same while: a down store must not slow every preflight.
            fallback = (
                self._origins[1] if self._origins else _widget_origins(self._static.values(), self.now())
            )
            self._origins = (now + _ORIGINS_TTL_S, fallback)
            return fallback
        origins = _widget_origins(records, self.now())
        self._origins = (now + _ORIGINS_TTL_S, origins)
        return origins

    async def _stored(self, key_id: str) -> KeyRecord:
        if key_id in self._static:
            raise InvalidRequestError(
                f"key {key_id} is declared in configuration (access.keys); remove or change its entry there"
            )
        record = _decoded(await self.state.hash_get(KEYS_HASH, key_id))
        if record is None:
            raise NotFoundError(f"no key with id {key_id}")
        return record

    async def _matches(self, key: str, stored: str) -> bool:
        now = time.monotonic()
        memo = (hashlib.sha256(key.encode()).hexdigest(), stored)
        until = self._verified.get(memo)
        if until is not None and until > now:
            self._verified.move_to_end(memo)
            return True
        # scrypt takes tens of milliseconds and releases the GIL: off the event loop.
        if not await asyncio.to_thread(verify_key, key, stored):
            return False
        if self.settings.verified_cache_s > 0:
            self._verified[memo] = now + self.settings.verified_cache_s
            while len(self._verified) > _VERIFIED_MAX:
                self._verified.popitem(last=False)
        return True


def _widget_origins(records: Iterable[KeyRecord], now: datetime) -> frozenset[str]:
    return frozenset(
        origin
        for record in records
        if record.role == "widget" and record.refusal(now) is None
        for origin in record.origins
    )


def _static_records(entries: Iterable[StaticKeySettings]) -> dict[str, KeyRecord]:
    records: dict[str, KeyRecord] = {}
    for entry in entries:
        where = f"access.keys entry {entry.id} ({entry.name})"
        if entry.id in records:
            raise ConfigError(f"{where}: another entry has the same id")
        origins = tuple(checked_origin(o, ConfigError, where) for o in entry.origins)
        if entry.role == "widget" and not origins:
            raise ConfigError(f"{where}: a widget key needs at least one origin")
        if entry.expires_at is not None:
            try:
                parse_time(entry.expires_at)
            except ValueError:
                raise ConfigError(
                    f"{where}: expires_at {entry.expires_at!r} is not an ISO-8601 time"
                ) from None
        records[entry.id] = KeyRecord(
            id=entry.id,
            name=entry.name,
            tenant=entry.tenant,
            role=entry.role,
            hash=entry.hash,
            tier=entry.tier,
            origins=origins,
            expires_at=entry.expires_at,
            declared_in="config",
        )
    return records


def _decoded(raw: bytes | None) -> KeyRecord | None:
    """A stored record; None for none, and for one this version cannot read (never a 500)."""
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=KeyRecord)
    except msgspec.DecodeError:
        return None
