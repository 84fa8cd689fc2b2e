"""What is known about an API key (``KeyRecord``), and the rules its attributes follow.

A record never holds the key, only its scrypt hash (``app.access.hashing``). Times are ISO-8601
in UTC; origins are ``scheme://host[:port]`` as browsers send them in ``Origin``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from app.access.hashing import hash_key, new_key
from app.errors import ConfigError, InvalidRequestError
from app.settings.access import TENANT_PATTERN

__all__ = [
    "KeyRecord",
    "KeyRole",
    "KeyStatus",
    "checked_origin",
    "expiry_time",
    "format_time",
    "new_record",
    "normalise_origin",
    "parse_duration",
    "parse_time",
    "with_secret",
]

KeyStatus = Literal["active", "revoked", "expired"]
KeyRole = Literal["user", "widget", "admin"]

_TENANT_RE = re.compile(TENANT_PATTERN)
_DURATION_RE = re.compile(r"^(\d+)([mhdw])$")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What is known about a key. Never contains the key."""

    id: str
    name: str
    tenant: str
    role: KeyRole
    hash: str
    tier: str = "default"
    origins: tuple[str, ...] = ()
    created_at: str = ""
    expires_at: str | None = None
    revoked_at: str | None = None
    replaced_by: str | None = None
    """The id of the key a rotation made to replace this one."""
    declared_in: Literal["config", "store"] = "store"
    """Where the key is declared: configuration (read-only here) or the state store."""

    def refusal(self, now: datetime) -> str | None:
        """Why this key may not be used now, or None."""
        if self.revoked_at:
            return "the API key has been revoked"
        if self.expires_at and parse_time(self.expires_at) <= now:
            return "the API key has expired"
        return None

    def status(self, now: datetime) -> KeyStatus:
        if self.revoked_at:
            return "revoked"
        return "expired" if self.refusal(now) else "active"

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a request with this ``Origin`` header may use the key (widget keys only have
        a list; a widget request without an ``Origin`` is refused: it is a browser's key)."""
        if self.role != "widget":
            return True
        return origin is not None and normalise_origin(origin) in self.origins


def new_record(
    *,
    name: str,
    tenant: str,
    role: KeyRole,
    now: datetime,
    tier: str = "default",
    origins: Iterable[str] = (),
    expires_at: str | None = None,
) -> KeyRecord:
    """A checked record without a key yet (``id`` and ``hash`` are empty; ``with_secret`` fills
    them). ``InvalidRequestError`` for attributes a key cannot have."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidRequestError("a key's name must have 1 to 100 characters")
    if not _TENANT_RE.match(tenant):
        raise InvalidRequestError(
            f"tenant {tenant!r} must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    if role not in ("user", "widget", "admin"):
        raise InvalidRequestError(f"role must be user, widget or admin, not {role!r}")
    if not tier.strip():
        raise InvalidRequestError("a key's tier cannot be empty")
    checked = tuple(dict.fromkeys(checked_origin(o, InvalidRequestError) for o in origins))
    if role == "widget" and not checked:
        raise InvalidRequestError("a widget key needs at least one origin it may be used from")
    if role != "widget" and checked:
        raise InvalidRequestError("origins apply to widget keys only")
    if expires_at is not None and _checked_time(expires_at) <= now:
        raise InvalidRequestError(f"the expiry {expires_at} is not in the future")
    return KeyRecord(
        id="",
        name=name,
        tenant=tenant,
        role=role,
        hash="",
        tier=tier,
        origins=checked,
        created_at=format_time(now),
        expires_at=expires_at,
    )


def with_secret(record: KeyRecord) -> tuple[str, KeyRecord]:
    """A fresh key for ``record``: ``(key, record with its id and hash)``."""
    key_id, key = new_key()
    return key, msgspec.structs.replace(record, id=key_id, hash=hash_key(key))


def parse_duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``90d``, ``2w`` (``0`` is no time at all)."""
    text = text.strip()
    if text == "0":
        return timedelta(0)
    match = _DURATION_RE.match(text)
    if not match:
        raise InvalidRequestError(f"{text!r} is not a duration such as 30m, 12h, 90d or 2w")
    return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` as browsers send it (lower case, no default port), or None for
    anything that is not such an origin (``null``, a path, credentials)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if (
        scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else "")


def expiry_time(text: str, now: datetime) -> str:
    """An expiry given as a duration from ``now`` (``30m``, ``12h``, ``90d``, ``2w``) or an
    ISO-8601 date or time (UTC unless it says otherwise), as a stored ISO time."""
    text = text.strip()
    if _DURATION_RE.match(text):
        duration = parse_duration(text)
        if not duration:
            raise InvalidRequestError("an expiry duration must be positive")
        return format_time(now + duration)
    try:
        when = parse_time(text)
    except ValueError:
        raise InvalidRequestError(
            f"expiry {text!r} is neither a duration (30m, 12h, 90d, 2w) nor an ISO-8601 date or time"
        ) from None
    return format_time(when)


def checked_origin(origin: str, error: type[ConfigError | InvalidRequestError], where: str = "") -> str:
    normal = normalise_origin(origin)
    if normal is None:
        prefix = f"{where}: " if where else ""
        raise error(
            f"{prefix}origin {origin!r} must be scheme://host[:port] (https://intranet.example.com), without a path"
        )
    return normal


def _checked_time(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise InvalidRequestError(f"{text!r} is not an ISO-8601 time") from None


def format_time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
