"""Spans of an ingestion run: one ``ingest`` span, ``load`` and ``chunk`` per document, ``encode``
and ``upsert`` per batch (the upsert on the writer thread, still under the run's span)."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.store import open_store
from ingest.runner import Ingestor

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parent.parent / "data" / "mixed"


def test_an_ingestion_run_is_one_trace_with_a_span_per_document_step_and_batch(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = load_settings(environ={"KB_DATA_DIR": str(tmp_path)})
    store = open_store(settings)
    try:
        report = Ingestor(
            store,
            embedder,
            chunking=settings.chunking,
            ingest=settings.ingest,
            tracer=provider.get_tracer("test"),
        ).ingest_paths([CORPUS])
    finally:
        store.close()

    spans = exporter.get_finished_spans()
    (run,) = [s for s in spans if s.name == "ingest"]
    assert run.parent is None
    assert {s.context.trace_id for s in spans} == {run.context.trace_id}
    assert all(
        s.parent is not None and s.parent.span_id == run.context.span_id for s in spans if s is not run
    )
    assert dict(run.attributes or {})["kb.ingest.chunks"] == report.chunks_written > 0
    assert dict(run.attributes or {})["kb.ingest.failed"] == len(report.failed)

    loads = [s for s in spans if s.name == "load"]
    failed = {
        dict(s.attributes or {})["kb.source"] for s in loads if s.status.status_code is StatusCode.ERROR
    }
    assert failed and failed <= {f.path for f in report.failed}  # the broken PDF, its error on its span
    assert len(loads) == report.new + len(report.empty) + len(failed)  # every document read once
    chunked = sum(dict(s.attributes or {})["kb.chunks"] for s in spans if s.name == "chunk")  # type: ignore[misc]
    encoded = sum(dict(s.attributes or {})["kb.chunks"] for s in spans if s.name == "encode")  # type: ignore[misc]
    upserted = sum(dict(s.attributes or {})["kb.chunks"] for s in spans if s.name == "upsert")  # type: ignore[misc]
    assert chunked == encoded == upserted == report.chunks_written
