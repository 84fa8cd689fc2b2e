"""The HTTP app's telemetry: ``GET /metrics``, the metrics port, Litestar's OpenTelemetry plugin.

Metrics are served in one of two places (``observability.metrics_port``): at ``/metrics`` on the
API port, to admin keys only, or on a port of their own without a key (where only the scraper
reaches it), served by prometheus-client's own small HTTP server. With several worker processes
the port is served once, by ``kb serve`` (the supervisor), from the multiprocess folder that
every worker writes to (``app.observability.metrics``); a worker then serves none.

Traces: the server span of every request is the OpenTelemetry plugin's (HTTP semantic
conventions), with the app's own tracer provider passed in (no global provider is set); the
send and receive spans of each SSE chunk are left out (a span per delta would be noise), and so
are health checks and scrapes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

import structlog
from litestar import Litestar, get
from litestar.config.app import AppConfig
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.response import Response
from litestar.types import BeforeMessageSendHookHandler, Middleware, Scopes
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider

from app.errors import NotFoundError
from app.http.admin_requests import admin_requests_route
from app.http.auth import ACCESS_OPT, admin_only
from app.http.openapi import SECURITY_SCHEMES
from app.observability import HttpObservability, Telemetry, exposition_registry, serve_metrics_port
from app.observability.http import span_details
from app.services import Services
from app.settings import Settings

__all__ = [
    "add_observability",
    "metrics_port_lifespan",
    "metrics_route",
    "serve_metrics_port",
    "tracing_plugin",
]

log = structlog.get_logger("kb.http")

_UNTRACED = ["^/health/", "^/metrics$"]


async def metrics(services: NamedDependency[Services]) -> Response[bytes]:
    exported = services.metrics
    if exported is None:  # the route is only registered with metrics on
        raise NotFoundError("metrics are off (observability.metrics)")
    body, content_type = exported.exposition()
    return Response(body, media_type=content_type)


def metrics_route() -> HTTPRouteHandler:
    """``GET /metrics``: the Prometheus text format, admin keys only."""
    return get(
        "/metrics",
        summary="Prometheus metrics",
        description="Every series in the Prometheus text format (docs/operations.md lists them). "
        "In multiprocess mode (several workers), the totals of every worker.",
        guards=[admin_only],
        opt={ACCESS_OPT: "admin"},
        security=[{scheme: []} for scheme in SECURITY_SCHEMES],
        tags=["admin"],
        include_in_schema=False,  # not an API: its format is Prometheus's, its reader a scraper
    )(metrics)


def metrics_port_lifespan(host: str, port: int) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A lifespan that serves the app's metrics on their own port while the app runs (after the
    services are built: it is registered after the one that builds them)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        services: Services = app.state.services
        if services.metrics is None:
            yield
            return
        exported = services.metrics
        stop = serve_metrics_port(
            exposition_registry(exported.registry, exported.multiprocess_dir), host=host, port=port
        )
        try:
            yield
        finally:
            stop()

    return lifespan


def tracing_plugin(provider: TracerProvider) -> OpenTelemetryPlugin:
    """Litestar's OpenTelemetry plugin, with this app's provider (never the global one)."""
    scopes: Scopes = {ScopeType.HTTP}
    return OpenTelemetryPlugin(
        OpenTelemetryConfig(
            tracer_provider=provider,
            # The HTTP metrics are Prometheus's here; the plugin's would go to a global provider.
            meter_provider=NoOpMeterProvider(),
            exclude_spans=["receive", "send"],
            exclude=_UNTRACED,
            scopes=scopes,
            scope_span_details_extractor=span_details,
        )
    )


def add_observability(app_config: AppConfig, settings: Settings, telemetry: Telemetry) -> None:
    """Register the request metrics and trace hooks, ``/admin/requests/{id}`` and ``/metrics``
    (or the metrics port) on ``app_config``. Call it after the lifespan that builds the services
    is registered: the metrics port's lifespan needs them."""
    observability = settings.observability
    http = HttpObservability(telemetry.metrics)
    # Plain ASGI callables: ``app.observability`` knows no Litestar types.
    app_config.middleware.append(cast("Middleware", http.middleware))
    app_config.before_send.append(cast("BeforeMessageSendHookHandler", http.before_send))  # every response
    app_config.route_handlers.append(admin_requests_route())
    if telemetry.metrics is None:
        return
    if observability.metrics_port is None:
        app_config.route_handlers.append(metrics_route())
    elif settings.server.workers == 1:  # with more, ``kb serve`` serves the port for all of them
        app_config.lifespan.append(
            metrics_port_lifespan(observability.metrics_host, observability.metrics_port)
        )
