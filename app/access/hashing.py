"""API keys: their format, and the slow hash they are stored as.

A key is ``kb_<id>_<secret>``: a 12-hex-digit id that names the key (in listings, logs and the
key store) and 32 random bytes that prove it. Only a scrypt hash of the whole key is stored; the
key is shown once, at creation. scrypt is slow on purpose (a leaked key store does not give the
keys away), so callers cache a successful verification briefly (``app.access.keys``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

__all__ = ["KEY_PREFIX", "hash_key", "key_id_of", "new_key", "verify_key"]

KEY_PREFIX = "kb_"
_KEY_RE = re.compile(r"^kb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")

# scrypt cost: N=2^14, r=8, p=1 (16 MiB, tens of milliseconds) -- the interactive-login
# parameters of the scrypt paper, and what hashlib.scrypt's memory limit admits by default.
_N, _R, _P = 2**14, 8, 1
_LENGTH = 32


def new_key() -> tuple[str, str]:
    """A fresh key: ``(key_id, key)``."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(key: str) -> str | None:
    """The id of a well-formed key, None for anything else (no hashing is spent on garbage)."""
    match = _KEY_RE.match(key)
    return match.group(1) if match else None


def hash_key(key: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64url) of ``key``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_LENGTH)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_key(key: str, stored: str) -> bool:
    """Whether ``key`` matches ``stored`` (a ``hash_key`` result). Constant time in the digest."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            key.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
