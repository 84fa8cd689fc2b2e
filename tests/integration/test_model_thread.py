"""The torch embedder runs its model on one thread of its own, whoever calls it.

Torch's OpenMP runtime keeps a team of worker threads per calling thread and stops spin-waiting
once it manages more threads than cores, so a model called from two threads (the lifespan's
warm-up, the question batcher) ran every forward pass on sleeping workers. The rule is checked
where it matters: on the thread the model's forward pass actually runs on.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.embedding import EmbeddingBatcher, SentenceTransformerEmbedder
from app.settings import EmbeddingSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def recorded() -> tuple[SentenceTransformerEmbedder, list[str]]:
    """A fresh embedder (its own model thread) and the names of the threads its forward runs on."""
    embedder = SentenceTransformerEmbedder(EmbeddingSettings())
    threads: list[str] = []
    embedder._model.register_forward_pre_hook(lambda *_: threads.append(threading.current_thread().name))
    return embedder, threads


def test_calls_from_many_threads_run_the_model_on_one_thread(
    recorded: tuple[SentenceTransformerEmbedder, list[str]],
) -> None:
    embedder, threads = recorded
    embedder.embed(["from the main thread"])
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda n: embedder.embed([f"from a worker {n}"]), range(6)))
    batcher = EmbeddingBatcher(embedder)
    try:
        batcher.embed(["through the question batcher"])
        batcher.background.embed(["through the background lane"])
    finally:
        batcher.close()

    assert len(threads) == 9
    assert len(set(threads)) == 1
    assert threads[0].startswith("kb-model")
    assert threading.current_thread().name not in threads


def test_the_model_thread_gives_the_same_vectors_and_errors_as_a_direct_call(
    recorded: tuple[SentenceTransformerEmbedder, list[str]],
) -> None:
    embedder, _ = recorded
    texts = ["alpha beta", "a longer sentence about the store lock and its error"]
    direct = embedder._encode(texts)  # the model called on this thread, bypassing the runner
    np.testing.assert_array_equal(embedder.embed(texts), direct)
    ids = [embedder.ids(text) for text in texts]
    np.testing.assert_array_equal(embedder.embed_ids(texts, ids), direct)

    def broken(*_: object) -> None:
        raise RuntimeError("the model failed")

    handle = embedder._model.register_forward_pre_hook(broken)
    try:
        with pytest.raises(RuntimeError, match="the model failed"):
            embedder.embed(["anything"])
    finally:
        handle.remove()
    np.testing.assert_array_equal(embedder.embed(texts), direct)  # the thread survives a failure
