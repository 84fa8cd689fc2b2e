"""Prometheus metrics: one registry per app, series from a finished run, the retrieval queue,
and multiprocess mode adding up every worker's samples."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observability import (
    Metrics,
    RequestTrace,
    StageTiming,
    TraceError,
    exposition_registry,
    worker_metrics,
)
from app.settings import ObservabilitySettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    value = metrics.registry.get_sample_value(name, labels)
    return value


def test_two_apps_in_one_process_count_separately() -> None:
    first, second = Metrics(), Metrics()  # the same names twice: no "duplicated timeseries" error

    first.rate_limit_refused("requests")
    first.rate_limit_refused("requests")
    second.rate_limit_refused("tokens")

    assert sample(first, "kb_rate_limit_refusals_total", limit="requests") == 2
    assert sample(second, "kb_rate_limit_refusals_total", limit="requests") is None
    assert sample(second, "kb_rate_limit_refusals_total", limit="tokens") == 1


def test_a_finished_run_counts_its_outcome_stages_tokens_and_first_token() -> None:
    metrics = Metrics()
    metrics.request_traced(
        RequestTrace(
            request_id="r1",
            started_ns=0,
            outcome="done",
            model="claude-x",
            retrieval_status="empty",
            stages=[
                StageTiming(name="retrieve", start_ms=1, duration_ms=20),
                StageTiming(name="generate", start_ms=22, duration_ms=400),
            ],
            timings_ms={"retrieve.embed": 5.0, "rank": 1.0},
            first_token_ms=250.0,
            input_tokens=700,
            output_tokens=90,
        )
    )
    metrics.request_traced(
        RequestTrace(
            request_id="r2",
            started_ns=0,
            outcome="error",
            model="claude-x",
            error=TraceError(code="provider_unavailable", message=""),
        )
    )

    assert sample(metrics, "kb_answers_total", outcome="done") == 1
    assert sample(metrics, "kb_answers_total", outcome="error") == 1
    assert sample(metrics, "kb_answer_errors_total", code="provider_unavailable") == 1
    assert sample(metrics, "kb_retrievals_total", status="empty") == 1
    assert sample(metrics, "kb_stage_duration_seconds_sum", stage="generate") == pytest.approx(0.4)
    assert sample(metrics, "kb_stage_duration_seconds_count", stage="retrieve.embed") == 1
    assert sample(metrics, "kb_stage_duration_seconds_count", stage="rank") is None  # stages come from stages
    assert sample(metrics, "kb_time_to_first_token_seconds_sum", model="claude-x") == pytest.approx(0.25)
    assert sample(metrics, "kb_model_tokens_total", model="claude-x", type="input") == 700
    assert sample(metrics, "kb_model_tokens_total", model="claude-x", type="output") == 90
    assert sample(metrics, "kb_answer_cache_lookups_total", result="miss") == 2


def test_a_cached_answer_is_a_cache_hit_and_spends_no_model_tokens() -> None:
    metrics = Metrics()
    metrics.request_traced(
        RequestTrace(
            request_id="r",
            started_ns=0,
            outcome="cached",
            cached=True,
            model="m",
            input_tokens=5,
            output_tokens=5,
        )
    )
    assert sample(metrics, "kb_answer_cache_lookups_total", result="hit") == 1
    assert sample(metrics, "kb_model_tokens_total", model="m", type="input") is None


def test_exposition_is_the_prometheus_text_format_of_every_series() -> None:
    metrics = Metrics()
    metrics.ingested(chunks=12, failed=1)
    body, content_type = metrics.exposition()

    assert content_type.startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    assert families["kb_ingest_chunks"].samples[0].value == 12
    assert {
        "kb_http_requests",
        "kb_active_streams",
        "kb_retrieval_queue_depth",
        "kb_time_to_first_token_seconds",
    } <= families.keys()


_WORKER = """
import sys
from app.observability import Metrics
metrics = Metrics(multiprocess_dir=sys.argv[1])
metrics.rate_limit_refused("requests")
metrics.stream_opened()
metrics.request_finished(route="/ask", method="POST", status=200, duration_s=0.5)
"""


def test_in_multiprocess_mode_a_scrape_adds_up_every_worker(tmp_path: Path) -> None:
    # Two worker processes, as ``kb serve --workers 2`` runs them: the variable is set before
    # prometheus-client is imported, which is what selects its multiprocess mode.
    environ = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", _WORKER, str(tmp_path)], env=environ, check=True, timeout=60)

    scraped = exposition_registry(Metrics().registry, str(tmp_path))

    assert scraped.get_sample_value("kb_rate_limit_refusals_total", {"limit": "requests"}) == 2
    assert (
        scraped.get_sample_value(
            "kb_http_requests_total", {"route": "/ask", "method": "POST", "status": "200"}
        )
        == 2
    )
    assert (
        scraped.get_sample_value(
            "kb_http_request_duration_seconds_count", {"route": "/ask", "method": "POST"}
        )
        == 2
    )
    # Live gauges count live processes only; these two have exited without saying so, which
    # is why a worker marks itself dead at shut-down (``Metrics.close``).
    assert scraped.get_sample_value("kb_active_streams") == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_kb_serve_with_workers_sets_up_multiprocess_mode_and_serves_the_port_from_the_supervisor() -> None:
    port = _free_port()
    environ: dict[str, str] = {}
    with worker_metrics(ObservabilitySettings(metrics_port=port), workers=2, environ=environ):
        folder = environ["PROMETHEUS_MULTIPROC_DIR"]
        worker_env = {**os.environ, **environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", _WORKER, folder], env=worker_env, check=True, timeout=60)
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert scrape.status_code == 200
    assert 'kb_rate_limit_refusals_total{limit="requests"} 1.0' in scrape.text
    assert "PROMETHEUS_MULTIPROC_DIR" not in environ and not Path(folder).exists()  # its own, removed

    with worker_metrics(ObservabilitySettings(), workers=1, environ=environ):
        assert environ == {}  # one worker: its own registry is the whole truth
