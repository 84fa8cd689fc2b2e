"""The span tree made from a ``RequestTrace``, and when a tracer provider exists at all."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.observability import (
    ChunkScore,
    RequestTrace,
    StageTiming,
    TraceError,
    otlp_traces_endpoint,
    record_spans,
    tracer_provider_from_environment,
)

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def traced(t: RequestTrace) -> tuple[list, str]:  # type: ignore[type-arg]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id = record_spans(provider.get_tracer("test"), t, end_ns=T0 + 100 * MS)
    return list(exporter.get_finished_spans()), trace_id


def a_trace(**fields: object) -> RequestTrace:
    base: dict[str, object] = {
        "request_id": "r1",
        "started_ns": T0,
        "outcome": "done",
        "provider": "anthropic",
        "model": "claude-x",
        "prompt": "answer@v2",
        "retrieval_status": "ok",
        "retriever_status": "ok",
        "candidates": [
            ChunkScore(id="c1", source="a.md", score=0.9),
            ChunkScore(id="c2", source="b.md", score=0.4),
        ],
        "context": [ChunkScore(id="c1", source="a.md", score=0.9, number=1)],
        "stages": [
            StageTiming(name="validate", start_ms=0.0, duration_ms=1.0),
            StageTiming(name="retrieve", start_ms=2.0, duration_ms=30.0),
            StageTiming(name="rank", start_ms=32.0, duration_ms=1.0),
            StageTiming(name="generate", start_ms=35.0, duration_ms=60.0),
        ],
        "timings_ms": {
            "retrieve": 30.0,
            "retrieve.embed": 5.0,
            "retrieve.search": 15.0,
            "retrieve.fuse": 2.0,
        },
        "first_token_ms": 50.0,
        "input_tokens": 700,
        "output_tokens": 90,
        "max_output_tokens": 1024,
        "finish_reason": "stop",
    }
    return RequestTrace(**(base | fields))  # type: ignore[arg-type]


def test_stages_become_children_of_one_ask_span_at_the_times_they_were_measured() -> None:
    spans, trace_id = traced(a_trace())
    by_name = {s.name: s for s in spans}
    ask = by_name["ask"]

    assert {s.name for s in spans if s.parent and s.parent.span_id == ask.context.span_id} == {
        "validate",
        "retrieve",
        "rank",
        "chat claude-x",
    }
    assert (ask.start_time, ask.end_time) == (T0, T0 + 100 * MS)
    retrieve = by_name["retrieve"]
    assert (retrieve.start_time, retrieve.end_time) == (T0 + 2 * MS, T0 + 32 * MS)
    # The worker's steps end where retrieval ended; the time before them was waiting for it.
    steps = sorted(
        (s for s in spans if s.parent and s.parent.span_id == retrieve.context.span_id),
        key=lambda s: s.start_time,
    )
    assert [s.name for s in steps] == ["retrieve.wait", "retrieve.embed", "retrieve.search", "retrieve.fuse"]
    assert steps[0].end_time - steps[0].start_time == 8 * MS
    assert steps[-1].end_time == retrieve.end_time
    assert trace_id == format(ask.context.trace_id, "032x")


def test_the_model_call_carries_the_genai_attributes_and_a_first_token_event() -> None:
    spans, _ = traced(a_trace())
    generate = next(s for s in spans if s.name == "chat claude-x")

    assert generate.kind is SpanKind.CLIENT  # a remote model
    attributes = dict(generate.attributes or {})
    assert attributes["gen_ai.system"] == "anthropic" and attributes["gen_ai.request.model"] == "claude-x"
    assert attributes["gen_ai.usage.input_tokens"] == 700 and attributes["gen_ai.usage.output_tokens"] == 90
    assert attributes["gen_ai.request.max_tokens"] == 1024
    assert list(attributes["gen_ai.response.finish_reasons"]) == ["stop"]
    assert [(e.name, e.timestamp) for e in generate.events] == [("first_token", T0 + 50 * MS)]


def test_retrieval_and_ranking_spans_carry_chunk_ids_with_scores() -> None:
    spans, _ = traced(a_trace())
    retrieve = dict(next(s for s in spans if s.name == "retrieve").attributes or {})
    rank = dict(next(s for s in spans if s.name == "rank").attributes or {})

    assert list(retrieve["kb.retrieval.candidate_ids"]) == ["c1", "c2"]
    assert list(retrieve["kb.retrieval.candidate_scores"]) == [0.9, 0.4]
    assert list(rank["kb.context.chunk_ids"]) == ["c1"] and list(rank["kb.context.sources"]) == ["a.md"]


def test_a_retrieval_timeout_and_a_model_error_mark_their_spans_as_errors() -> None:
    spans, _ = traced(
        a_trace(
            outcome="error",
            retrieval_status="timeout",
            retriever_status="timeout",
            retrieval_detail="retrieval exceeded 3.0 s",
            timings_ms={},
            error=TraceError(code="provider_unavailable", message="upstream 503"),
            finish_reason="error",
        )
    )
    by_name = {s.name: s for s in spans}

    assert by_name["retrieve"].status.status_code is StatusCode.ERROR
    assert by_name["retrieve"].attributes["kb.retrieval.detail"] == "retrieval exceeded 3.0 s"  # type: ignore[index]
    assert "retrieve.wait" not in by_name  # nothing measured, nothing invented
    assert by_name["chat claude-x"].status.status_code is StatusCode.ERROR
    assert by_name["ask"].status.status_code is StatusCode.ERROR
    assert by_name["ask"].attributes["error.type"] == "provider_unavailable"  # type: ignore[index]


@pytest.mark.parametrize(
    ("environ", "endpoint"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"}, "http://c:4318/custom"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
    ],
)
def test_traces_are_exported_only_where_the_standard_variables_name_an_endpoint(
    environ: dict[str, str], endpoint: str | None
) -> None:
    assert otlp_traces_endpoint(environ) == endpoint


def test_without_an_endpoint_there_is_no_tracer_provider_at_all() -> None:
    assert tracer_provider_from_environment({}) is None


def test_with_an_endpoint_the_provider_names_the_service_kb_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    provider = tracer_provider_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "kb"
    finally:
        provider.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "kb-eu")
    named = tracer_provider_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert named is not None
    try:
        assert named.resource.attributes["service.name"] == "kb-eu"
    finally:
        named.shutdown()
