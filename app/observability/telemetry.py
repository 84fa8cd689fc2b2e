"""The telemetry objects that exist before the app does: the tracer provider and the metrics.

Litestar builds its middleware (the OpenTelemetry plugin's, the metrics') when the app is
constructed, before the lifespan builds the services; so these two are built first, by the
composition root (``app.services.build_telemetry``), and handed both to the app and to the
services. Nothing here sets a global: the provider is passed to Litestar's plugin and to the
pipeline's observer, the registry to ``/metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from app.observability.metrics import Metrics
from app.observability.tracing import TRACER_NAME

__all__ = ["Telemetry"]


@dataclass(slots=True)
class Telemetry:
    tracer_provider: TracerProvider | None
    """None: tracing is off (no OTLP endpoint configured); no span is made anywhere."""
    metrics: Metrics | None
    """None: metrics are off (``observability.metrics``)."""
    owns_provider: bool = True
    """Shut the provider down with the app (False when the caller passed it in and owns it)."""

    def tracer(self) -> Tracer | None:
        if self.tracer_provider is None:
            return None
        return self.tracer_provider.get_tracer(TRACER_NAME)

    def close(self) -> None:
        """Flush what is buffered (spans still to export); release what this app owns."""
        if self.tracer_provider is not None:
            if self.owns_provider:
                self.tracer_provider.shutdown()
            else:
                self.tracer_provider.force_flush()
        if self.metrics is not None:
            self.metrics.close()
