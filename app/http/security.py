"""HTTP hygiene: headers every response carries, and CORS for the origins widget keys allow.

``security_headers`` is a ``before_send`` hook, so every response gets its headers, a 404 or a
405 (which never reach a route's middleware) included:

* ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` everywhere;
* a Content-Security-Policy on HTML that has none of its own. The page at ``/`` brings its own
  (``app.http.ui.PAGE_CSP``: it loads this origin's script and style); any other HTML gets
  ``HTML_CSP``, which allows nothing to load. The API documentation pages of the development
  configuration are the exception (``html_csp=None``): they load their scripts from a CDN, and
  production does not serve them (``access.diagnostics``).

The ``Server`` banner is uvicorn's, switched off where ``kb serve`` configures it.

``CorsMiddleware`` answers CORS for the origins of widget keys, and only for them: a preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) carries no key, so it is answered for the
union of every usable widget key's origins (``KeyRing.widget_origins``, re-read every few
seconds); the request that follows is checked against its own key's origins (``app.http.auth``,
403 otherwise). Responses to an allowed origin, streamed ones included (the headers go with the
response's start), carry
``Access-Control-Allow-Origin: <that origin>`` and expose the headers the widget reads. Another
origin gets no CORS headers at all, so its browser keeps the response from the page.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, BeforeMessageSendHookHandler, Message, Receive, Scope, Send

from app.access import normalise_origin
from app.http.auth import WIDGET_ORIGIN_STATE
from app.services import Services

__all__ = [
    "CORS_ALLOW_HEADERS",
    "CORS_ALLOW_METHODS",
    "CORS_EXPOSE_HEADERS",
    "HTML_CSP",
    "CorsMiddleware",
    "security_headers",
]

HTML_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
"""The policy of HTML that brings none: nothing may load, nothing may frame it."""

CORS_ALLOW_METHODS = "GET, POST, OPTIONS"
CORS_ALLOW_HEADERS = "Authorization, X-API-Key, Content-Type, X-Request-ID"
CORS_EXPOSE_HEADERS = ", ".join(
    [
        "X-Request-ID",
        "Retry-After",
        "RateLimit",
        "RateLimit-Policy",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    ]
)
"""What a widget's script may read of a response besides the CORS-safelisted headers: the
request id it reports, and when to try again after a 429."""
_PREFLIGHT_MAX_AGE_S = "600"  # browsers cap it lower anyway (Chromium: 2 hours)


def security_headers(*, html_csp: str | None = HTML_CSP) -> BeforeMessageSendHookHandler:
    """The ``before_send`` hook; ``html_csp`` is the policy of HTML without its own (None: none)."""

    async def add_security_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        _default(headers, "X-Content-Type-Options", "nosniff")
        _default(headers, "Referrer-Policy", "no-referrer")
        if html_csp and headers.get("content-type", "").lower().startswith("text/html"):
            _default(headers, "Content-Security-Policy", html_csp)

    return add_security_headers


class CorsMiddleware:
    """CORS for widget origins: preflights answered here, allowed origins named on responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        allowed = origin is not None and await _allowed(scope, origin)
        if allowed and scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await _preflight(send, origin or "")
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                if "access-control-allow-origin" not in headers:  # the widget script's own "*" stays
                    headers.extend_header_value("Vary", "Origin")
                    # A widget key accepted from this origin (app.http.auth) names it at once,
                    # before the union of origins is next re-read.
                    accepted = scope.get("state", {}).get(WIDGET_ORIGIN_STATE) == origin
                    if (allowed or accepted) and origin is not None:
                        headers["Access-Control-Allow-Origin"] = origin
                        headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_cors)


async def _allowed(scope: Scope, origin: str) -> bool:
    services: Services | None = getattr(scope["app"].state, "services", None)
    normal = normalise_origin(origin)
    if services is None or normal is None:
        return False
    return normal in await services.keys.widget_origins()


async def _preflight(send: Send, origin: str) -> None:
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", CORS_ALLOW_METHODS.encode()),
        (b"access-control-allow-headers", CORS_ALLOW_HEADERS.encode()),
        (b"access-control-max-age", _PREFLIGHT_MAX_AGE_S.encode()),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _default(headers: MutableScopeHeaders, name: str, value: str) -> None:
    if name not in headers:
        headers[name] = value
