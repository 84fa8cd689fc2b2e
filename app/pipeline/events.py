"""What ``POST /ask`` takes and what the pipeline emits: the boundary structs of the pipeline.

The HTTP layer serialises the events as server-sent events (``event: <tag>``, ``data: <JSON>``)
or folds them into one JSON answer; ``kb eval`` reads them directly.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from app.records import RetrievalStatus
from app.retrieval import RetrievalFilters

__all__ = [
    "AskRequest",
    "DeltaEvent",
    "DoneEvent",
    "ErrorEvent",
    "PipelineEvent",
    "RetrievalEvent",
    "SourceView",
    "UsageView",
]

_ConversationId = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="Continue this conversation: the `conversation_id` of an earlier `done` event.",
    ),
]


class AskRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /ask``. Decoded strictly (``app.http.body``): no field is coerced."""

    question: Annotated[str, Meta(min_length=1, max_length=20_000, description="The question to answer.")]
    filters: RetrievalFilters | None = None
    # The maximum is configured (retrieval.max_top_k), so validate() checks it and the OpenAPI
    # document states each app's own.
    top_k: (
        Annotated[int, Meta(ge=1, description="At most this many sources (default: retrieval.top_k).")] | None
    ) = None
    stream: Annotated[
        bool, Meta(description="Server-sent events (default), or one JSON object when false.")
    ] = True
    conversation_id: _ConversationId | None = None


class SourceView(msgspec.Struct, kw_only=True):
    id: int
    """The number the answer cites it by: [id]."""
    title: str
    source: str
    score: float
    snippet: str
    heading: str = ""
    page: int | None = None


class RetrievalEvent(msgspec.Struct, kw_only=True, tag="retrieval"):
    status: RetrievalStatus
    sources: list[SourceView]
    took_ms: float
    question: str = ""
    """The question that was searched: the follow-up made standalone, or the question itself."""


class DeltaEvent(msgspec.Struct, tag="delta"):
    text: str


class UsageView(msgspec.Struct):
    input_tokens: int
    output_tokens: int


class DoneEvent(msgspec.Struct, kw_only=True, tag="done"):
    citations: list[int]
    usage: UsageView
    model: str
    prompt_version: str
    """``name@version`` of the prompt that produced the answer, e.g. ``answer@v1``."""
    request_id: str
    timings_ms: dict[str, float]
    conversation_id: str = ""
    """Pass it back as ``conversation_id`` to ask a follow-up question."""
    cached: bool = False
    """True when the answer was served from the answer cache (no retrieval, no model call)."""


class ErrorEvent(msgspec.Struct, kw_only=True, tag="error"):
    code: str
    message: str
    retryable: bool


PipelineEvent = RetrievalEvent | DeltaEvent | DoneEvent | ErrorEvent
