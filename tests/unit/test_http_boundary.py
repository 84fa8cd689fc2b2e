"""The pure pieces of the HTTP boundary: reading a body, the request id, the OpenAPI schemas."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.http.body import MAX_JSON_DEPTH, decode_json_body, json_nesting_depth
from app.http.errors import RequestBodyError
from app.http.openapi import json_schema, set_maximum, sse_events_schema
from app.http.request_id import request_id_of
from app.http.sse import encode_event
from app.pipeline import AskRequest, DeltaEvent, DoneEvent, ErrorEvent, RetrievalEvent, UsageView

pytestmark = pytest.mark.unit

# --------------------------------------------------------------------------- nesting depth


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b'"just a string"', 0),
        (b'{"question": "hi"}', 1),
        (b'{"question": "hi", "filters": {"sources": ["a.md"]}}', 3),
        (b'{"question": "[[[[{{{{"}', 1),  # brackets inside strings do not nest
        (b'{"question": "a \\" [[[[ \\\\"}', 1),  # nor after an escaped quote
        (b"[[[[[", 5),  # not JSON at all: counted as it comes
    ],
)
def test_nesting_depth_counts_arrays_and_objects_outside_strings(raw: bytes, depth: int) -> None:
    assert json_nesting_depth(raw) == depth


def test_a_body_nested_too_deep_is_refused_before_it_is_decoded() -> None:
    raw = b'{"question": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    with pytest.raises(RequestBodyError) as refused:
        decode_json_body(raw, AskRequest)

    assert refused.value.code == "body_too_deep"
    assert refused.value.detail == {"depth": 100_001, "max_depth": MAX_JSON_DEPTH}


def test_a_body_at_the_depth_limit_is_decoded() -> None:
    nested: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH - 1):
        nested = [nested]
    raw = json.dumps({"question": "hi", "filters": None, "x": nested}).encode()

    with pytest.raises(RequestBodyError) as refused:  # decoded, then refused for the unknown field
        decode_json_body(raw, AskRequest)

    assert refused.value.code == "invalid_body" and refused.value.detail == {"field": "x"}


# --------------------------------------------------------------------------- strict decoding


def test_a_well_formed_body_decodes_to_the_request() -> None:
    request = decode_json_body(b'{"question": "hi", "top_k": 3, "stream": false}', AskRequest)

    assert (request.question, request.top_k, request.stream) == ("hi", 3, False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"question": "hi", "stream": "false"}, "stream"),
        ({"question": "hi", "stream": 0}, "stream"),
        ({"question": "hi", "top_k": "5"}, "top_k"),
        ({"question": "hi", "top_k": 3.0}, "top_k"),
        ({"question": 42}, "question"),
        ({"question": "hi", "filters": {"source_prefix": 7}}, "filters.source_prefix"),
        ({"question": "hi", "mode": "fast"}, "mode"),
        ({"question": "hi", "filters": {"author": "me"}}, "filters.author"),
    ],
)
def test_nothing_is_coerced_and_the_error_names_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestBodyError) as refused:
        decode_json_body(json.dumps(body).encode(), AskRequest)

    assert refused.value.code == "invalid_body"
    assert refused.value.detail == {"field": field}
    assert refused.value.message.startswith(f"invalid request body: {field}: ")


def test_a_missing_field_or_a_wrong_shape_is_named_in_the_message() -> None:
    for raw, mentions in [(b'{"top_k": 3}', "question"), (b'["hi"]', "object")]:
        with pytest.raises(RequestBodyError) as refused:
            decode_json_body(raw, AskRequest)
        assert refused.value.code == "invalid_body" and mentions in refused.value.message


@pytest.mark.parametrize("raw", [b"", b'{"question": "hi"', b"question=hi", b"\xff\xfe"])
def test_bytes_that_are_not_json_are_malformed(raw: bytes) -> None:
    with pytest.raises(RequestBodyError) as refused:
        decode_json_body(raw, AskRequest)

    assert refused.value.code == "malformed_json"
    assert refused.value.message.startswith("request body is malformed JSON: ")


# --------------------------------------------------------------------------- request id


def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "headers": list(headers)}


def test_a_sane_client_request_id_is_kept() -> None:
    assert request_id_of(scope((b"x-request-id", b"trace-42.a_b"))) == "trace-42.a_b"


@pytest.mark.parametrize("unsafe", [b"", b"has spaces", b"x" * 65, b"<script>"])
def test_an_unsafe_or_missing_request_id_is_replaced_by_a_new_one(unsafe: bytes) -> None:
    made = request_id_of(scope((b"x-request-id", unsafe)))

    assert made != unsafe.decode() and len(made) == 32 and set(made) <= set("0123456789abcdef")


def test_the_request_id_is_assigned_once_whoever_asks_first() -> None:
    request = scope()

    assert request_id_of(request) == request_id_of(request) == request["state"]["request_id"]


# --------------------------------------------------------------------------- OpenAPI schemas


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in refs_in(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs_in(v)]
    return []


def test_a_struct_schema_is_self_contained_and_refuses_unknown_fields() -> None:
    schema = json_schema(AskRequest)

    assert refs_in(schema) == []
    assert schema["additionalProperties"] is False
    assert schema["properties"]["filters"]["anyOf"][0]["additionalProperties"] is False


def test_set_maximum_bounds_an_optional_integer_and_refuses_a_non_number() -> None:
    schema = json_schema(AskRequest)

    set_maximum(schema, "top_k", 20)

    (integer,) = [s for s in schema["properties"]["top_k"]["anyOf"] if s.get("type") == "integer"]
    assert integer["maximum"] == 20
    with pytest.raises(ValueError, match="question"):
        set_maximum(schema, "question", 20)


def test_the_event_stream_schema_describes_what_encode_event_writes() -> None:
    events = [
        RetrievalEvent(status="ok", sources=[], took_ms=1.5),
        DeltaEvent("Hello"),
        DoneEvent(
            citations=[1],
            usage=UsageView(1, 2),
            model="m",
            prompt_version="v1",
            request_id="r",
            timings_ms={"total": 3.0},
        ),
        ErrorEvent(code="overloaded", message="try again", retryable=True),
    ]
    variants = {
        v["properties"]["event"]["const"]: v["properties"]["data"]["contentSchema"]
        for v in sse_events_schema(RetrievalEvent, DeltaEvent, DoneEvent, ErrorEvent)["oneOf"]
    }

    for event in events:
        kind_line, data_line = encode_event(event).decode().strip().split("\n")
        kind, data = kind_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert set(variants[kind]["required"]) <= data.keys() <= variants[kind]["properties"].keys()
