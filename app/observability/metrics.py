"""Prometheus metrics: one registry per app, the series operators chart, and their exposition.

``Metrics`` owns a ``CollectorRegistry`` of its own (never the library's global one), so that
several apps in one process (tests) do not collide. Its methods are the API other parts call:
``request_finished`` (the HTTP layer), ``request_traced`` (the observer, from a
``RequestTrace``), ``rate_limit_refused`` (the limits), ``ingested`` (ingestion),
``stream_opened``/``stream_closed``, ``connection_closed`` (``kb serve``'s connection guard),
``retrieval_depth``/``retrieval_dropped``/``query_batch``
(the retrieval's admission queue and question batcher), and ``executor`` (a thread pool whose
queue depth is that gauge).

Several worker processes (``kb serve --workers N``) each count their own requests, so a scrape of
one would see a share of the traffic. Prometheus's multiprocess mode fixes that: with
``PROMETHEUS_MULTIPROC_DIR`` set before the workers start (``kb serve`` sets it to a fresh folder
when it starts more than one worker and it is unset), every process writes its samples there and
``exposition`` reads all of them, so whichever worker answers a scrape reports the totals.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from app.observability.records import RequestTrace
from app.settings import ObservabilitySettings

__all__ = [
    "MULTIPROC_ENV",
    "Metrics",
    "exposition_registry",
    "serve_metrics_port",
    "worker_metrics",
]

log = structlog.get_logger("kb.observability")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Where every worker process writes its samples in multiprocess mode (prometheus-client's)."""

_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """The service's Prometheus series, in a registry of their own."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, multiprocess_dir: str | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        r = self.registry
        self.http_requests = Counter(
            "kb_http_requests",
            "HTTP responses by route template, method and status.",
            ("route", "method", "status"),
            registry=r,
        )
        self.http_duration = Histogram(
            "kb_http_request_duration_seconds",
            "Time from request to the last byte of the response (a whole stream), by route and method.",
            ("route", "method"),
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge(
            "kb_active_streams",
            "Event streams (/ask) being sent now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.answers = Counter(
            "kb_answers", "Runs of the /ask pipeline by how they ended.", ("outcome",), registry=r
        )
        self.answer_errors = Counter("kb_answer_errors", "Error events by code.", ("code",), registry=r)
        self.stage_duration = Histogram(
            "kb_stage_duration_seconds",
            "Duration of each /ask stage (retrieve.* are the retrieval worker's steps).",
            ("stage",),
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "kb_time_to_first_token_seconds",
            "From the start of handling a question to the first streamed text, by model.",
            ("model",),
            buckets=_FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "kb_model_tokens",
            "Model tokens by model and type (input: prompt, output: answer).",
            ("model", "type"),
            registry=r,
        )
        self.retrievals = Counter(
            "kb_retrievals",
            "Retrieval outcomes as the client was told (ok, empty, timeout, error).",
            ("status",),
            registry=r,
        )
        self.answer_cache = Counter(
            "kb_answer_cache_lookups",
            "Answers served from the answer cache (hit) or answered anew (miss); the hit ratio is hit / (hit + miss).",
            ("result",),
            registry=r,
        )
        self.rate_limit_refusals = Counter(
            "kb_rate_limit_refusals",
            "Requests refused by a limit, by the limit's name.",
            ("limit",),
            registry=r,
        )
        self.ingest_chunks = Counter("kb_ingest_chunks", "Chunks written by ingestion.", registry=r)
        self.ingest_failures = Counter(
            "kb_ingest_failures", "Documents ingestion failed to load or write.", registry=r
        )
        self.retrieval_queue = Gauge(
            "kb_retrieval_queue_depth",
            "Retrieval searches waiting for a store worker (not yet running).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.retrieval_drops = Counter(
            "kb_retrieval_dropped",
            "Retrievals whose search never ran: refused, the queue being full (full); their "
            "deadline passed first (expired); their client left first (cancelled).",
            ("reason",),
            registry=r,
        )
        self.query_batches = Histogram(
            "kb_query_embedding_batch_size",
            "Questions embedded per model call by the retrieval's batcher.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.background_queue = Gauge(
            "kb_background_queue_depth",
            "Post-response jobs waiting.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.connections_closed = Counter(
            "kb_connections_closed",
            "Connections the server closed before a request was answered, by reason (idle, "
            "header_timeout, body_timeout, evicted, refused).",
            ("reason",),
            registry=r,
        )
        self.background_dropped = Counter(
            "kb_background_jobs_dropped",
            "Post-response jobs dropped (queue full, shutting down).",
            ("job",),
            registry=r,
        )

    # -- the API other layers call ----------------------------------------------------------

    def request_finished(self, *, route: str, method: str, status: int, duration_s: float | None) -> None:
        """One HTTP response; ``duration_s`` None for requests no route matched (404/405)."""
        self.http_requests.labels(route, method, str(status)).inc()
        if duration_s is not None:
            self.http_duration.labels(route, method).observe(duration_s)

    def stream_opened(self) -> None:
        self.active_streams.inc()

    def stream_closed(self) -> None:
        self.active_streams.dec()

    def rate_limit_refused(self, limit: str) -> None:
        """A request refused with 429 by the limit named ``limit`` (``requests``,
        ``concurrency``, ``tokens``, ``tenant_tokens``, ``model_tokens``: few, fixed names)."""
        self.rate_limit_refusals.labels(limit).inc()

    def ingested(self, *, chunks: int = 0, failed: int = 0) -> None:
        """Chunks written and documents failed by an ingestion run in this process."""
        if chunks:
            self.ingest_chunks.inc(chunks)
        if failed:
            self.ingest_failures.inc(failed)

    def connection_closed(self, reason: str) -> None:
        """A connection closed by ``kb serve``'s guard (a read timeout, the connection cap)."""
        self.connections_closed.labels(reason).inc()

    def background_depth(self, depth: int) -> None:
        self.background_queue.set(depth)

    def background_dropped_job(self, job: str) -> None:
        self.background_dropped.labels(job).inc()

    def request_traced(self, trace: RequestTrace) -> None:
        """Count one finished /ask run: outcome, stages, retrieval, cache, tokens, first token."""
        self.answers.labels(trace.outcome).inc()
        if trace.error is not None:
            self.answer_errors.labels(trace.error.code).inc()
        for stage in trace.stages:
            self.stage_duration.labels(stage.name).observe(stage.duration_ms / 1000)
        for name, ms in trace.timings_ms.items():
            if name.startswith("retrieve."):
                self.stage_duration.labels(name).observe(ms / 1000)
        if trace.retrieval_status is not None:
            self.retrievals.labels(trace.retrieval_status).inc()
        if trace.outcome != "cancelled" or trace.retrieval_status is not None:
            self.answer_cache.labels("hit" if trace.cached else "miss").inc()
        model = trace.model or "unknown"
        if trace.first_token_ms is not None and not trace.cached:
            self.first_token.labels(model).observe(trace.first_token_ms / 1000)
        if not trace.cached:
            if trace.input_tokens:
                self.tokens.labels(model, "input").inc(trace.input_tokens)
            if trace.output_tokens:
                self.tokens.labels(model, "output").inc(trace.output_tokens)

    def retrieval_depth(self, depth: int) -> None:
        """Searches waiting for a store worker (``app.retrieval.admission``)."""
        self.retrieval_queue.set(depth)

    def retrieval_dropped(self, reason: str) -> None:
        """A retrieval whose search never ran, by reason (``full``, ``expired``, ``cancelled``)."""
        self.retrieval_drops.labels(reason).inc()

    def query_batch(self, size: int) -> None:
        """One model call of the question batcher, embedding ``size`` questions."""
        self.query_batches.observe(size)

    # -- exposition -------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every series, and its content type: this registry, or in
        multiprocess mode the samples of every process."""
        return generate_latest(exposition_registry(self.registry, self.multiprocess_dir)), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """At shut-down: in multiprocess mode, this process's live gauges stop counting."""
        if self.multiprocess_dir:
            prometheus_multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


def exposition_registry(registry: CollectorRegistry, multiprocess_dir: str | None) -> CollectorRegistry:
    """What a scrape reads: ``registry``, or a fresh one collecting every process's files."""
    if not multiprocess_dir:
        return registry
    collected = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(collected, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    return collected


def serve_metrics_port(registry: CollectorRegistry, *, host: str, port: int) -> Callable[[], None]:
    """Serve ``registry`` on ``host:port`` (prometheus-client's HTTP server, in a thread); the
    function that stops it."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics_port", host=host, port=port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


@contextmanager
def worker_metrics(
    settings: ObservabilitySettings, *, workers: int, environ: MutableMapping[str, str]
) -> Iterator[None]:
    """Around ``kb serve`` with several worker processes: multiprocess mode for them, and the
    metrics port (if configured) served here, in the supervisor, from every worker's samples.

    The workers must find ``PROMETHEUS_MULTIPROC_DIR`` in their environment when they start, so
    it is set here, before they do: to the operator's folder (emptied first, as prometheus-client
    requires between runs) or to a new temporary one, removed afterwards. One worker needs none
    of this: its own registry is the whole truth.
    """
    if workers <= 1 or not settings.metrics:
        yield
        return
    folder = environ.get(MULTIPROC_ENV)
    created = None
    if folder:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.remove(os.path.join(folder, name))
    else:
        folder = created = tempfile.mkdtemp(prefix="kb-metrics-")
        environ[MULTIPROC_ENV] = folder
    stop = None
    if settings.metrics_port is not None:
        stop = serve_metrics_port(
            exposition_registry(CollectorRegistry(), folder),
            host=settings.metrics_host,
            port=settings.metrics_port,
        )
    try:
        yield
    finally:
        if stop is not None:
            stop()
        if created is not None:
            environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(created, ignore_errors=True)
