"""Domain errors and framework errors → HTTP, in one place.

Every error body has the same shape: ``{"error": {"code", "message", "detail"?}, "request_id"}``.
Nothing a client can send produces a 500; a 500 is a bug, logged with its traceback.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from app.errors import (
    InvalidRequestError,
    KBError,
    ProviderError,
    QuestionTooLongError,
    StoreUnavailableError,
)
from app.http.request_id import request_id_of

__all__ = ["EXCEPTION_HANDLERS", "error_body"]

log = structlog.get_logger("kb.http")

_STATUS: dict[type[KBError], int] = {
    InvalidRequestError: HTTP_422_UNPROCESSABLE_ENTITY,
    QuestionTooLongError: HTTP_422_UNPROCESSABLE_ENTITY,
    StoreUnavailableError: HTTP_503_SERVICE_UNAVAILABLE,
    ProviderError: HTTP_503_SERVICE_UNAVAILABLE,
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


def error_body(code: str, message: str, request_id: str, detail: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail:
        error["detail"] = detail
    return {"error": error, "request_id": request_id}


def _domain(request: Request[Any, Any, Any], exc: KBError) -> Response[Any]:
    status = next(
        (code for kind, code in _STATUS.items() if isinstance(exc, kind)), HTTP_500_INTERNAL_SERVER_ERROR
    )
    return Response(error_body(exc.code, exc.message, request_id_of(request.scope)), status_code=status)


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    # Name the field in the message itself ("top_k: Expected `int` >= 1"); msgspec's own text
    # leaves it out, and "data" is Litestar's name for the body as a whole.
    messages = [
        f"{item['key']}: {item.get('message', '')}"
        if item.get("key") not in (None, "", "data")
        else item.get("message", "")
        for item in extra
        if isinstance(item, dict)
    ]
    message = "; ".join(m for m in messages if m) or exc.detail
    if "JSON is malformed" in message or "malformed" in message.lower():
        code = "malformed_json"
    else:
        code = "invalid_body"
    return Response(
        error_body(code, f"invalid request body: {message}", request_id_of(request.scope), extra or None),
        status_code=HTTP_400_BAD_REQUEST,
    )


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail
    # Litestar reports an undecodable body as a plain 400 ClientException raised from a
    # SerializationException (msgspec's words: "Input data was truncated", ...), not as a
    # ValidationException, so it is recognised here by its cause.
    if isinstance(exc.__cause__, SerializationException):
        code, message = "malformed_json", f"request body is malformed JSON: {exc.detail}"
    return Response(
        error_body(code, message, request_id_of(request.scope)),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled_error", error=repr(exc))
    return Response(
        error_body(
            "internal_error",
            "internal error; the request id identifies it in the logs",
            request_id_of(request.scope),
        ),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    KBError: _domain,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unexpected,
}
