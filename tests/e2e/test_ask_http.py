"""``POST /ask`` and the health and schema endpoints, over real HTTP, as the issue specifies them.

One app (offline extractive answerer, real model, real embedded Qdrant holding
``tests/data/mixed``) serves every test in this module.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.config import load_settings
from tests.e2e.sse import Stream, assert_event_grammar, read_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

LINUX = "How do I install on Linux?"


def ask_stream(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> tuple[httpx.Response, Stream]:
    with client.stream("POST", "/ask", json=body, **kwargs) as response:
        assert response.status_code == 200, response.read()
        return response, read_stream(response)


# --------------------------------------------------------------------------- streaming answer


def test_a_question_streams_one_retrieval_then_deltas_then_one_done(client: httpx.Client) -> None:
    response, stream = ask_stream(client, {"question": LINUX})

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert_event_grammar(stream.kinds)
    assert "delta" in stream.kinds

    retrieval = stream.one("retrieval")
    assert retrieval["status"] == "ok"
    assert isinstance(retrieval["took_ms"], (int, float)) and retrieval["took_ms"] >= 0
    assert retrieval["sources"], "an answerable question found no sources"
    for number, source in enumerate(retrieval["sources"], start=1):
        assert {"id", "title", "source", "score", "snippet"} <= source.keys()
        assert source["id"] == number  # the number the answer cites it by
    assert retrieval["sources"][0]["source"] == "mixed/guide.md"  # the Linux section lives there

    done = stream.one("done")
    assert {"citations", "usage", "model", "prompt_version", "request_id", "timings_ms"} <= done.keys()
    assert done["usage"]["input_tokens"] > 0 and done["usage"]["output_tokens"] > 0
    assert done["model"] == "extractive-v1" and done["prompt_version"] == "answer@v1"
    assert done["request_id"] == response.headers["x-request-id"]
    assert done["timings_ms"]["total"] >= done["timings_ms"]["retrieve"]
    # The answer is grounded in the Linux section and cites only sources that were sent.
    assert "virtual environment" in stream.answer
    assert done["citations"] and set(done["citations"]) <= {s["id"] for s in retrieval["sources"]}


def test_stream_false_returns_the_whole_answer_as_one_json_object(client: httpx.Client) -> None:
    response = client.post("/ask", json={"question": LINUX, "stream": False})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["retrieval_status"] == "ok"
    assert "virtual environment" in body["answer"]
    assert body["sources"] and body["citations"]
    assert set(body["citations"]) <= {s["id"] for s in body["sources"]}
    assert body["usage"]["output_tokens"] > 0
    assert body["timings_ms"]["total"] > 0
    assert body["request_id"] == response.headers["x-request-id"]
    assert body.get("error") is None


def test_when_nothing_matches_the_answer_says_so_instead_of_inventing(client: httpx.Client) -> None:
    body = client.post(
        "/ask", json={"question": LINUX, "filters": {"source_prefix": "no/such/folder"}, "stream": False}
    ).json()

    assert body["retrieval_status"] == "empty"
    assert body["sources"] == [] and body["citations"] == []
    assert "nothing relevant" in body["answer"]


# --------------------------------------------------------------------------- request options


def test_source_prefix_filter_keeps_only_that_document(client: httpx.Client) -> None:
    body = client.post(
        "/ask",
        json={
            "question": "When does the nightly ingestion job run?",
            "filters": {"source_prefix": "mixed/notes.txt"},
            "stream": False,
        },
    ).json()

    assert body["retrieval_status"] == "ok"
    assert {s["source"] for s in body["sources"]} == {"mixed/notes.txt"}
    assert "03:00 UTC" in body["answer"]


def test_sources_filter_keeps_only_those_documents(client: httpx.Client) -> None:
    body = client.post(
        "/ask", json={"question": "installation", "filters": {"sources": ["mixed/guide.md"]}, "stream": False}
    ).json()

    assert body["sources"]
    assert {s["source"] for s in body["sources"]} == {"mixed/guide.md"}


def test_top_k_caps_the_number_of_sources(client: httpx.Client) -> None:
    body = client.post("/ask", json={"question": LINUX, "top_k": 1, "stream": False}).json()

    assert len(body["sources"]) == 1
    assert body["citations"] == [1]


# --------------------------------------------------------------------------- request id


def test_a_sane_client_request_id_is_echoed_in_the_header_and_the_done_event(client: httpx.Client) -> None:
    response, stream = ask_stream(client, {"question": LINUX}, headers={"X-Request-ID": "trace-42.a_b"})

    assert response.headers["x-request-id"] == "trace-42.a_b"
    assert stream.one("done")["request_id"] == "trace-42.a_b"


@pytest.mark.parametrize("unsafe", ["has spaces", "x" * 65, "new\\nline", "<script>"])
def test_an_unsafe_client_request_id_is_replaced(client: httpx.Client, unsafe: str) -> None:
    response = client.post(
        "/ask", json={"question": LINUX, "stream": False}, headers={"X-Request-ID": unsafe}
    )

    generated = response.headers["x-request-id"]
    assert generated != unsafe and len(generated) == 32
    assert response.json()["request_id"] == generated


# --------------------------------------------------------------------------- bad input → 4xx JSON

BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str, str]] = [
    # (case, httpx request kwargs, status, error code, a word the message must contain)
    (
        "truncated JSON",
        {"content": b'{"question": "hi"', "headers": {"content-type": "application/json"}},
        400,
        "malformed_json",
        "malformed",
    ),
    (
        "not JSON at all",
        {"content": b"question=hi", "headers": {"content-type": "application/json"}},
        400,
        "malformed_json",
        "malformed",
    ),
    ("body is not an object", {"json": ["How do I install?"]}, 400, "invalid_body", "object"),
    ("missing question", {"json": {"top_k": 3}}, 400, "invalid_body", "question"),
    ("question is not a string", {"json": {"question": 42}}, 400, "invalid_body", "question"),
    ("empty question", {"json": {"question": ""}}, 400, "invalid_body", "question"),
    ("whitespace question", {"json": {"question": " \n\t "}}, 422, "invalid_request", "empty"),
    (
        "question over the token limit",
        {"json": {"question": "rotate " * 300}},
        422,
        "question_too_long",
        "tokens",
    ),
    (
        "question over the character limit",
        {"json": {"question": "a" * 20_001}},
        400,
        "invalid_body",
        "question",
    ),
    ("unknown top-level field", {"json": {"question": "hi", "mode": "fast"}}, 400, "invalid_body", "mode"),
    (
        "unknown filter",
        {"json": {"question": "hi", "filters": {"author": "me"}}},
        400,
        "invalid_body",
        "author",
    ),
    (
        "sources is not a list",
        {"json": {"question": "hi", "filters": {"sources": "abc"}}},
        400,
        "invalid_body",
        "filters",
    ),
    (
        "empty source_prefix",
        {"json": {"question": "hi", "filters": {"source_prefix": "  "}}},
        422,
        "invalid_request",
        "source_prefix",
    ),
    ("top_k zero", {"json": {"question": "hi", "top_k": 0}}, 400, "invalid_body", "top_k"),
    (
        "top_k above the configured maximum",
        {"json": {"question": "hi", "top_k": 21}},
        422,
        "invalid_request",
        "top_k",
    ),
    ("top_k not a number", {"json": {"question": "hi", "top_k": "five"}}, 400, "invalid_body", "top_k"),
    ("top_k a fraction", {"json": {"question": "hi", "top_k": 2.5}}, 400, "invalid_body", "top_k"),
    # Strict types: nothing is coerced, whatever a lenient decoder would make of it.
    ("top_k a numeric string", {"json": {"question": "hi", "top_k": "5"}}, 400, "invalid_body", "top_k"),
    ("top_k a whole float", {"json": {"question": "hi", "top_k": 3.0}}, 400, "invalid_body", "top_k"),
    (
        "stream the string false",
        {"json": {"question": "hi", "stream": "false"}},
        400,
        "invalid_body",
        "stream",
    ),
    ("stream zero", {"json": {"question": "hi", "stream": 0}}, 400, "invalid_body", "stream"),
    (
        "a tiny body nested a thousand levels deep",
        {
            "content": b'{"question": ' + b"[" * 1000 + b"]" * 1000 + b"}",
            "headers": {"content-type": "application/json"},
        },
        400,
        "body_too_deep",
        "deep",
    ),
    (
        "deep nesting in an unknown field",
        {
            "content": b'{"question": "hi", "x": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}",
            "headers": {"content-type": "application/json"},
        },
        400,
        "body_too_deep",
        "deep",
    ),
    (
        "no body",
        {"content": b"", "headers": {"content-type": "application/json"}},
        400,
        "malformed_json",
        "malformed",
    ),
    ("stream not a boolean", {"json": {"question": "hi", "stream": "yes"}}, 400, "invalid_body", "stream"),
    (
        "text/plain body",
        {"content": b'{"question": "hi"}', "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
        "application/json",
    ),
    ("form body", {"data": {"question": "hi"}}, 415, "unsupported_media_type", "application/json"),
]


@pytest.mark.parametrize(
    ("case", "request_kwargs", "status", "code", "mentions"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_input_gets_a_4xx_json_error_naming_the_problem(
    client: httpx.Client, case: str, request_kwargs: dict[str, Any], status: int, code: str, mentions: str
) -> None:
    response = client.post("/ask", **request_kwargs)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code
    assert mentions.lower() in body["error"]["message"].lower(), body
    assert body["request_id"] == response.headers["x-request-id"]


def test_an_oversized_body_is_refused_with_413(client: httpx.Client) -> None:
    padding = "x" * 70_000  # above server.max_body_bytes (64 KiB), below the question's own limit checks
    response = client.post("/ask", json={"question": "hi", "pad": padding})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_an_oversized_chunked_body_is_refused_with_413(client: httpx.Client) -> None:
    """Without a content-length the limit is enforced on the bytes actually received."""

    def chunks():  # a generator body is sent with transfer-encoding: chunked
        yield b'{"question": "hi", "pad": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    response = client.post("/ask", content=chunks(), headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_ask_only_accepts_post(client: httpx.Client) -> None:
    response = client.get("/ask")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/no/such/page", 404, "not_found"), ("DELETE", "/ask", 405, "method_not_allowed")],
)
def test_unrouted_requests_carry_a_request_id_too(
    client: httpx.Client, method: str, path: str, status: int, code: str
) -> None:
    made = client.request(method, path)
    echoed = client.request(method, path, headers={"X-Request-ID": "trace-404.b"})

    assert made.status_code == status and made.json()["error"]["code"] == code
    assert len(made.headers["x-request-id"]) == 32
    assert made.json()["request_id"] == made.headers["x-request-id"]
    assert echoed.headers["x-request-id"] == "trace-404.b" == echoed.json()["request_id"]


def test_top_k_at_the_configured_maximum_is_accepted(client: httpx.Client) -> None:
    maximum = load_settings(environ={}).retrieval.max_top_k

    response = client.post("/ask", json={"question": LINUX, "top_k": maximum, "stream": False})

    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- health and schema


def test_live_and_ready_when_the_model_is_loaded_and_the_store_is_open(client: httpx.Client) -> None:
    assert client.get("/health/live").status_code == 200

    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["reasons"] == []


def test_openapi_schema_describes_ask_as_it_behaves(client: httpx.Client) -> None:
    schema = client.get("/schema/openapi.json")

    assert schema.status_code == 200
    operation = schema.json()["paths"]["/ask"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"question", "filters", "top_k", "stream"} <= body["properties"].keys()
    assert body["required"] == ["question"]
    assert body["additionalProperties"] is False  # unknown fields are refused (see above)
    assert body["properties"]["filters"]["anyOf"][0]["additionalProperties"] is False
    top_k = next(s for s in body["properties"]["top_k"]["anyOf"] if s.get("type") == "integer")
    assert top_k["maximum"] == load_settings(environ={}).retrieval.max_top_k
    assert body["properties"]["stream"]["type"] == "boolean"  # no "false" strings, no 0

    responses = operation["responses"]
    assert {"200", "400", "413", "415", "422", "503"} <= responses.keys()
    assert {"application/json", "text/event-stream"} <= responses["200"]["content"].keys()
    for status in ("400", "413", "415", "422", "503"):
        error_body = responses[status]["content"]["application/json"]["schema"]
        assert error_body["required"] == ["error", "request_id"]
        assert error_body["properties"]["error"]["required"] == ["code", "message"]
        assert "detail" in error_body["properties"]["error"]["properties"]
