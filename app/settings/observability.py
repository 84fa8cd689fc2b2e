"""Settings: traces, metrics and request records (``app.observability``).

Traces have no settings here: they are exported over OTLP when the standard OpenTelemetry
variables say so (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``;
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_BSP_*``, ``OTEL_SDK_DISABLED`` mean what the SDK documents), so the same deployment
config that points every other service at a collector points this one there too. Without an
endpoint no tracer provider is built at all. docs/operations.md describes all of it.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from app.settings.base import PositiveFloat, _Section

__all__ = ["ObservabilitySettings"]


class ObservabilitySettings(_Section, frozen=True):
    """Traces, metrics, the per-request record an operator looks up, log content."""

    metrics: bool = True
    """Expose Prometheus metrics. Off: no ``/metrics`` route and no metrics port."""

    metrics_port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    """None: metrics are served at ``GET /metrics`` on the API port, to admin keys only. A port:
    served there instead, without a key (bind it to an interface only the scraper reaches,
    ``metrics_host``), and the API port has no ``/metrics``."""

    metrics_host: str = "127.0.0.1"
    """Interface of ``metrics_port``."""

    records: bool = True
    """Keep a record of each answered request in the state store, for
    ``GET /admin/requests/{request_id}``. Written after the response is sent."""

    record_count: Annotated[int, Meta(ge=1, le=1_000_000)] = 1000
    """At most this many request records are kept (the oldest are dropped first), over all
    instances that share the state store."""

    record_ttl_s: PositiveFloat = 86400.0
    """A request record is dropped this long after its request."""

    record_text: bool = True
    """Keep the question (as asked and as searched) and the answer text in request records.
    Off (the production configuration): records hold ids, scores, timings and counts only."""

    log_question: bool = False
    """Log each question (as asked and as searched) in one ``question`` line of its request. Off:
    no log line holds question text."""

    background_queue: Annotated[int, Meta(ge=1, le=1_000_000)] = 1000
    """Post-response jobs (request records, accounting) waiting at most; past it new jobs are
    dropped, each with a warning, instead of piling up in memory."""

    background_timeout_s: PositiveFloat = 10.0
    """Bound of one post-response job; past it the job is abandoned with a warning."""

    drain_timeout_s: PositiveFloat = 5.0
    """At shut-down, waiting jobs get this long to finish; what is left is dropped with a
    warning."""
