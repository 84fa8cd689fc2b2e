"""Settings: API keys, roles and tenants (``app.access``)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from app.records import DEFAULT_TENANT
from app.settings.base import _Section

__all__ = ["TENANT_PATTERN", "AccessSettings", "StaticKeySettings", "TenantName"]

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""What a tenant's name may be: the rule of configuration and of ``kb keys`` alike."""
TenantName = Annotated[str, Meta(pattern=TENANT_PATTERN)]


class StaticKeySettings(_Section, frozen=True):
    """An API key declared in configuration by its hash (static deployments, tests).

    ``kb keys hash`` prints such an entry for a new key; the key itself is never in a file.
    """

    id: Annotated[str, Meta(pattern=r"^[0-9a-f]{12}$")]
    """The key's id: the part after ``kb_`` of the key."""

    name: Annotated[str, Meta(min_length=1, max_length=100)]
    """Who or what the key is for, shown in listings and logs."""

    tenant: TenantName
    """The team or organisation whose documents the key may retrieve."""

    role: Literal["user", "widget", "admin"]
    """``user`` asks; ``widget`` asks from ``origins`` only; ``admin`` also reaches admin endpoints."""

    hash: Annotated[str, Meta(pattern=r"^scrypt\$")]
    """The key's scrypt hash (``app.access.hashing``)."""

    tier: str = "default"
    """Limit tier (``limits.tiers``)."""

    origins: tuple[str, ...] = ()
    """Origins a widget key works from (``https://intranet.example.com``); required for widgets."""

    expires_at: str | None = None
    """ISO-8601 time after which the key is refused; None: it does not expire."""


class AccessSettings(_Section, frozen=True):
    """Who may call the service."""

    anonymous: bool = False
    """Answer requests that carry no key, as an ``anonymous`` caller of ``anonymous_tenant``
    limited per client address. Off by default (every endpoint but liveness needs a key); the
    development configuration (``config/development.toml``) turns it on for the local demo."""

    anonymous_tenant: TenantName = DEFAULT_TENANT
    """The tenant whose documents anonymous callers retrieve."""

    keys: tuple[StaticKeySettings, ...] = ()
    """Keys declared by hash in configuration, besides those ``kb keys create`` stores in the
    state store."""

    diagnostics: Literal["admin", "public"] = "admin"
    """Who sees the service's internals: readiness details (model, store, reasons) and the API
    documentation under ``/schema``. ``admin``: admin keys only, and ``/schema`` serves the JSON
    and YAML documents only, not the HTML pages (they load scripts from a CDN, and a browser
    cannot send a key when it opens a page). ``public``: every caller, with the HTML pages (the
    local demo, ``config/development.toml``)."""

    verified_cache_s: Annotated[float, Meta(ge=0.0, le=300.0)] = 30.0
    """How long a key whose hash was verified skips the (deliberately slow) hash check again.
    Revocation and expiry are checked on every request regardless."""

    @property
    def summary(self) -> str:
        """Who may call, in words: what the start-up lines say."""
        if self.anonymous:
            return (
                "anonymous access is ON: requests without an API key are answered "
                f"(tenant {self.anonymous_tenant!r}, limited per client address); production requires keys"
            )
        return "an API key is required on every endpoint but /health/live and the web UI's static files"
