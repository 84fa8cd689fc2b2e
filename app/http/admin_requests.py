"""``GET /admin/requests/{request_id}``: what happened to one request (admin keys only).

The record the pipeline's observer stored after the response (``app.observability.records``):
stage timings, the retrieval status and its reason, the question searched (when
``observability.record_text``), chunk ids, sources and scores before and after ranking, the
prompt version, the model, token usage and grant, cache hit, the error if any, and the trace id
that finds its spans. Records are kept ``observability.record_ttl_s`` and at most
``observability.record_count`` of them; an older or unknown id is a 404. docs/operations.md says
how to read one.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import Operation
from litestar.params import Parameter

from app.errors import NotFoundError
from app.http.auth import ACCESS_OPT, admin_only
from app.http.openapi import SECURITY_SCHEMES, error_response, json_schema, response
from app.observability import RequestTrace
from app.services import Services

__all__ = ["admin_requests_route", "request_trace"]

# No pattern: a malformed id is one no request has (404). With one, the guard would answer it
# first (401/403), before the parameter is checked, and the document would promise a 400.
_REQUEST_ID_FORM = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # what ``app.http.request_id`` assigns
_REQUEST_ID = Parameter(
    description="The request's id: its `X-Request-ID` response header, or `request_id` in `done`.",
)


async def request_trace(
    request_id: Annotated[str, _REQUEST_ID], services: NamedDependency[Services]
) -> RequestTrace:
    trace = await services.records.get(request_id) if _REQUEST_ID_FORM.match(request_id) else None
    if trace is None:
        raise NotFoundError(
            f"no record of request {request_id}: unknown, older than the records kept, or not written yet"
        )
    return trace


_RESPONSES: dict[int, dict[str, Any]] = {
    200: response("What happened to the request.", {"application/json": json_schema(RequestTrace)}),
    401: error_response("No API key, or a key that is malformed, unknown, revoked or expired."),
    403: error_response("A key that is not an admin key."),
    404: error_response(
        "No record of this request: unknown (or not a request id), expired or dropped, or not written yet."
    ),
    503: error_response("The state store is unavailable; retrying may help."),
}


class _Documented(Operation):
    def to_schema(self) -> dict[str, Any]:
        schema = super().to_schema()
        schema.pop("requestBody", None)
        schema["responses"] = {str(status): doc for status, doc in sorted(_RESPONSES.items())}
        return schema


def admin_requests_route() -> HTTPRouteHandler:
    return get(
        "/admin/requests/{request_id:str}",
        summary="What happened to one request",
        description="The stored record of an answered request, written after its response: stage "
        "timings, retrieval status and reason, chunks and scores before and after ranking, prompt "
        "version, model, token usage, cache hit, error, trace id.",
        guards=[admin_only],
        opt={ACCESS_OPT: "admin"},
        security=[{scheme: []} for scheme in SECURITY_SCHEMES],
        tags=["admin"],
        operation_class=_Documented,
    )(request_trace)
