"""What every HTTP response contributes, as plain ASGI: request metrics, the trace id header,
the server span's name.

``HttpObservability.middleware`` wraps each routed request (Litestar runs middleware only for
requests that matched a route): its duration to the last byte, its status, and whether it is an
event stream (``kb_active_streams``). ``before_send`` sees every response, routed or not: it adds
``X-Trace-Id`` when a span is current, names the server span after the route template
(``POST /ask``, ``GET /admin/requests/{request_id:str}``, never a raw path) and counts the
responses no route matched, as route ``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from opentelemetry import trace

from app.observability.metrics import Metrics

__all__ = ["TRACE_ID_HEADER", "HttpObservability", "span_details"]

TRACE_ID_HEADER = "X-Trace-Id"
"""The OpenTelemetry trace id of the request (32 hex digits), when tracing is on."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_OBSERVED = "kb_observed"  # in the scope's state: the middleware counts this request
_UNMATCHED = "unmatched"
_EVENT_STREAM = b"text/event-stream"


def span_details(scope: Mapping[str, object]) -> tuple[str, dict[str, Any]]:
    """The server span's first name: the method alone, as the HTTP conventions name a span whose
    route is not known yet (routing has not happened); ``before_send`` renames it."""
    return str(scope.get("method") or scope.get("type", "HTTP")), {}


def _route(scope: Scope) -> str | None:
    template = scope.get("path_template")
    return str(template) if template else None


class HttpObservability:
    """The HTTP side of metrics and traces, for one app."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Litestar middleware (called as ``middleware(app=...)``)."""
        metrics = self.metrics
        if metrics is None:
            return app

        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            scope.setdefault("state", {})[_OBSERVED] = True
            started = time.perf_counter()
            status = 500  # what the client gets if nothing was sent
            streaming = False

            async def watched(message: Message) -> None:
                nonlocal status, streaming
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    content_type = dict(message.get("headers") or ()).get(b"content-type", b"")
                    if content_type.startswith(_EVENT_STREAM):
                        streaming = True
                        metrics.stream_opened()
                await send(message)

            try:
                await app(scope, receive, watched)
            finally:
                if streaming:
                    metrics.stream_closed()
                metrics.request_finished(
                    route=_route(scope) or _UNMATCHED,
                    method=str(scope.get("method", "")),
                    status=status,
                    duration_s=time.perf_counter() - started,
                )

        return observed

    async def before_send(self, message: Message, scope: Scope) -> None:
        """Litestar ``before_send`` hook: runs for every response."""
        if message["type"] != "http.response.start":
            return
        span = trace.get_current_span()
        context = span.get_span_context()
        route = _route(scope)
        if context.is_valid:
            message["headers"] = [
                *(message.get("headers") or ()),
                (TRACE_ID_HEADER.lower().encode(), format(context.trace_id, "032x").encode()),
            ]
            if route is not None and span.is_recording():
                span.update_name(f"{scope.get('method', '')} {route}")
                span.set_attribute("http.route", route)
        state = scope.get("state") or {}
        if self.metrics is not None and not state.get(_OBSERVED):
            self.metrics.request_finished(
                route=route or _UNMATCHED,
                method=str(scope.get("method", "")),
                status=int(message["status"]),
                duration_s=None,
            )
