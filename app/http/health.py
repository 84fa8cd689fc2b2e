"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.response import Response

from app.access.limits import LimitHealth
from app.http.auth import sees_diagnostics
from app.http.errors import ErrorBody
from app.records import Caller
from app.services import Services

__all__ = ["Liveness", "Readiness", "ReadinessStatus", "live", "ready"]


class Liveness(msgspec.Struct, kw_only=True):
    status: Literal["live"]


class Readiness(msgspec.Struct, kw_only=True):
    status: Literal["ready", "not_ready"]
    model: str
    """The embedding model."""
    provider: str
    """The answer generator (``anthropic``, ``extractive``)."""
    store: Literal["ok", "unavailable"]
    state: Literal["ok", "unavailable"]
    """The shared state store (API keys, conversations, caches): Redis or the local file."""
    limits: LimitHealth = "ok"
    """Rate limits: ``ok`` (enforced), ``off``, or with their storage (Redis) down
    ``fail_open`` (requests served unlimited; still ready) or ``unavailable`` (requests refused
    with 503: not ready)."""
    reasons: list[str]
    """Why the service is not ready; empty when it is."""


class ReadinessStatus(msgspec.Struct, kw_only=True):
    """Readiness as a caller without an admin key sees it (``access.diagnostics``): no details."""

    status: Literal["ready", "not_ready"]
    details: Literal["admin keys only"]
    """Why the details are missing (and what tells this shape from ``Readiness``)."""


@get("/health/live", summary="The process is up", sync_to_thread=False)
def live() -> Liveness:
    return Liveness(status="live")


@get(
    "/health/ready",
    summary="Model loaded, store and state store reachable; 503 with reasons otherwise",
    description="The details (model, stores, reasons) are for admin keys only, unless "
    '`access.diagnostics = "public"`; other callers get the status alone.',
    # No generated examples: they are random, and the document must be the same on every build.
    responses={
        401: ResponseSpec(
            data_container=ErrorBody, description="No API key, or not a valid one.", generate_examples=False
        ),
        403: ResponseSpec(
            data_container=ErrorBody,
            description="A widget key from a foreign origin.",
            generate_examples=False,
        ),
        503: ResponseSpec(
            # Litestar documents a union as oneOf; its annotation only names single types.
            data_container=Readiness | ReadinessStatus,  # type: ignore[arg-type]
            description="Not ready; `reasons` says why (to admin keys).",
            generate_examples=False,
        ),
    },
)
async def ready(
    services: NamedDependency[Services], caller: NamedDependency[Caller]
) -> Response[Readiness | ReadinessStatus]:
    problems: list[str] = []
    store_problem, state_problem, (limits, limits_problem) = await asyncio.gather(
        services.ensure_store(), services.ensure_state(), services.limits.health()
    )
    problems.extend(problem for problem in (store_problem, state_problem) if problem)
    if limits == "unavailable" and limits_problem:  # failing open, the service still answers
        problems.append(limits_problem)
    body = Readiness(
        status="ready" if not problems else "not_ready",
        model=services.embedder.model_name,
        provider=services.provider.name,
        store="ok" if not store_problem else "unavailable",
        state="ok" if not state_problem else "unavailable",
        limits=limits,
        reasons=problems,
    )
    details = sees_diagnostics(caller, services.settings.access)
    shown = body if details else ReadinessStatus(status=body.status, details="admin keys only")
    return Response(shown, status_code=200 if not problems else 503)
