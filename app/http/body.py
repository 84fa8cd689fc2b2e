"""Reading a JSON request body as a typed struct, strictly, with its nesting bounded first.

Strict: a JSON string is not a boolean or an integer, and ``3.0`` is not an integer, exactly as
the OpenAPI document says. Bounded: decoding is recursive, so a few kilobytes of ``[[[[…`` would
exhaust the interpreter's recursion limit (a 500); the depth is measured on the raw bytes,
without recursion, and refused with a 400 before anything is decoded.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from app.http.errors import RequestBodyError

__all__ = ["MAX_JSON_DEPTH", "decode_json_body", "json_nesting_depth"]

T = TypeVar("T")

# Far above any legitimate body (the deepest request nests three levels: body, filters, a list)
# and far below the recursion limit of the decoder.
MAX_JSON_DEPTH = 32

# A JSON string, escapes included (the "unrolled loop" form, linear on long strings).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(rb"[\[\]{}]")
# msgspec names the place of a validation error as a JSON path at the end of its message.
_AT_PATH = re.compile(r"^(?P<message>.*) - at `\$\.?(?P<path>.*)`$", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"unknown field `(?P<name>[^`]*)`")


def json_nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in ``raw`` (brackets inside strings do not count).

    Works on any bytes, valid JSON or not: unbalanced brackets are counted as they come.
    """
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_STRING.sub(b"", raw)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def decode_json_body(raw: bytes, type_: type[T], *, max_depth: int = MAX_JSON_DEPTH) -> T:
    """``raw`` as ``type_``, or ``RequestBodyError`` naming what is wrong and where."""
    depth = json_nesting_depth(raw)
    if depth > max_depth:
        raise RequestBodyError(
            "body_too_deep",
            f"request body nests {depth} levels deep; at most {max_depth} are accepted",
            {"depth": depth, "max_depth": max_depth},
        )
    try:
        return msgspec.json.decode(raw, type=type_, strict=True)
    except msgspec.ValidationError as exc:
        message, field = _located(str(exc))
        where = f"{field}: " if field else ""
        detail: dict[str, Any] | None = {"field": field} if field else None
        raise RequestBodyError("invalid_body", f"invalid request body: {where}{message}", detail) from None
    except msgspec.DecodeError as exc:
        raise RequestBodyError("malformed_json", f"request body is malformed JSON: {exc}") from None


def _located(error: str) -> tuple[str, str]:
    """msgspec's message without its path, and the field it is about (``""``: the body itself).

    ``"Expected `int`, got `str` - at `$.top_k`"`` → ``("Expected `int`, got `str`", "top_k")``;
    an unknown field is named by its own path: ``"filters.author"``.
    """
    message, path = error, ""
    if located := _AT_PATH.match(error):
        message, path = located["message"], located["path"]
    if unknown := _UNKNOWN_FIELD.search(message):
        path = f"{path}.{unknown['name']}" if path else unknown["name"]
    return message, path
