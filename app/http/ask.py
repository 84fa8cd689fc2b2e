"""``POST /ask``: read the body, validate, hand off to the pipeline, stream its events.

``ask_route`` builds the route for one app, so that its OpenAPI description states that app's
configured limits (``app.http.openapi``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.handlers import HTTPRouteHandler
from litestar.params import RawBody
from litestar.response import Stream
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

from app.access.limits import Limiter
from app.http.body import decode_json_body
from app.http.openapi import (
    error_response,
    json_schema,
    operation_documented_as,
    response,
    set_maximum,
    sse_events_schema,
)
from app.http.request_id import request_id_of
from app.http.sse import encode_event, with_heartbeats
from app.pipeline import (
    AskPipeline,
    AskRequest,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    RetrievalEvent,
    SourceView,
    UsageView,
)
from app.records import Caller, RetrievalStatus

__all__ = ["PROMPT_OVERRIDE_HEADER", "AskAnswer", "ask", "ask_route", "require_json"]

PROMPT_OVERRIDE_HEADER = "X-KB-Prompt-Version"
"""An admin key may name the prompt version that answers (``name@version`` or a version)."""

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class AskAnswer(msgspec.Struct, kw_only=True):
    """The whole answer at once (``"stream": false``)."""

    answer: str
    retrieval_status: RetrievalStatus
    sources: list[SourceView]
    citations: list[int]
    usage: UsageView | None
    model: str | None
    prompt_version: str | None
    request_id: str
    timings_ms: dict[str, float]
    conversation_id: str | None = None
    searched: str | None = None
    """The question that was searched (a follow-up made standalone)."""
    cached: bool = False
    error: ErrorEvent | None = None


async def require_json(request: Request[Any, Any, Any]) -> None:
    """Refuse a body that is not declared as JSON, before it is read.

    Without this a form post or ``text/plain`` whose bytes happen to be JSON would be answered as
    if it were well-formed.
    """
    media_type = request.content_type[0].lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ClientException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"content type must be application/json, got {media_type or 'none'!r}",
        )


async def ask(
    body: RawBody,
    request: Request[Any, Any, Any],
    pipeline: NamedDependency[AskPipeline],
    heartbeat_s: NamedDependency[float],
    caller: NamedDependency[Caller],
    limiter: NamedDependency[Limiter],
) -> Response[Any]:
    # Every request counts against the endpoint's request limits, even one refused below (429).
    request_limits = await limiter.count_request(caller, "ask")
    # Litestar reads the bytes (and refuses more than the router's limit with a 413); decoding
    # them is ours, so that it is strict and bounded (``app.http.body``).
    ask_request = decode_json_body(body, AskRequest)
    # Domain errors become 4xx here, before any byte is streamed.
    override = request.headers.get(PROMPT_OVERRIDE_HEADER) if caller.role == "admin" else None
    prepared = await pipeline.prepare(ask_request, caller=caller, prompt_override=override)
    # A spent token budget, or too many answers in progress: 429, still before any byte.
    admission = await limiter.admit(caller, requests=request_limits)
    request_id = request_id_of(request.scope)
    events = pipeline.run(prepared, request_id=request_id, budget=admission.budget)
    if not ask_request.stream:
        try:
            answer = await _collect(events, request_id)
        finally:
            await admission.release()
        return Response(answer, headers=admission.headers)

    async def encoded() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield encode_event(event)
        finally:
            try:
                await events.aclose()
            finally:
                await admission.release()  # the answer slot: ended, failed, or the client left

    return Stream(
        with_heartbeats(encoded(), heartbeat_s),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **admission.headers},
        # A stream the client left before it started never runs ``encoded``'s clean-up.
        background=BackgroundTask(admission.release),
    )


def ask_route(*, max_top_k: int, max_body_bytes: int) -> HTTPRouteHandler:
    """``POST /ask`` as one app serves it: its documentation states that app's limits."""
    request_schema = json_schema(AskRequest)
    set_maximum(request_schema, "top_k", max_top_k)
    operation = operation_documented_as(
        request_body={"application/json": request_schema},
        responses={
            200: response(
                'The answer: an event stream by default, one JSON object with `"stream": false`.',
                {
                    "application/json": json_schema(AskAnswer),
                    "text/event-stream": sse_events_schema(RetrievalEvent, DeltaEvent, DoneEvent, ErrorEvent),
                },
            ),
            400: error_response(
                "The body is not a request: malformed JSON, nested too deep, a field of the wrong "
                'type (no coercion: `"5"` is not an integer), a missing or an unknown field.'
            ),
            401: error_response(
                "No API key where one is required, or a key that is malformed, unknown, revoked or expired."
            ),
            403: error_response("A widget key from an origin it was not made for (or with no `Origin`)."),
            404: error_response(
                "`conversation_id` names no conversation of this key: never started, expired, or another key's."
            ),
            413: error_response(f"The body is larger than {max_body_bytes} bytes."),
            415: error_response(
                "The body is not declared as JSON (`application/json`, or another `+json` type)."
            ),
            422: error_response(
                "The request is well-formed but cannot be answered as asked: a question of only whitespace, one "
                f"over the token limit, `top_k` above {max_top_k}, an empty `filters.source_prefix`."
            ),
            429: error_response(
                "A rate limit refused the request before anything was streamed: the request limit of "
                "`/ask`, a spent token budget (of the key, its tenant or the model), or too many answers in "
                "progress. `error.detail.limit` names it; `Retry-After` says when to retry, and the "
                "`RateLimit-Policy` and `RateLimit` headers describe it (docs/limits.md)."
            ),
            503: error_response(
                "The store or the model provider is unavailable, or the rate-limit storage is and the "
                "configuration fails closed; retrying may help (`Retry-After`, when known)."
            ),
        },
    )
    return post(
        "/ask",
        summary="Answer a question from the knowledge base",
        description=_EVENTS,
        status_code=200,
        before_request=require_json,
        operation_class=operation,
    )(ask)


_EVENTS = (
    "Streams server-sent events: one `retrieval`, zero or more `delta`, then one `done` or one "
    '`error`, each as `event: <type>` and `data: <JSON>`. With `"stream": false`, returns one JSON '
    "object instead. Failures after the stream has started are reported by the `error` event (or "
    "the `error` field of the JSON answer), never by the status code."
)


async def _collect(events: AsyncIterator[Any], request_id: str) -> AskAnswer:
    parts: list[str] = []
    answer = AskAnswer(
        answer="",
        retrieval_status="error",
        sources=[],
        citations=[],
        usage=None,
        model=None,
        prompt_version=None,
        request_id=request_id,
        timings_ms={},
    )
    async for event in events:
        if isinstance(event, RetrievalEvent):
            answer.retrieval_status = event.status
            answer.sources = event.sources
            answer.searched = event.question
        elif isinstance(event, DeltaEvent):
            parts.append(event.text)
        elif isinstance(event, DoneEvent):
            answer.citations = event.citations
            answer.usage = event.usage
            answer.model = event.model
            answer.prompt_version = event.prompt_version
            answer.timings_ms = event.timings_ms
            answer.conversation_id = event.conversation_id
            answer.cached = event.cached
        elif isinstance(event, ErrorEvent):
            answer.error = event
    answer.answer = "".join(parts)
    return answer
