"""The pipeline's observer: what happens with a ``RequestTrace`` when its run ends.

``finished`` is called once per run, in the run's own context (its HTTP server span current),
after the last event was handed to the client. It does the cheap, synchronous part at once:
the span tree (when tracing is on), the metrics, the ``question`` log line (when configured).
Storing the record is I/O, so it is only queued (``BackgroundWork``) and runs after the
response. Nothing here may fail a request: every error is logged and swallowed.
"""

from __future__ import annotations

import time
from functools import partial

import structlog
from opentelemetry.trace import Tracer

from app.observability.background import BackgroundWork
from app.observability.metrics import Metrics
from app.observability.records import RequestRecords, RequestTrace
from app.observability.tracing import current_trace_id, record_spans
from app.settings import ObservabilitySettings

__all__ = ["RequestObservability"]

log = structlog.get_logger("kb.observability")


class RequestObservability:
    """Spans, metrics, the question log line and the stored record of each finished run."""

    def __init__(
        self,
        settings: ObservabilitySettings,
        *,
        background: BackgroundWork,
        records: RequestRecords | None,
        metrics: Metrics | None,
        tracer: Tracer | None,
    ) -> None:
        self.settings = settings
        self.background = background
        self.records = records
        self.metrics = metrics
        self.tracer = tracer

    def finished(self, trace: RequestTrace) -> None:
        """Called by the pipeline once per run, however it ended. Never raises."""
        if trace.evaluation:  # kb eval's runs are measurements, not requests
            return
        try:
            self._observe(trace)
        except Exception as exc:  # observability must never cost an answer
            log.warning(
                "request_observation_failed",
                request_id=trace.request_id,
                error=f"{type(exc).__name__}: {exc}",
            )

    def _observe(self, trace: RequestTrace) -> None:
        if self.tracer is not None:
            trace.trace_id = record_spans(self.tracer, trace, end_ns=time.time_ns())
        else:
            trace.trace_id = current_trace_id()
        if self.metrics is not None:
            self.metrics.request_traced(trace)
        if self.settings.log_question and trace.question is not None:
            log.info(
                "question", request_id=trace.request_id, question=trace.question, searched=trace.searched
            )
        if self.records is not None:
            stored = trace if self.settings.record_text else trace.without_text()
            self.background.submit(
                "request_record", partial(self.records.save, stored), request_id=trace.request_id
            )
