"""Who is calling: the request's API key resolved to a ``Caller`` before the handler runs.

A key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Without one, the caller
is anonymous where the configuration allows it (``access.anonymous``, the local demo) and
refused with 401 everywhere else. A key that is presented is always checked, demo or not.

Every route is closed unless it says otherwise: ``require_access`` is an app-level guard that
reads the route's ``opt["access"]``:

* ``public``: no key needed (liveness, the widget script and the page at ``/``: static files
  that hold no data);
* ``caller`` (the default): a valid key, or an anonymous caller where allowed;
* ``diagnostics``: as ``caller`` where ``access.diagnostics = "public"``, an admin key otherwise
  (the API documentation under ``/schema``);
* ``admin``: an admin key (``admin_only`` is the same rule as a route guard).

A ``widget`` key is refused (403) unless the request's ``Origin`` is one of the key's origins.
"""

from __future__ import annotations

from typing import Any, Literal

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler

from app.access import KeyRecord
from app.errors import AuthenticationError, PermissionDeniedError
from app.records import Caller
from app.services import Services
from app.settings import AccessSettings

__all__ = [
    "ACCESS_OPT",
    "API_KEY_HEADER",
    "PUBLIC",
    "WIDGET_ORIGIN_STATE",
    "AccessRule",
    "admin_only",
    "presented_key",
    "provide_caller",
    "require_access",
    "resolve_caller",
    "sees_diagnostics",
]

API_KEY_HEADER = "X-API-Key"
ACCESS_OPT = "access"
"""The key of a route's (or router's) ``opt`` that names its ``AccessRule``."""

AccessRule = Literal["public", "caller", "diagnostics", "admin"]
PUBLIC: dict[str, AccessRule] = {ACCESS_OPT: "public"}
"""``opt`` of a route anyone may call."""

_CALLER_SCOPE_KEY = "kb_caller"  # in the request's state: resolved once per request
WIDGET_ORIGIN_STATE = "kb_widget_origin"
"""In the request's state: the ``Origin`` a widget key was accepted from (CORS names it at once)."""


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The key the request carries, if any (``Authorization: Bearer`` wins over ``X-API-Key``)."""
    authorization = connection.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError("the Authorization header must be `Bearer <API key>`")
        return value.strip()
    key = connection.headers.get(API_KEY_HEADER)
    return key.strip() if key else None


async def resolve_caller(connection: ASGIConnection[Any, Any, Any, Any], services: Services) -> Caller:
    """The caller of this connection, resolved once per request and remembered in its scope."""
    known = connection.state.get(_CALLER_SCOPE_KEY)
    if isinstance(known, Caller):
        return known
    client = connection.client.host if connection.client else ""
    key = presented_key(connection)
    if key is None:
        access = services.settings.access
        if not access.anonymous:
            raise AuthenticationError(
                "an API key is required: send `Authorization: Bearer <key>` (create one with `kb keys create`)"
            )
        caller = Caller(
            key_id=None, name="anonymous", tenant=access.anonymous_tenant, role="anonymous", client=client
        )
    else:
        record = await services.keys.resolve(key)
        origin = connection.headers.get("origin")
        if not record.allows_origin(origin):
            raise PermissionDeniedError(
                "this widget key may be used only from the web origins it was made for"
            )
        if record.role == "widget":
            connection.state[WIDGET_ORIGIN_STATE] = origin
        caller = _caller_of(record, client)
    connection.state[_CALLER_SCOPE_KEY] = caller
    return caller


async def provide_caller(request: Request[Any, Any, Any], services: NamedDependency[Services]) -> Caller:
    """Dependency: the caller of this request (401 when it has no valid key and must have one)."""
    return await resolve_caller(request, services)


async def require_access(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """App-level guard: the route's ``opt["access"]`` rule (``caller`` when it names none)."""
    rule: AccessRule = handler.opt.get(ACCESS_OPT, "caller")
    # A bare OPTIONS (Litestar's automatic answer: the allowed methods) discloses nothing; CORS
    # preflights are answered before routing (``app.http.security``).
    if rule == "public" or connection.scope.get("method") == "OPTIONS":
        return
    services: Services = connection.app.state.services
    caller = await resolve_caller(connection, services)
    if rule == "admin" or (rule == "diagnostics" and not sees_diagnostics(caller, services.settings.access)):
        _require_admin(caller)


async def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: only an ``admin`` key passes (401 without a key, 403 with another role)."""
    services: Services = connection.app.state.services
    _require_admin(await resolve_caller(connection, services))


def sees_diagnostics(caller: Caller, access: AccessSettings) -> bool:
    """Whether ``caller`` may see readiness details and the API documentation."""
    return caller.role == "admin" or access.diagnostics == "public"


def _require_admin(caller: Caller) -> None:
    if caller.role != "admin":
        raise PermissionDeniedError("this endpoint needs an admin key")


def _caller_of(record: KeyRecord, client: str) -> Caller:
    return Caller(
        key_id=record.id,
        name=record.name,
        tenant=record.tenant,
        role=record.role,
        tier=record.tier,
        client=client,
    )
