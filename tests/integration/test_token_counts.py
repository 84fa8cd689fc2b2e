"""Token counts do not wait for the model (their own tokenizer copy and lock), agree with the
model's tokenizer, and token ids handed to the model give the vectors of its own tokenization."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.embedding import SentenceTransformerEmbedder

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_counting_tokens_does_not_wait_while_the_model_is_encoding(
    embedder: SentenceTransformerEmbedder,
) -> None:
    expected = embedder.count("How do I ingest documents?")
    counted: list[int] = []
    # Keep the model's thread busy as a long encode would, and count from another thread meanwhile.
    release = threading.Event()
    busy = embedder._runner.submit(release.wait, 30)
    try:
        worker = threading.Thread(target=lambda: counted.append(embedder.count("How do I ingest documents?")))
        worker.start()
        worker.join(timeout=10)
        assert counted == [expected], "the count waited for the model"
    finally:
        release.set()
        busy.result(timeout=30)
    assert expected == len(embedder.offsets("How do I ingest documents?"))


TEXTS = [
    "How do I ingest documents?",
    "Ünïcode, accents and 中文 characters; tabs\tand\nnew lines.",
    "x" * 3000,  # over the model's limit: a count is of the whole text, a model input is cut
    "",
    "   leading and trailing spaces   ",
]


def test_ids_counts_and_offsets_match_the_transformers_tokenizer(
    embedder: SentenceTransformerEmbedder,
) -> None:
    tokenizer = embedder._tokenizer  # the model's own, called the ordinary way
    for text in TEXTS:
        expected = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        assert embedder.ids(text) == list(expected["input_ids"])
        assert embedder.count(text) == len(expected["input_ids"])
        assert embedder.offsets(text) == [tuple(span) for span in expected["offset_mapping"]]


def test_embed_ids_gives_exactly_the_vectors_of_embed(embedder: SentenceTransformerEmbedder) -> None:
    # More texts than one model batch, of many lengths, so sorting and padding both matter.
    words = "the agent copies nightly snapshots to object storage while operators watch".split()
    texts = [" ".join(words[: 1 + i % len(words)]) * (1 + i % 7) for i in range(150)]
    texts += ["word " * 400]  # over the input limit: the tokenizer's truncation must apply
    ids: list[list[int] | None] = [embedder.ids(text) for text in texts]
    expected = embedder.embed(texts)

    assert np.array_equal(embedder.embed_ids(texts, ids), expected)
    # Texts without ids are tokenized by the model; their batches take that route.
    some = [found if i % 3 else None for i, found in enumerate(ids)]
    assert np.array_equal(embedder.embed_ids(texts, some), expected)
    assert "preprocess" not in vars(embedder._model)  # the model is left as it was
