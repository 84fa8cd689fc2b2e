"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Response

from app.services import Services

__all__ = ["live", "ready"]


@get("/health/live", summary="The process is up", sync_to_thread=False)
def live() -> dict[str, str]:
    return {"status": "live"}


@get("/health/ready", summary="Model loaded and store reachable; 503 with reasons otherwise")
async def ready(services: NamedDependency[Services]) -> Response[dict[str, Any]]:
    problems: list[str] = []
    store_problem = await services.ensure_store()
    if store_problem:
        problems.append(store_problem)
    body: dict[str, Any] = {
        "status": "ready" if not problems else "not_ready",
        "model": services.embedder.model_name,
        "provider": services.provider.name,
        "store": "ok" if not store_problem else "unavailable",
        "reasons": problems,
    }
    return Response(body, status_code=200 if not problems else 503)
