"""Token counts do not wait for the model: they have their own tokenizer copy and lock."""

from __future__ import annotations

import threading

import pytest

from app.embedding import SentenceTransformerEmbedder

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_counting_tokens_does_not_wait_while_the_model_is_encoding(
    embedder: SentenceTransformerEmbedder,
) -> None:
    expected = embedder.count("How do I ingest documents?")
    counted: list[int] = []
    # Hold the model's lock as a long encode would, and count from another thread meanwhile.
    with embedder._lock:
        worker = threading.Thread(target=lambda: counted.append(embedder.count("How do I ingest documents?")))
        worker.start()
        worker.join(timeout=10)
        assert counted == [expected], "the count waited for the model's lock"
    assert expected == len(embedder.offsets("How do I ingest documents?"))
