"""Prompt versions for admins: list them, and move a label at run time (``docs/prompts.md``).

* ``GET /admin/prompts`` — prompts, versions (description, hash, released), where every label
  points (moved by whom, when, and where a rollback would return it), experiments, pins, moves;
* ``POST /admin/prompts/{name}/labels/{label}`` with ``{"version": "v2"}`` — point a label at a
  version, recorded with who and when; every instance follows within ``prompts.refresh_s``;
* ``POST /admin/prompts/{name}/labels/{label}/rollback`` — back to the version before.

Admin keys only (401 without a key, 403 with another role). The positions live in the state
store; when it is down these answer 503 (answering keeps the last positions read).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Router, get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import Operation
from litestar.params import Parameter, RawBody

from app.http.ask import require_json
from app.http.auth import admin_only
from app.http.body import decode_json_body
from app.http.openapi import SECURITY_SCHEMES, error_response, json_schema, operation_documented_as, response
from app.prompting import LabelMove
from app.prompting.overview import PromptsOverview, overview
from app.records import Caller
from app.services import Services

__all__ = ["LabelMoveRequest", "admin_prompts_router"]

_NAME = Parameter(pattern=r"^[a-z][a-z0-9_-]{0,39}$", description="The prompt (`answer`, `condense`).")
_LABEL = Parameter(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="The label (`production`, `staging`).")


class LabelMoveRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /admin/prompts/{name}/labels/{label}``."""

    version: Annotated[
        str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,40}$", description="The version to point the label at.")
    ]


def _who(caller: Caller) -> str:
    return f"{caller.name} (key {caller.key_id})" if caller.key_id else caller.name


async def list_prompts(services: NamedDependency[Services]) -> PromptsOverview:
    return await overview(services.prompt_selection.labels)


async def move_label(
    name: Annotated[str, _NAME],
    label: Annotated[str, _LABEL],
    body: RawBody,
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> LabelMove:
    wanted = decode_json_body(body, LabelMoveRequest)
    return await services.prompt_selection.move(name, label, wanted.version, by=_who(caller))


async def roll_back_label(
    name: Annotated[str, _NAME],
    label: Annotated[str, _LABEL],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> LabelMove:
    return await services.prompt_selection.rollback(name, label, by=_who(caller))


_AUTH = {
    401: error_response("No API key, or a key that is malformed, unknown, revoked or expired."),
    403: error_response("A key that is not an admin key."),
    503: error_response("The state store is unavailable; retrying may help."),
}
_MOVED = response(
    "The move, as recorded (`changed` is false when the label already pointed there).",
    {"application/json": json_schema(LabelMove)},
)
_UNKNOWN_PROMPT = error_response("There is no prompt of this name.")
_BAD_PATH = error_response("The prompt or label name is malformed.")


def _documented(responses: dict[int, dict[str, Any]]) -> type[Operation]:
    """An ``Operation`` class whose responses are these (the request has no body)."""
    documented = {str(status): doc for status, doc in sorted(responses.items())}

    class DocumentedOperation(Operation):
        def to_schema(self) -> dict[str, Any]:
            schema = super().to_schema()
            schema.pop("requestBody", None)
            schema["responses"] = documented
            return schema

    return DocumentedOperation


def admin_prompts_router(*, max_body_bytes: int) -> Router:
    """The ``/admin/prompts`` routes as one app serves them (its body limit documented)."""
    routes: list[HTTPRouteHandler] = [
        get(
            "/",
            summary="List prompts, versions, labels and experiments",
            guards=[admin_only],
            operation_class=_documented(
                {
                    200: response(
                        "Every prompt with its versions, labels, experiments, pins and latest label moves.",
                        {"application/json": json_schema(PromptsOverview)},
                    ),
                    **_AUTH,
                }
            ),
        )(list_prompts),
        post(
            "/{name:str}/labels/{label:str}",
            summary="Move a label to a version",
            description="Points the label at the version, in the state store, recorded with who and "
            "when; every instance follows within `prompts.refresh_s`. The label's earlier version is "
            "kept for rollback.",
            status_code=200,
            guards=[admin_only],
            before_request=require_json,
            operation_class=operation_documented_as(
                request_body={"application/json": json_schema(LabelMoveRequest)},
                responses={
                    200: _MOVED,
                    400: error_response(
                        "The body is not a move (malformed JSON, no `version`, an unknown field), or a "
                        "malformed prompt or label name."
                    ),
                    404: _UNKNOWN_PROMPT,
                    413: error_response(f"The body is larger than {max_body_bytes} bytes."),
                    415: error_response("The body is not declared as JSON."),
                    422: error_response("The prompt has no such version."),
                    **_AUTH,
                },
            ),
        )(move_label),
        post(
            "/{name:str}/labels/{label:str}/rollback",
            summary="Move a label back to its previous version",
            status_code=200,
            guards=[admin_only],
            operation_class=_documented(
                {
                    200: _MOVED,
                    400: _BAD_PATH,
                    404: _UNKNOWN_PROMPT,
                    422: error_response(
                        "The label was not moved at run time: there is nothing to roll back to."
                    ),
                    **_AUTH,
                }
            ),
        )(roll_back_label),
    ]
    return Router(
        "/admin/prompts",
        route_handlers=routes,
        request_max_body_size=max_body_bytes,
        security=[{scheme: []} for scheme in SECURITY_SCHEMES],
        tags=["admin"],
    )
