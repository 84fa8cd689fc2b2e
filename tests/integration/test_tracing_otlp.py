"""Spans leave the process over OTLP/HTTP, to the endpoint the standard variable names."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.observability import tracer_provider_from_environment

pytestmark = pytest.mark.integration


class Collector(HTTPServer):
    """A loopback OTLP/HTTP receiver that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # the stdlib names it
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_spans_are_exported_to_the_otlp_endpoint_in_the_environment(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "kb-test")
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    provider = tracer_provider_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert provider is not None
    with provider.get_tracer("test").start_as_current_span("ask", attributes={"kb.request_id": "r1"}):
        pass
    provider.shutdown()  # flushes the batch

    assert [path for path, _ in collector.received] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(collector.received[0][1])
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    spans = [span for scope in resource_spans.scope_spans for span in scope.spans]
    assert service == "kb-test"
    assert [span.name for span in spans] == ["ask"]
    assert {a.key: a.value.string_value for a in spans[0].attributes} == {"kb.request_id": "r1"}
