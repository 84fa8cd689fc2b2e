"""Traces of a real ``/ask`` over HTTP: the span tree and its attributes, read from the SDK's
in-memory exporter; the trace id in the response header and in every log line of the request."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from app.logs import configure_logging
from tests.e2e.conftest import _copy_of, settings_for
from tests.e2e.servers import LiveServer, live_server
from tests.e2e.sse import read_stream
from tests.services.logging_state import logging_restored

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

LINUX = "How do I install on Linux?"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def traced_server(
    tmp_path_factory: pytest.TempPathFactory,
    ingested_store: Path,
    embedder: SentenceTransformerEmbedder,
    exporter: InMemorySpanExporter,
) -> Iterator[LiveServer]:
    """The app with a tracer provider that keeps every finished span in memory."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    data_dir = _copy_of(ingested_store, tmp_path_factory.mktemp("traced") / "data")
    # One anonymous client asks more than its per-minute limit here; limits are not under test.
    settings = settings_for(data_dir, limits={"enabled": False})
    app = create_app(settings, embedder=embedder, tracer_provider=provider)
    with live_server(app) as server:
        yield server
    provider.shutdown()


def spans_of(
    exporter: InMemorySpanExporter, trace_id: str, *, until: str = "POST /ask"
) -> list[ReadableSpan]:
    """The finished spans of one trace, once its span named ``until`` has ended (the server span
    ends just after the last byte is sent, so the client may read the answer first)."""
    give_up = time.monotonic() + 10
    while True:
        spans = [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]
        if any(s.name == until for s in spans) or time.monotonic() > give_up:
            return spans
        time.sleep(0.02)


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[str]:
    return [
        s.name
        for s in sorted(spans, key=lambda s: s.start_time or 0)
        if s.parent and s.parent.span_id == parent.context.span_id
    ]


def test_an_answered_question_is_one_trace_with_a_span_per_stage(
    traced_server: LiveServer, exporter: InMemorySpanExporter
) -> None:
    with (
        httpx.Client(base_url=traced_server.base_url, timeout=15.0) as client,
        client.stream("POST", "/ask", json={"question": LINUX}) as response,
    ):
        assert response.status_code == 200
        stream = read_stream(response)
    trace_id = response.headers["x-trace-id"]
    assert len(trace_id) == 32 and int(trace_id, 16) != 0
    done = stream.one("done")
    spans = spans_of(exporter, trace_id)

    server = one(spans, "POST /ask")  # Litestar's plugin: HTTP server conventions, named by route
    assert server.kind is SpanKind.SERVER and server.parent is None
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/ask"
    assert (
        server.attributes.get("http.response.status_code", server.attributes.get("http.status_code")) == 200
    )

    ask = one(spans, "ask")
    assert ask.parent is not None and ask.parent.span_id == server.context.span_id
    assert children(spans, ask) == [
        "validate",
        "prepare",
        "cache",
        "retrieve",
        "rank",
        "prompt",
        "budget",
        "chat extractive-v1",
        "postprocess",
        "store",
    ]
    attributes = dict(ask.attributes or {})
    assert attributes["kb.request_id"] == done["request_id"] == response.headers["x-request-id"]
    assert attributes["kb.outcome"] == "done" and attributes["kb.cache.hit"] is False
    assert attributes["kb.retrieval.status"] == "ok"
    assert attributes["kb.prompt"] == done["prompt_version"] == "answer@v1"
    assert attributes["kb.retrieval.context"] == len(stream.one("retrieval")["sources"])

    retrieve = one(spans, "retrieve")
    steps = children(spans, retrieve)
    assert steps[0] == "retrieve.wait" and {"retrieve.embed", "retrieve.search", "retrieve.fuse"} <= set(
        steps
    )
    r = dict(retrieve.attributes or {})
    assert r["kb.retrieval.retriever_status"] == "ok"
    assert (
        len(r["kb.retrieval.candidate_ids"])
        == len(r["kb.retrieval.candidate_scores"])
        == r["kb.retrieval.candidates"]
        > 0
    )
    # Children lie within their parent: they were made from the retriever's own measurements.
    for step in spans:
        if step.parent is not None and step.parent.span_id == retrieve.context.span_id:
            assert retrieve.start_time <= step.start_time <= step.end_time <= retrieve.end_time + 1_000_000  # type: ignore[operator]

    rank = dict(one(spans, "rank").attributes or {})
    assert list(rank["kb.context.sources"]) == [s["source"] for s in stream.one("retrieval")["sources"]]
    assert set(rank["kb.context.chunk_ids"]) <= set(r["kb.retrieval.candidate_ids"])

    generate = one(spans, "chat extractive-v1")  # GenAI conventions: "{operation} {model}"
    g = dict(generate.attributes or {})
    assert g["gen_ai.operation.name"] == "chat"
    assert g["gen_ai.system"] == "extractive" and g["gen_ai.request.model"] == "extractive-v1"
    assert g["gen_ai.usage.input_tokens"] == done["usage"]["input_tokens"] > 0
    assert g["gen_ai.usage.output_tokens"] == done["usage"]["output_tokens"] > 0
    assert list(g["gen_ai.response.finish_reasons"]) == ["stop"]
    assert generate.kind is SpanKind.INTERNAL  # the extractive answerer runs in this process
    (first_token,) = [e for e in generate.events if e.name == "first_token"]
    assert generate.start_time <= first_token.timestamp <= generate.end_time  # type: ignore[operator]
    assert all(s.status.status_code is not StatusCode.ERROR for s in spans)


def test_a_repeated_question_is_answered_from_the_cache_and_its_trace_says_so(
    traced_server: LiveServer, exporter: InMemorySpanExporter
) -> None:
    with httpx.Client(base_url=traced_server.base_url, timeout=15.0) as client:
        first = client.post("/ask", json={"question": "What is in the notes?", "stream": False})
        again = client.post("/ask", json={"question": "What is in the notes?", "stream": False})
    assert first.status_code == again.status_code == 200 and again.json()["cached"] is True
    spans = spans_of(exporter, again.headers["x-trace-id"])
    ask = one(spans, "ask")
    assert dict(ask.attributes or {})["kb.outcome"] == "cached"
    assert dict(ask.attributes or {})["kb.cache.hit"] is True
    assert children(spans, ask) == ["validate", "prepare", "cache"]  # no retrieval, no model call


def test_an_unanswerable_question_says_empty_on_its_spans(
    traced_server: LiveServer, exporter: InMemorySpanExporter
) -> None:
    with httpx.Client(base_url=traced_server.base_url, timeout=15.0) as client:
        response = client.post("/ask", json={"question": "zqxv wrkl pfft gnarble?", "stream": False})
    assert response.status_code == 200 and response.json()["retrieval_status"] == "empty"
    spans = spans_of(exporter, response.headers["x-trace-id"])
    assert dict(one(spans, "ask").attributes or {})["kb.retrieval.status"] == "empty"
    assert dict(one(spans, "rank").attributes or {})["kb.retrieval.context"] == 0


def test_a_refused_request_still_has_a_server_span_and_a_trace_id(
    traced_server: LiveServer, exporter: InMemorySpanExporter
) -> None:
    with httpx.Client(base_url=traced_server.base_url, timeout=15.0) as client:
        response = client.post("/ask", json={"question": "   "})
        missing = client.get("/no/such/page")
    assert response.status_code == 422
    spans = spans_of(exporter, response.headers["x-trace-id"])
    assert [s.name for s in spans] == ["POST /ask"]  # no run, so no stage spans
    # No route: the span is named by the method alone, never by the raw path.
    assert missing.status_code == 404
    assert [s.name for s in spans_of(exporter, missing.headers["x-trace-id"], until="GET")] == ["GET"]


@pytest.fixture
def json_logs() -> Iterator[None]:
    with logging_restored():
        configure_logging(json_lines=True)
        yield


def test_every_log_line_of_a_request_carries_its_trace_id(
    json_logs: None, traced_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with httpx.Client(base_url=traced_server.base_url, timeout=15.0) as client:
        capsys.readouterr()
        response = client.post(
            "/ask",
            json={"question": "Which formats can be ingested?", "stream": False},
            headers={"X-Request-ID": "trace-log-1"},
        )
        assert response.status_code == 200
        time.sleep(0.2)  # the post-response record write may log too
        err = capsys.readouterr().err
    lines: list[dict[str, Any]] = [json.loads(line) for line in err.splitlines() if line.strip()]
    mine = [line for line in lines if line.get("request_id") == "trace-log-1"]
    assert {"retrieved", "answered"} <= {line["event"] for line in mine}
    assert {line.get("trace_id") for line in mine} == {response.headers["x-trace-id"]}
