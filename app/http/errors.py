"""Domain errors and framework errors → HTTP, in one place.

Every error body has the same shape, ``ErrorBody``: ``{"error": {"code", "message", "detail"?},
"request_id"}``; the OpenAPI document describes it from the same struct. Nothing a client can
send produces a 500; a 500 is a bug, logged with its traceback.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from app.errors import (
    AuthenticationError,
    InvalidRequestError,
    KBError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuestionTooLongError,
    RateLimitedError,
    StateUnavailableError,
    StoreUnavailableError,
)
from app.http.request_id import request_id_of

__all__ = ["EXCEPTION_HANDLERS", "ErrorBody", "ErrorInfo", "RequestBodyError", "error_body"]

log = structlog.get_logger("kb.http")


class ErrorInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: str
    """Stable, machine-readable: what went wrong (``invalid_body``, ``question_too_long``, ...)."""
    message: str
    """For people: what went wrong and, where it helps, what to change."""
    detail: Any = None
    """Structured specifics when there are any (e.g. the offending field); absent otherwise."""


class ErrorBody(msgspec.Struct, kw_only=True):
    """The body of every error response."""

    error: ErrorInfo
    request_id: str
    """The id in the ``X-Request-ID`` response header; it identifies the request in the logs."""


class RequestBodyError(Exception):
    """The request body cannot be read as the request type: always a 400, never a 500."""

    def __init__(self, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


_STATUS: dict[type[KBError], int] = {
    InvalidRequestError: HTTP_422_UNPROCESSABLE_ENTITY,
    QuestionTooLongError: HTTP_422_UNPROCESSABLE_ENTITY,
    StoreUnavailableError: HTTP_503_SERVICE_UNAVAILABLE,
    ProviderError: HTTP_503_SERVICE_UNAVAILABLE,
    StateUnavailableError: HTTP_503_SERVICE_UNAVAILABLE,
    AuthenticationError: HTTP_401_UNAUTHORIZED,
    PermissionDeniedError: HTTP_403_FORBIDDEN,
    NotFoundError: HTTP_404_NOT_FOUND,
    RateLimitedError: HTTP_429_TOO_MANY_REQUESTS,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_body(code: str, message: str, request_id: str, detail: Any = None) -> ErrorBody:
    return ErrorBody(
        error=ErrorInfo(code=code, message=message, detail=detail or None), request_id=request_id
    )


def _domain(request: Request[Any, Any, Any], exc: KBError) -> Response[ErrorBody]:
    status = next(
        (code for kind, code in _STATUS.items() if isinstance(exc, kind)), HTTP_500_INTERNAL_SERVER_ERROR
    )
    headers: dict[str, str] = {}
    detail: Any = None
    if isinstance(exc, AuthenticationError):
        # RFC 9110: a 401 names the scheme the client should use.
        headers["WWW-Authenticate"] = 'Bearer realm="kb"'
    elif isinstance(exc, RateLimitedError):
        headers.update(exc.headers)
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        detail = {"limit": exc.limit, "retry_after_s": round(exc.retry_after_s, 3)}
        _count_refusal(request, exc.limit)
    elif isinstance(exc, StateUnavailableError) and exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return Response(
        error_body(exc.code, exc.message, request_id_of(request.scope), detail),
        status_code=status,
        headers=headers,
    )


def _count_refusal(request: Request[Any, Any, Any], limit: str) -> None:
    """Every 429 passes here, so this is where refusals are counted (``kb_rate_limit_refusals_total``)."""
    services = getattr(request.app.state, "services", None)
    metrics = getattr(services, "metrics", None)
    if metrics is not None:
        metrics.rate_limit_refused(limit)


def _body(request: Request[Any, Any, Any], exc: RequestBodyError) -> Response[ErrorBody]:
    return Response(
        error_body(exc.code, exc.message, request_id_of(request.scope), exc.detail),
        status_code=HTTP_400_BAD_REQUEST,
    )


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    """Litestar's own validation (parameters of any route that declares them)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    # Name the field in the message itself; msgspec's own text leaves it out.
    messages = [
        f"{item['key']}: {item.get('message', '')}"
        if item.get("key") not in (None, "", "data")
        else item.get("message", "")
        for item in extra
        if isinstance(item, dict)
    ]
    message = "; ".join(m for m in messages if m) or exc.detail
    return Response(
        error_body("bad_request", f"invalid request: {message}", request_id_of(request.scope), extra),
        status_code=HTTP_400_BAD_REQUEST,
    )


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    return Response(
        error_body(_HTTP_CODES.get(exc.status_code, "http_error"), exc.detail, request_id_of(request.scope)),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled_error", error=repr(exc))
    return Response(
        error_body(
            "internal_error",
            "internal error; the request id identifies it in the logs",
            request_id_of(request.scope),
        ),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    KBError: _domain,
    RequestBodyError: _body,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unexpected,
}
