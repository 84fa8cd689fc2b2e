"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.response import Response

from app.services import Services

__all__ = ["Liveness", "Readiness", "live", "ready"]


class Liveness(msgspec.Struct, kw_only=True):
    status: Literal["live"]


class Readiness(msgspec.Struct, kw_only=True):
    status: Literal["ready", "not_ready"]
    model: str
    """The embedding model."""
    provider: str
    """The answer generator (``anthropic``, ``extractive``)."""
    store: Literal["ok", "unavailable"]
    reasons: list[str]
    """Why the service is not ready; empty when it is."""


@get("/health/live", summary="The process is up", sync_to_thread=False)
def live() -> Liveness:
    return Liveness(status="live")


@get(
    "/health/ready",
    summary="Model loaded and store reachable; 503 with reasons otherwise",
    responses={503: ResponseSpec(data_container=Readiness, description="Not ready; `reasons` says why.")},
)
async def ready(services: NamedDependency[Services]) -> Response[Readiness]:
    problems: list[str] = []
    store_problem = await services.ensure_store()
    if store_problem:
        problems.append(store_problem)
    body = Readiness(
        status="ready" if not problems else "not_ready",
        model=services.embedder.model_name,
        provider=services.provider.name,
        store="ok" if not store_problem else "unavailable",
        reasons=problems,
    )
    return Response(body, status_code=200 if not problems else 503)
