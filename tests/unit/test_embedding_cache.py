"""The query-embedding LRU: a repeated question skips the model, the least recently used vector
goes first, the cache is safe across threads and its vectors cannot be changed through it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.embedding import QueryEmbeddingCache


class CountingModel:
    """An ``Embedder`` whose vector of a text is derived from the text; it counts what it encodes."""

    model_name = "counting"
    dimension = 4
    max_tokens = 128

    def __init__(self) -> None:
        self.encoded: list[str] = []
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            self.encoded.extend(texts)
        rows = [[len(t), sum(map(ord, t)) % 97, t.count(" "), 1.0] for t in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), self.dimension)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)

    def count(self, text: str) -> int:
        return len(text.split())

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def test_a_repeated_question_is_not_encoded_again() -> None:
    model = CountingModel()
    cache = QueryEmbeddingCache(model, size=8)

    first = cache.embed(["how do I ingest?"])
    again = cache.embed(["how do I ingest?"])

    assert model.encoded == ["how do I ingest?"]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, model.embed(["how do I ingest?"]))
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_batch_encodes_only_its_new_texts_once_each_and_keeps_the_order() -> None:
    model = CountingModel()
    cache = QueryEmbeddingCache(model, size=8)
    cache.embed(["b"])

    vectors = cache.embed(["a", "b", "a", "c"])

    assert model.encoded == ["b", "a", "c"]
    assert vectors.shape == (4, 4)
    np.testing.assert_array_equal(vectors, model.embed(["a", "b", "a", "c"]))


def test_the_least_recently_used_vector_is_dropped_first() -> None:
    model = CountingModel()
    cache = QueryEmbeddingCache(model, size=2)
    cache.embed(["one"])
    cache.embed(["two"])
    cache.embed(["one"])  # "two" is now the least recently used
    cache.embed(["three"])

    model.encoded.clear()
    cache.embed(["one"])
    cache.embed(["three"])
    cache.embed(["two"])

    assert model.encoded == ["two"]
    assert len(cache) == 2


def test_a_caller_cannot_change_a_cached_vector() -> None:
    cache = QueryEmbeddingCache(CountingModel(), size=2)
    vectors = cache.embed(["q"])
    vectors[0, 0] = 42.0  # the caller's own copy

    assert cache.embed(["q"])[0, 0] != 42.0


def test_an_empty_batch_is_an_empty_matrix_and_a_size_below_one_is_refused() -> None:
    assert QueryEmbeddingCache(CountingModel(), size=1).embed([]).shape == (0, 4)
    with pytest.raises(ValueError):
        QueryEmbeddingCache(CountingModel(), size=0)


def test_it_is_the_model_for_everything_else() -> None:
    model = CountingModel()
    cache = QueryEmbeddingCache(model, size=1)

    assert (cache.model_name, cache.dimension, cache.max_tokens) == ("counting", 4, 128)
    assert cache.count("a b c") == 3 and cache.offsets("ab") == [(0, 2)]


def test_threads_embedding_at_once_get_the_right_vectors_and_the_cache_stays_bounded() -> None:
    model = CountingModel()
    cache = QueryEmbeddingCache(model, size=16)
    questions = [f"question {i % 40}" for i in range(2000)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda q: (q, cache.embed([q])[0]), questions))

    for question, vector in results:
        np.testing.assert_array_equal(vector, model.embed([question])[0])
    assert len(cache) <= 16
    assert cache.hits + cache.misses == len(questions)


def test_cached_answers_only_when_every_text_is_held_and_counts_only_then() -> None:
    model = CountingModel()
    cache = QueryEmbeddingCache(model, size=8)
    cache.embed(["a", "b"])

    assert cache.cached(["a", "c"]) is None
    assert cache.cached([]) is None
    assert (cache.hits, cache.misses) == (0, 2)
    found = cache.cached(["b", "a"])
    assert found is not None
    np.testing.assert_array_equal(found, model.embed(["b", "a"]))
    assert (cache.hits, cache.misses) == (2, 2)
    assert model.encoded.count("a") == 2  # once by the cache's miss, once by this test's check


def test_cached_keeps_a_looked_up_vector_recent() -> None:
    model = CountingModel()
    cache = QueryEmbeddingCache(model, size=2)
    cache.embed(["old"])
    cache.embed(["newer"])
    assert cache.cached(["old"]) is not None  # now the most recent
    cache.embed(["newest"])  # evicts the least recently used: "newer"
    assert cache.cached(["old"]) is not None
    assert cache.cached(["newer"]) is None
