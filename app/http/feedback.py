"""``POST /ask/{request_id}/feedback``: rate an answer, from the key that asked for it.

The body is decoded strictly (``app.http.body``); what the request answered comes from the
state store (``app.answers.feedback``), so the rating is stored with the question, the answer,
its sources and the prompt version, whichever instance answered. Another key's request, an
unknown one and one older than ``answers.feedback_window_s`` all get the same 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Response, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import Parameter, RawBody
from msgspec import Meta

from app.http.ask import require_json
from app.http.body import decode_json_body
from app.http.openapi import error_response, json_schema, operation_documented_as, response
from app.records import Caller
from app.services import Services

__all__ = ["MAX_COMMENT_CHARS", "FeedbackReceipt", "FeedbackRequest", "feedback_route"]

MAX_COMMENT_CHARS = 2000
# What a request id can be (``app.http.request_id``): anything else names no request.
_REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class FeedbackRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /ask/{request_id}/feedback``."""

    rating: Annotated[
        Literal["up", "down"], Meta(description="`up`: a good answer; `down`: a wrong or unhelpful one.")
    ]
    comment: (
        Annotated[
            str,
            Meta(
                max_length=MAX_COMMENT_CHARS,
                description="What was wrong, or what the answer should have said (a down-voted answer's "
                "comment becomes its expected answer in `kb feedback export`).",
            ),
        ]
        | None
    ) = None


class FeedbackReceipt(msgspec.Struct, kw_only=True):
    """The rating as stored."""

    request_id: str
    rating: Literal["up", "down"]
    prompt_version: str
    """``name@version`` of the prompt that produced the rated answer."""
    conversation_id: str


async def feedback(
    request_id: Annotated[
        str, Parameter(pattern=_REQUEST_ID_PATTERN, description="The `request_id` of the answer.")
    ],
    body: RawBody,
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> Response[FeedbackReceipt]:
    rated = decode_json_body(body, FeedbackRequest)
    record = await services.answers.feedback.rate(caller, request_id, rated.rating, rated.comment)
    receipt = FeedbackReceipt(
        request_id=request_id,
        rating=record.rating,
        prompt_version=record.answer.prompt,
        conversation_id=record.answer.conversation_id,
    )
    return Response(receipt, status_code=201)


def feedback_route(*, max_body_bytes: int) -> HTTPRouteHandler:
    """``POST /ask/{request_id}/feedback`` as one app serves it (its body limit documented)."""
    operation = operation_documented_as(
        request_body={"application/json": json_schema(FeedbackRequest)},
        responses={
            201: response("The rating was stored.", {"application/json": json_schema(FeedbackReceipt)}),
            400: error_response(
                "The body is not a rating: malformed JSON, a `rating` other than `up` or `down`, a "
                "comment that is not a string or is too long, an unknown field; or the request id is malformed."
            ),
            401: error_response(
                "No API key where one is required, or a key that is malformed, unknown, revoked or expired."
            ),
            403: error_response("A widget key from an origin it was not made for (or with no `Origin`)."),
            404: error_response(
                "No answer of this key has this request id: it was asked with another key, never, or longer "
                "ago than ratings are accepted."
            ),
            413: error_response(f"The body is larger than {max_body_bytes} bytes."),
            415: error_response(
                "The body is not declared as JSON (`application/json`, or another `+json` type)."
            ),
            422: error_response(
                "The answer has been rated too many times already; the latest rating stands."
            ),
            503: error_response("The state store is unavailable; retrying may help."),
        },
    )
    return post(
        "/ask/{request_id:str}/feedback",
        summary="Rate an answer",
        description="Rate the answer of an earlier `POST /ask` of the same key, by the `request_id` "
        "of its `done` event. Rating it again replaces the earlier rating.",
        status_code=201,
        before_request=require_json,
        operation_class=operation,
    )(feedback)
