"""What tracing costs an answer: the time to the ``done`` event with tracing on and off, in one run.

Two copies of the app serve the same ingested documents on loopback (real uvicorn, real model,
real embedded store, the offline extractive answerer): one without a tracer provider (what an
install without ``OTEL_EXPORTER_OTLP_ENDPOINT`` runs), one exporting every span over OTLP/HTTP in
batches to a loopback collector (what an install with one runs). Requests alternate between
the two, so that both see the same machine load; each is timed from sending the request to
reading its ``done`` event. The answer cache and the rate limits are off, so every request does
the whole work.

Usage:
  .venv/bin/python bench/bench_tracing.py [--requests 40] [--docs tests/data/mixed]

Bounded: ``--requests`` per app (default 40), each request at most 30 s. Not a test: nothing is
asserted; the figures go to docs/operations.md with this command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# The project's imports come after the offline switches: the model libraries read them on import.

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder
from app.http import create_app
from app.observability import tracer_provider_from_environment
from app.settings import EmbeddingSettings, Settings
from app.store import open_store
from ingest.runner import Ingestor
from tests.e2e.servers import live_server

__all__: list[str] = []

QUESTIONS = (
    "How do I install on Linux?",
    "What is in the notes?",
    "Which formats can be ingested?",
    "What does the manual say about safety?",
    "How is the service configured?",
)


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that accepts and discards what it is sent."""

    spans_bytes = 0

    def do_POST(self) -> None:  # the stdlib names it
        _Sink.spans_bytes += len(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@contextmanager
def collector() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def settings_for(data_dir: Path) -> Settings:
    return load_settings(
        environ={"KB_DATA_DIR": str(data_dir)},
        overrides={"answers": {"answer_cache": "off"}, "limits": {"enabled": False}},
    )


def time_to_done(client: httpx.Client, question: str) -> float:
    started = time.perf_counter()
    with client.stream("POST", "/ask", json={"question": question}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line == "event: done":
                return (time.perf_counter() - started) * 1000
    raise RuntimeError(f"no done event for {question!r}")


def summary(ms: list[float]) -> str:
    ordered = sorted(ms)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"{statistics.median(ms):.1f} | {p90:.1f} | {statistics.mean(ms):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=40, help="requests per app (default 40)")
    parser.add_argument("--docs", type=Path, default=Path("tests/data/mixed"), help="documents to ingest")
    args = parser.parse_args()

    embedder = SentenceTransformerEmbedder(EmbeddingSettings())
    work = Path(tempfile.mkdtemp(prefix="kb-bench-tracing-"))
    try:
        ingested = work / "ingested"
        settings = settings_for(ingested)
        store = open_store(settings)
        try:
            Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
                [args.docs]
            )
        finally:
            store.close()
        for name in ("off", "on"):  # the embedded store admits one process: a copy each
            shutil.copytree(ingested, work / name)

        with collector() as endpoint:
            provider = tracer_provider_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
            assert provider is not None
            off_app = create_app(settings_for(work / "off"), embedder=embedder)
            on_app = create_app(settings_for(work / "on"), embedder=embedder, tracer_provider=provider)
            timings: dict[str, list[float]] = {"off": [], "on": []}
            with live_server(off_app) as off, live_server(on_app) as on:
                clients = {
                    "off": httpx.Client(base_url=off.base_url, timeout=30.0),
                    "on": httpx.Client(base_url=on.base_url, timeout=30.0),
                }
                for client in clients.values():  # warm-up: first requests pay one-off costs
                    for question in QUESTIONS:
                        time_to_done(client, question)
                for n in range(args.requests):
                    order = ("off", "on") if n % 2 == 0 else ("on", "off")
                    for name in order:
                        timings[name].append(time_to_done(clients[name], QUESTIONS[n % len(QUESTIONS)]))
                for client in clients.values():
                    client.close()
            provider.shutdown()

        print(f"{args.requests} requests per app, {os.cpu_count()} cores, documents: {args.docs}")
        print("| tracing | median ms | p90 ms | mean ms |")
        print("| --- | --- | --- | --- |")
        print(f"| off | {summary(timings['off'])} |")
        print(f"| on (OTLP/HTTP, batched) | {summary(timings['on'])} |")
        ratio = statistics.median(timings["on"]) / statistics.median(timings["off"])
        print(f"\nmedian on / off: {ratio:.3f}; spans exported: {_Sink.spans_bytes} bytes")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
