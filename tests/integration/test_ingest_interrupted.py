"""A run killed half-way (SIGKILL or Ctrl-C) is finished by the next run: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.store import open_store
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
    """Read progress lines until ``files`` documents were handed to the embedder."""
    deadline = time.monotonic() + timeout
    seen = 0
    assert process.stderr is not None
    while seen < files:
        assert time.monotonic() < deadline, "ingestion made no progress"
        line = process.stderr.readline()
        assert line, f"ingest exited early with {process.wait()}"
        if "] new: " in line:
            seen += 1


def finish_and_check(corpus: Path, settings, embedder) -> None:
    store = open_store(settings)
    try:
        report = Ingestor(store, embedder, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
            [corpus]
        )
        assert report.unchanged > 0, "the killed run should have finished some documents"
        assert report.new + report.changed > 0, "the kill should have left work for this run"
        assert report.unchanged + report.new + report.changed == 40
        states = store.document_states()
        assert len(states) == 40
        for state in states.values():
            assert len(state.points) == 1, f"{state.source}: {state.points}"
            (doc_hash,) = state.points
            assert state.is_complete(doc_hash)
        assert store.count() == sum(next(iter(s.points.values())) for s in states.values())
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
    finish_and_check(corpus, settings, embedder)
