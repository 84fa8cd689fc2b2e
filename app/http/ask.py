"""``POST /ask``: validate, hand off to the pipeline, stream its events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.params import JSONBody
from litestar.response import Stream
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

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

__all__ = ["AskAnswer", "ask"]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class AskAnswer(msgspec.Struct, kw_only=True):
    """The whole answer at once (``"stream": false``)."""

    answer: str
    retrieval_status: str
    sources: list[SourceView]
    citations: list[int]
    usage: UsageView | None
    model: str | None
    prompt_version: str | None
    request_id: str
    timings_ms: dict[str, float]
    error: ErrorEvent | None = None


async def _require_json(request: Request[Any, Any, Any]) -> None:
    """Refuse a body that is not declared as JSON, before it is read.

    Litestar decodes the body as JSON whatever the declared type, so without this a form post or
    ``text/plain`` whose bytes happen to be JSON would be answered as if it were well-formed.
    """
    media_type = request.content_type[0].lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ClientException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"content type must be application/json, got {media_type or 'none'!r}",
        )


@post(
    "/ask",
    summary="Answer a question from the knowledge base",
    description=(
        "Streams server-sent events: one `retrieval`, zero or more `delta`, then one `done` or one "
        '`error`. With `"stream": false`, returns one JSON object instead.'
    ),
    status_code=200,
    before_request=_require_json,
)
async def ask(
    data: JSONBody[AskRequest],
    request: Request[Any, Any, Any],
    pipeline: NamedDependency[AskPipeline],
    heartbeat_s: NamedDependency[float],
) -> Response[Any]:
    valid = pipeline.validate(data)  # domain errors become 4xx before any byte is streamed
    request_id = request_id_of(request.scope)
    events = pipeline.run(valid, request_id=request_id)
    if not data.stream:
        return Response(await _collect(events, request_id))

    async def encoded() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield encode_event(event)
        finally:
            await events.aclose()

    return Stream(
        with_heartbeats(encoded(), heartbeat_s), media_type="text/event-stream", headers=SSE_HEADERS
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
        elif isinstance(event, DeltaEvent):
            parts.append(event.text)
        elif isinstance(event, DoneEvent):
            answer.citations = event.citations
            answer.usage = event.usage
            answer.model = event.model
            answer.prompt_version = event.prompt_version
            answer.timings_ms = event.timings_ms
        elif isinstance(event, ErrorEvent):
            answer.error = event
    answer.answer = "".join(parts)
    return answer
