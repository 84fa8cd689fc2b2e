"""The application factory and the one plugin that wires it.

``create_app(settings)`` builds a Litestar app; tests pass their own settings (and may pass an
already-loaded embedder to save the model load). ``AppCore`` registers routes, dependencies,
exception handlers and the start-up/shut-down lifespan. Nothing is read at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Router
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins import InitPluginProtocol

from app.config import load_settings
from app.embedding import Embedder
from app.http.ask import ask_route
from app.http.errors import EXCEPTION_HANDLERS
from app.http.health import live, ready
from app.http.request_id import RequestIdMiddleware, add_request_id_header
from app.http.ui import WebAssets, ui_routes
from app.logs import ensure_logging
from app.pipeline import AskPipeline
from app.services import Services, build_services
from app.settings import Settings

__all__ = ["AppCore", "create_app"]


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def provide_pipeline(state: State) -> AskPipeline:
    return provide_services(state).pipeline


class AppCore(InitPluginProtocol):
    """Routes, dependencies, error mapping and lifespan of the service."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        settings = self.settings
        # The body limit goes on a router: Litestar reads the app-level limit from its constructor
        # argument (default 10 MB) and ignores ``AppConfig.request_max_body_size`` set by a plugin.
        ask = ask_route(max_top_k=settings.retrieval.max_top_k, max_body_bytes=settings.server.max_body_bytes)
        app_config.route_handlers.append(
            Router(
                "/", route_handlers=[ask, live, ready], request_max_body_size=settings.server.max_body_bytes
            )
        )
        app_config.route_handlers.extend(ui_routes(WebAssets.load()))  # the widget and the page at /
        app_config.dependencies.update(
            {
                "services": Provide(provide_services, sync_to_thread=False),
                "pipeline": Provide(provide_pipeline, sync_to_thread=False),
                "heartbeat_s": Provide(lambda: settings.server.heartbeat_s, sync_to_thread=False),
            }
        )
        app_config.exception_handlers.update(EXCEPTION_HANDLERS)
        app_config.middleware.insert(0, RequestIdMiddleware)
        app_config.before_send.append(add_request_id_header)  # every response, routed or not
        app_config.lifespan.append(self._lifespan)
        # Litestar would otherwise configure stdlib logging (a root handler of its own format)
        # each time an app is built; logging is ``app.logs``'s, set up once per process.
        app_config.logging_config = None
        app_config.openapi_config = OpenAPIConfig(title="Knowledge base", version="0.1.0", path="/schema")
        return app_config

    @asynccontextmanager
    async def _lifespan(self, app: Litestar) -> AsyncIterator[None]:
        # Model load and warm-up are blocking and take seconds: keep the loop free meanwhile.
        services = await asyncio.to_thread(build_services, self.settings, embedder=self.embedder)
        app.state.services = services
        try:
            yield
        finally:
            await services.aclose()


def create_app(
    settings: Settings | None = None, *, embedder: Embedder | None = None, **litestar_kwargs: Any
) -> Litestar:
    settings = settings or load_settings()
    # The process entry point (``kb serve``) configures logging; a bare factory call (uvicorn
    # given ``app.http:create_app``, a test) gets the same set-up once, never a second handler.
    ensure_logging(json_lines=settings.env == "production")
    return Litestar(plugins=[AppCore(settings, embedder=embedder)], **litestar_kwargs)
