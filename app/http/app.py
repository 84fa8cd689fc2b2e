"""The application factory and the one plugin that wires it.

``create_app(settings)`` builds a Litestar app; tests pass their own settings (and may pass an
already-loaded embedder to save the model load). ``AppCore`` registers routes, dependencies,
exception handlers and the start-up/shut-down lifespan. Nothing is read at import time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar, Router
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol
from opentelemetry.sdk.trace import TracerProvider

from app.config import load_settings
from app.embedding import Embedder
from app.http.admin_prompts import admin_prompts_router
from app.http.ask import ask_route
from app.http.auth import PUBLIC, provide_caller, require_access
from app.http.errors import EXCEPTION_HANDLERS
from app.http.feedback import feedback_route
from app.http.health import live, ready
from app.http.limits import provide_limiter
from app.http.metrics import add_observability, tracing_plugin
from app.http.openapi import openapi_config, security_requirements
from app.http.request_id import RequestIdMiddleware, add_request_id_header
from app.http.security import HTML_CSP, CorsMiddleware, security_headers
from app.http.ui import WebAssets, ui_routes
from app.logs import ensure_logging
from app.observability import Telemetry
from app.pipeline import AskPipeline
from app.services import Services, build_services, build_telemetry
from app.settings import Settings

__all__ = ["AppCore", "create_app"]

log = structlog.get_logger("kb.http")


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def provide_pipeline(state: State) -> AskPipeline:
    return provide_services(state).pipeline


class AppCore(InitPluginProtocol):
    """Routes, dependencies, error mapping and lifespan of the service."""

    def __init__(
        self, settings: Settings, *, embedder: Embedder | None = None, telemetry: Telemetry | None = None
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.telemetry = telemetry or build_telemetry(settings, os.environ)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        settings = self.settings
        # The body limit goes on a router: Litestar reads the app-level limit from its constructor
        # argument (default 10 MB) and ignores ``AppConfig.request_max_body_size`` set by a plugin.
        ask = ask_route(max_top_k=settings.retrieval.max_top_k, max_body_bytes=settings.server.max_body_bytes)
        app_config.route_handlers.append(
            Router(
                "/",
                route_handlers=[ask, feedback_route(max_body_bytes=settings.server.max_body_bytes), ready],
                request_max_body_size=settings.server.max_body_bytes,
                security=security_requirements(settings.access),
            )
        )
        app_config.route_handlers.append(admin_prompts_router(max_body_bytes=settings.server.max_body_bytes))
        # What anyone may call (every other route needs a key, ``require_access``): liveness, and
        # the widget and the page at / (static files that hold no data).
        app_config.route_handlers.append(
            Router("/", route_handlers=[live, *ui_routes(WebAssets.load())], opt=PUBLIC)
        )
        app_config.guards.append(require_access)
        app_config.dependencies.update(
            {
                "services": Provide(provide_services, sync_to_thread=False),
                "pipeline": Provide(provide_pipeline, sync_to_thread=False),
                "heartbeat_s": Provide(lambda: settings.server.heartbeat_s, sync_to_thread=False),
                "caller": Provide(provide_caller),
                "limiter": Provide(provide_limiter, sync_to_thread=False),
            }
        )
        app_config.exception_handlers.update(EXCEPTION_HANDLERS)
        app_config.middleware.insert(0, RequestIdMiddleware)
        app_config.middleware.insert(1, CorsMiddleware)
        app_config.before_send.append(add_request_id_header)  # every response, routed or not
        # The development docs pages load CDN scripts; production serves none (access.diagnostics).
        public_docs = settings.access.diagnostics == "public"
        app_config.before_send.append(security_headers(html_csp=None if public_docs else HTML_CSP))
        app_config.lifespan.append(self._lifespan)
        add_observability(app_config, settings, self.telemetry)  # metrics, traces, /admin/requests
        # Litestar would otherwise configure stdlib logging (a root handler of its own format)
        # each time an app is built; logging is ``app.logs``'s, set up once per process.
        app_config.logging_config = None
        app_config.openapi_config = openapi_config(settings.access)
        return app_config

    @asynccontextmanager
    async def _lifespan(self, app: Litestar) -> AsyncIterator[None]:
        # Model load and warm-up are blocking and take seconds: keep the loop free meanwhile.
        services = await asyncio.to_thread(
            build_services, self.settings, embedder=self.embedder, telemetry=self.telemetry
        )
        app.state.services = services
        access = self.settings.access
        log.info("access", summary=access.summary, keys_in_config=len(access.keys))
        try:
            yield
        finally:
            await services.aclose()


def create_app(
    settings: Settings | None = None,
    *,
    embedder: Embedder | None = None,
    tracer_provider: TracerProvider | None = None,
    **litestar_kwargs: Any,
) -> Litestar:
    """The service's app. ``tracer_provider``: trace with this one (the caller's to shut down)
    instead of the one the OTEL_* variables describe (none when they name no endpoint)."""
    settings = settings or load_settings()
    # The process entry point (``kb serve``) configures logging; a bare factory call (uvicorn
    # given ``app.http:create_app``, a test) gets the same set-up once, never a second handler.
    ensure_logging(json_lines=settings.env == "production")
    telemetry = build_telemetry(settings, os.environ, tracer_provider=tracer_provider)
    plugins: list[Any] = [AppCore(settings, embedder=embedder, telemetry=telemetry)]
    if telemetry.tracer_provider is not None:  # the HTTP server span of every request
        plugins.append(tracing_plugin(telemetry.tracer_provider))
    return Litestar(plugins=plugins, **litestar_kwargs)
