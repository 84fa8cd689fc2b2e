"""A run killed half-way (SIGKILL or Ctrl-C) is finished by the next run: nothing lost, nothing twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from app.store import DEFAULT_TENANT, open_store
from ingest.report import IngestReport
from ingest.runner import Ingestor

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def write_corpus(root: Path, files: int = 40) -> None:
    root.mkdir()
    for n in range(files):
        paragraphs = [
            " ".join(f"{WORDS[(n + i + j) % len(WORDS)]}{n}" for j in range(60)) + "." for i in range(4)
        ]
        (root / f"doc{n:03d}.md").write_text(
            f"# Document {n}\n\n## Part\n\n" + "\n\n".join(paragraphs) + "\n"
        )


def start_ingest(corpus: Path, data_dir: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KB_DATA_DIR": str(data_dir),
        "KB_INGEST__ENCODE_BATCH_SIZE": "16",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "ingest", str(corpus)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_progress(process: subprocess.Popen[str], files: int, timeout: float = 120.0) -> None:
    """Read progress lines until ``files`` documents were written."""
    deadline = time.monotonic() + timeout
    seen = 0
    assert process.stderr is not None
    while seen < files:
        assert time.monotonic() < deadline, "ingestion made no progress"
        line = process.stderr.readline()
        assert line, f"ingest exited early with {process.wait()}"
        if "] new: " in line:
            seen += 1


def finish_and_check(corpus: Path, settings, embedder) -> IngestReport:
    """Run again over the same store; check it then holds every document once, complete."""
    store = open_store(settings)
    try:
        report = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
            [corpus]
        )
        assert report.unchanged > 0, "the killed run should have finished some documents"
        assert report.new + report.changed > 0, "the kill should have left work for this run"
        assert report.unchanged + report.new + report.changed == 40
        states = store.document_states(tenant=DEFAULT_TENANT)
        assert len(states) == 40
        for state in states.values():
            assert len(state.points) == 1, f"{state.source}: {state.points}"
            (doc_hash,) = state.points
            assert state.is_complete(doc_hash)
        assert store.count() == sum(next(iter(s.points.values())) for s in states.values())
        return report
    finally:
        store.close()


def test_sigkill_mid_run_then_rerun_completes_without_duplicates(tmp_path: Path, settings, embedder) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    process = start_ingest(corpus, Path(settings.data_dir))
    try:
        wait_for_progress(process, files=20)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    finish_and_check(corpus, settings, embedder)


def test_ctrl_c_stops_cleanly_with_exit_130_and_the_rerun_finishes(
    tmp_path: Path, settings, embedder
) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    process = start_ingest(corpus, Path(settings.data_dir))
    try:
        wait_for_progress(process, files=20)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in (stdout + stderr)
    summary = re.search(r"files seen 40: new (\d+), changed 0,", stdout)
    assert summary, stdout
    rerun = finish_and_check(corpus, settings, embedder)
    # The summary counts what was written, not what was queued: exactly what the rerun finds done.
    assert int(summary.group(1)) == rerun.unchanged


class CtrlCDuringEncoding:
    """The real model; Ctrl-C arrives while batch number ``at`` is being encoded (where a run
    spends nearly all of its time)."""

    def __init__(self, model, at: int) -> None:
        self.model = model
        self.at = at
        self.batches = 0

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def embed(self, texts):
        self.batches += 1
        if self.batches == self.at:
            raise KeyboardInterrupt
        return self.model.embed(texts)


def test_an_interrupted_run_reports_as_new_exactly_the_documents_it_completed(
    tmp_path: Path, store, settings, embedder
) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus, files=12)
    small_batches = msgspec.structs.replace(settings.ingest, encode_batch_size=8)

    def run(model) -> IngestReport:
        return Ingestor(store, model, chunking=settings.chunking, ingest=small_batches).ingest_paths([corpus])

    interrupted = run(CtrlCDuringEncoding(embedder, at=3))
    in_store = store.count()
    rerun = run(embedder)

    assert interrupted.interrupted
    assert 0 < interrupted.new < 12, "the interruption should fall mid-run"
    assert rerun.unchanged == interrupted.new
    assert rerun.new == 12 - interrupted.new
    assert f"new {interrupted.new}," in interrupted.summary_lines()[0]
    assert interrupted.chunks_written == in_store
