"""Traces (OpenTelemetry), metrics (Prometheus), request records, post-response work.

docs/operations.md is the operator's view of all of it.
"""

from __future__ import annotations

from app.observability.background import BackgroundWork
from app.observability.http import HttpObservability
from app.observability.metrics import (
    MULTIPROC_ENV,
    Metrics,
    exposition_registry,
    serve_metrics_port,
    worker_metrics,
)
from app.observability.observer import RequestObservability
from app.observability.records import (
    CallerView,
    ChunkScore,
    Outcome,
    RequestRecords,
    RequestTrace,
    StageClock,
    StageTiming,
    TraceError,
    chunk_scores,
)
from app.observability.telemetry import Telemetry
from app.observability.tracing import (
    TRACER_NAME,
    current_trace_id,
    otlp_traces_endpoint,
    record_spans,
    tracer_provider_from_environment,
)

__all__ = [
    "MULTIPROC_ENV",
    "TRACER_NAME",
    "BackgroundWork",
    "CallerView",
    "ChunkScore",
    "HttpObservability",
    "Metrics",
    "Outcome",
    "RequestObservability",
    "RequestRecords",
    "RequestTrace",
    "StageClock",
    "StageTiming",
    "Telemetry",
    "TraceError",
    "chunk_scores",
    "current_trace_id",
    "exposition_registry",
    "otlp_traces_endpoint",
    "record_spans",
    "serve_metrics_port",
    "tracer_provider_from_environment",
    "worker_metrics",
]
