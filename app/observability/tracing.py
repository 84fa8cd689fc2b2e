"""Traces: the tracer provider (OTLP when the standard variables ask for it) and the span tree
of one ``/ask``, made from its ``RequestTrace``.

The HTTP server span is Litestar's OpenTelemetry plugin's (HTTP semantic conventions). Under it,
``record_spans`` writes an ``ask`` span with a child per stage (validate, prepare, retrieve and
its steps, rank, prompt, generate, postprocess) when the run ends, each with the start and end
the pipeline measured. Making them afterwards, from measurements, means the retriever's worker
thread and the pipeline's streaming generator (resumed in a different task for each event) need
no span context of their own, and a pipeline without tracing pays nothing for it.

Attributes follow the GenAI conventions on the model call (``gen_ai.*``) and use ``kb.*`` for
what is this service's own: retrieval status and reason, candidate and context chunk ids with
their scores, prompt ``name@version``, cache hit, the token grant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from app.observability.records import RequestTrace, StageTiming

__all__ = [
    "TRACER_NAME",
    "current_trace_id",
    "otlp_traces_endpoint",
    "record_spans",
    "tracer_provider_from_environment",
]

log = structlog.get_logger("kb.observability")

TRACER_NAME = "kb"
_DEFAULT_SERVICE_NAME = "kb"
# Providers that answer in this process: their span is not a client call (GenAI conventions).
_IN_PROCESS_PROVIDERS = frozenset({"extractive"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def otlp_traces_endpoint(environ: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP traces URL the standard variables name, or None when tracing is off.

    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is used as given; ``OTEL_EXPORTER_OTLP_ENDPOINT`` gets
    ``/v1/traces`` appended (as the specification says). ``OTEL_SDK_DISABLED=true`` or
    ``OTEL_TRACES_EXPORTER=none`` turn tracing off whatever the endpoint.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() not in _FALSE:
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return f"{base.rstrip('/')}/v1/traces" if base else None


def tracer_provider_from_environment(environ: Mapping[str, str]) -> TracerProvider | None:
    """A provider exporting over OTLP/HTTP in batches when ``environ`` names an endpoint; None
    (no provider, no spans, no exporter thread) otherwise.

    The rest is the SDK's reading of the standard variables: ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` (the service is ``kb`` unless they name it),
    ``OTEL_EXPORTER_OTLP_HEADERS``/``_TIMEOUT``/``_COMPRESSION``, ``OTEL_TRACES_SAMPLER``,
    ``OTEL_BSP_*``.
    """
    endpoint = otlp_traces_endpoint(environ)
    if endpoint is None:
        return None
    # Imported here: the exporter pulls in requests and protobuf, which an install that never
    # exports need not load.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: _DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    log.info("tracing_enabled", endpoint=endpoint, service=resource.attributes.get(SERVICE_NAME))
    return provider


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the span current in this context, if there is one."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _ns(trace_: RequestTrace, offset_ms: float) -> int:
    return trace_.started_ns + int(offset_ms * 1_000_000)


def _stage_span(
    tracer: Tracer,
    trace_: RequestTrace,
    stage: StageTiming,
    parent: otel_context.Context,
    *,
    name: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """A started span for ``stage`` (the caller ends it at ``_stage_end``)."""
    return tracer.start_span(
        name or stage.name,
        context=parent,
        kind=kind,
        attributes={"kb.stage": stage.name, **(attributes or {})},
        start_time=_ns(trace_, stage.start_ms),
    )


def _stage_end(trace_: RequestTrace, stage: StageTiming) -> int:
    return _ns(trace_, stage.start_ms + stage.duration_ms)


def _ask_attributes(t: RequestTrace) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "kb.request_id": t.request_id,
        "kb.outcome": t.outcome,
        "kb.cache.hit": t.cached,
        "kb.prompt": t.prompt,
        "kb.prompt.reason": t.prompt_reason,
        "kb.retrieval.candidates": len(t.candidates),
        "kb.retrieval.context": len(t.context),
        "kb.citations": t.citations,
    }
    if t.caller is not None:
        attributes |= {
            "kb.tenant": t.caller.tenant,
            "kb.caller.role": t.caller.role,
            "kb.caller.tier": t.caller.tier,
        }
        if t.caller.key_id:
            attributes["kb.key_id"] = t.caller.key_id
    if t.conversation_id:
        attributes["kb.conversation_id"] = t.conversation_id
    if t.retrieval_status is not None:
        attributes["kb.retrieval.status"] = t.retrieval_status
    if t.tokens_granted is not None:
        attributes["kb.limit.tokens_granted"] = t.tokens_granted
    if t.error is not None:
        attributes["error.type"] = t.error.code
    return attributes


def _retrieval_attributes(t: RequestTrace) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "kb.retrieval.candidates": len(t.candidates),
        "kb.retrieval.candidate_ids": [c.id for c in t.candidates],
        "kb.retrieval.candidate_scores": [c.score for c in t.candidates],
    }
    if t.retriever_status is not None:
        attributes["kb.retrieval.retriever_status"] = t.retriever_status
    if t.retrieval_detail:
        attributes["kb.retrieval.detail"] = t.retrieval_detail
    return attributes


def _context_attributes(t: RequestTrace) -> dict[str, Any]:
    return {
        "kb.retrieval.context": len(t.context),
        "kb.context.chunk_ids": [c.id for c in t.context],
        "kb.context.scores": [c.score for c in t.context],
        "kb.context.sources": [c.source for c in t.context],
    }


def _generation_attributes(t: RequestTrace) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": t.provider,
        "gen_ai.provider.name": t.provider,
        "gen_ai.request.model": t.model,
        "gen_ai.response.model": t.model,
        "gen_ai.usage.input_tokens": t.input_tokens,
        "gen_ai.usage.output_tokens": t.output_tokens,
        "kb.prompt": t.prompt,
    }
    if t.max_output_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = t.max_output_tokens
    if t.finish_reason is not None:
        attributes["gen_ai.response.finish_reasons"] = [t.finish_reason]
    if t.tokens_granted is not None:
        attributes["kb.limit.tokens_granted"] = t.tokens_granted
    return attributes


def _retrieval_steps(t: RequestTrace, retrieve: StageTiming) -> list[StageTiming]:
    """The retriever's steps (``timings_ms["retrieve.<step>"]``) laid out in the order it timed
    them, ending where retrieval ended; what precedes them is the wait for the worker thread."""
    steps = [
        (name.removeprefix("retrieve."), ms)
        for name, ms in t.timings_ms.items()
        if name.startswith("retrieve.")
    ]
    busy = sum(ms for _, ms in steps)
    waited = max(0.0, retrieve.duration_ms - busy)
    laid_out = (
        [StageTiming(name="wait", start_ms=retrieve.start_ms, duration_ms=round(waited, 2))] if steps else []
    )
    at = retrieve.start_ms + waited
    for name, ms in steps:
        laid_out.append(StageTiming(name=name, start_ms=round(at, 2), duration_ms=ms))
        at += ms
    return laid_out


def record_spans(
    tracer: Tracer, t: RequestTrace, *, end_ns: int, parent: otel_context.Context | None = None
) -> str:
    """Write the span tree of one finished run under ``parent`` (default: the current context,
    the HTTP server span when there is one); the trace id."""
    ask = tracer.start_span(
        "ask", context=parent, kind=SpanKind.INTERNAL, attributes=_ask_attributes(t), start_time=t.started_ns
    )
    under_ask = trace.set_span_in_context(ask)
    for stage in t.stages:
        if stage.name == "retrieve":
            span = _stage_span(tracer, t, stage, under_ask, attributes=_retrieval_attributes(t))
            if t.retriever_status in ("timeout", "error"):
                span.set_status(Status(StatusCode.ERROR, t.retrieval_detail or t.retriever_status))
            under_retrieve = trace.set_span_in_context(span)
            for step in _retrieval_steps(t, stage):
                child = _stage_span(tracer, t, step, under_retrieve, name=f"retrieve.{step.name}")
                child.end(end_time=_stage_end(t, step))
        elif stage.name == "rank":
            span = _stage_span(tracer, t, stage, under_ask, attributes=_context_attributes(t))
        elif stage.name == "generate":
            kind = SpanKind.INTERNAL if t.provider in _IN_PROCESS_PROVIDERS else SpanKind.CLIENT
            span = _stage_span(
                tracer,
                t,
                stage,
                under_ask,
                name=f"chat {t.model}",
                kind=kind,
                attributes=_generation_attributes(t),
            )
            if t.first_token_ms is not None:
                span.add_event(
                    "first_token", {"kb.first_token_ms": t.first_token_ms}, timestamp=_ns(t, t.first_token_ms)
                )
            if t.error is not None and t.finish_reason == "error":
                span.set_status(Status(StatusCode.ERROR, t.error.code))
        else:
            span = _stage_span(tracer, t, stage, under_ask)
        span.end(end_time=_stage_end(t, stage))
    if t.error is not None:
        ask.set_status(Status(StatusCode.ERROR, t.error.code))
    ask.end(end_time=max(end_ns, t.started_ns))
    return format(ask.get_span_context().trace_id, "032x")
