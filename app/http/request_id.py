"""Every request gets an id: taken from ``X-Request-ID`` when sane, else made. It is echoed in
the response header of every response (a 404 or 405 included), reported in error bodies and in
``done``, and bound into every log line of the request.

The id lives in the ASGI scope's state and is assigned on first use, whoever asks first: the
middleware (routed requests), an exception handler, or the ``before_send`` hook. Litestar runs
middleware only for requests that matched a route, so a 404 or 405 never passes through it.
"""

from __future__ import annotations

import re
import uuid

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_DESCRIPTION",
    "REQUEST_ID_HEADER",
    "RequestIdMiddleware",
    "add_request_id_header",
    "request_id_of",
]

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_DESCRIPTION = "The request's id: the client's own `X-Request-ID` when sane, else a new one."
_SANE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_of(scope: Scope) -> str:
    """The request's id; assigned (from a sane ``X-Request-ID``, or made) on the first call."""
    state = scope.setdefault("state", {})
    request_id: str | None = state.get("request_id")
    if request_id is None:
        incoming = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), ""
        )
        request_id = incoming if _SANE.match(incoming) else uuid.uuid4().hex
        state["request_id"] = request_id
    return request_id


async def add_request_id_header(message: Message, scope: Scope) -> None:
    """``before_send`` hook: every HTTP response carries the request's id."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id_of(scope)


class RequestIdMiddleware:
    """Binds the request's id (and path) into every log line written while it is handled."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        with structlog.contextvars.bound_contextvars(
            request_id=request_id_of(scope), method=scope.get("method"), path=scope.get("path")
        ):
            await self.app(scope, receive, send)
