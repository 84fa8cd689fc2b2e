"""Tenants: whose documents a chunk holds, and which chunks a caller may retrieve.

Every chunk records its tenant in the ``tenant`` payload field, which a Qdrant server indexes as
a keyword index with ``is_tenant`` (Qdrant's multitenancy layout: one collection, partitioned by
payload, each tenant's points stored together). A caller of tenant T retrieves the chunks of T
and the shared ones, whose tenant is ``*`` (``kb ingest --shared``): ``tenant_condition`` is part
of every store query retrieval makes, never a step after it. ``*`` cannot be a tenant's name
(``TenantName`` allows letters, digits, ``.``, ``_`` and ``-``), so no key can be the tenant of
the shared documents, and a caller of any tenant sees them.

Chunks written before tenants were recorded carry no ``tenant``; the first store open that may
write assigns them to the install's default tenant (``QdrantStore.claim_untenanted``).
"""

from __future__ import annotations

import msgspec
from qdrant_client import models

from app.errors import KBError
from app.records import DEFAULT_TENANT
from app.settings.access import TenantName

__all__ = [
    "DEFAULT_TENANT",
    "SHARED_TENANT",
    "TENANT_FIELD",
    "TenantError",
    "owned_by",
    "tenant_condition",
    "untenanted",
    "valid_tenant",
    "visible_tenants",
]

TENANT_FIELD = "tenant"
"""The payload field of a chunk that names its tenant."""

SHARED_TENANT = "*"
"""The tenant value of documents shared with every tenant."""


class TenantError(KBError):
    """A tenant name that cannot name a tenant."""

    code = "tenant_error"


def valid_tenant(name: str) -> str:
    """``name`` if documents can be ingested for it, else ``TenantError`` saying why.

    The rule is the one keys' tenants follow (``TenantName``), so every tenant documents are
    ingested for can be some key's tenant. ``SHARED_TENANT`` is refused: it is asked for as
    ``--shared``, never by name.
    """
    if name == SHARED_TENANT:
        raise TenantError(f"{SHARED_TENANT!r} is not a tenant: ingest shared documents with --shared")
    try:
        # ``$`` in the pattern also matches before a final newline: printable closes that gap.
        if name.isprintable():
            return msgspec.convert(name, TenantName)
    except msgspec.ValidationError:
        pass
    raise TenantError(
        f"tenant name {name[:80]!r} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit"
    )


def visible_tenants(tenant: str) -> list[str]:
    """The tenant values a caller of ``tenant`` may retrieve: its own and the shared ones."""
    return [tenant] if tenant == SHARED_TENANT else [tenant, SHARED_TENANT]


def tenant_condition(tenant: str) -> models.FieldCondition:
    """The condition every retrieval query carries for a caller of ``tenant``."""
    return models.FieldCondition(key=TENANT_FIELD, match=models.MatchAny(any=visible_tenants(tenant)))


def owned_by(tenant: str) -> models.FieldCondition:
    """Exactly the chunks of ``tenant`` (not the shared ones): what its writes and deletes touch."""
    return models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant))


def untenanted() -> models.IsEmptyCondition:
    """Chunks written before tenants were recorded (no ``tenant`` field)."""
    return models.IsEmptyCondition(is_empty=models.PayloadField(key=TENANT_FIELD))
