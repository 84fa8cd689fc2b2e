"""The ONNX backends on the real model: exported once, reused, close to torch, never mixed with it."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from click.testing import CliRunner

from app.cli import cli
from app.config import load_settings
from app.embedding import OnnxEmbedder, SentenceTransformerEmbedder, build_embedder
from app.embedding.export import MANIFEST_FILE, MODEL_FILE, export_folder, read_manifest
from app.errors import EmbeddingModelError, ModelMismatchError
from app.records import ChunkRecord
from app.services import open_checked_store
from app.settings import EmbeddingSettings, Settings
from app.store import QdrantStore, open_store
from ingest.runner import Ingestor

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIXED = Path(__file__).parents[1] / "data" / "mixed"
INT8 = EmbeddingSettings(backend="onnx-int8")

PARAGRAPHS = [
    "How do I rotate the API keys of the staging cluster?",
    "The quarterly report is due on the first Monday after the quarter closes; finance collects "
    "the department figures the week before and checks them against the ledger.",
    "Kubernetes liveness probes restart a container that stops answering; readiness probes only "
    "take it out of the load balancer until it answers again. Use readiness for slow start-ups.",
    "Backups run nightly at 02:00 UTC and are kept for thirty days. A restore is requested through "
    "the operations queue and is tested once a month on a scratch database, so that the procedure "
    "is known to work before it is needed. " * 3,
    "Bonjour, où se trouve la salle de réunion du troisième étage ?",
]


@pytest.fixture(scope="session")
def onnx_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose ``models/`` receives the one int8 export of the session."""
    return tmp_path_factory.mktemp("onnx-data")


@pytest.fixture(scope="session")
def int8(onnx_data: Path) -> OnnxEmbedder:
    return OnnxEmbedder(INT8, models_dir=onnx_data / "models")


def settings_in(data: Path, collection: str, **embedding: str) -> Settings:
    environ = {"KB_DATA_DIR": str(data), "KB_STORE__COLLECTION": collection}
    environ.update({f"KB_EMBEDDING__{key.upper()}": value for key, value in embedding.items()})
    return load_settings(environ=environ)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(a * b, axis=1))  # both are unit length


def test_the_int8_export_is_made_once_into_the_data_folder_and_reused(
    int8: OnnxEmbedder, onnx_data: Path
) -> None:
    folder = export_folder(onnx_data / "models", "all-MiniLM-L6-v2", "onnx-int8")
    assert int8.folder == folder
    manifest = read_manifest(folder)
    assert manifest is not None and manifest.backend == "onnx-int8" and manifest.dimension == 384
    before = (folder / MODEL_FILE).stat()

    again = build_embedder(settings_in(onnx_data, "unused", backend="onnx-int8"))

    after = (folder / MODEL_FILE).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not exported again
    assert sorted(p.name for p in (onnx_data / "models").iterdir() if not p.name.endswith(".lock")) == [
        folder.name
    ]
    assert again.model_name == "all-MiniLM-L6-v2 (onnx-int8)"
    np.testing.assert_allclose(again.embed(PARAGRAPHS), int8.embed(PARAGRAPHS), atol=1e-5)


def test_int8_vectors_are_close_to_torch_and_the_tokenizer_is_the_same(
    int8: OnnxEmbedder, embedder: SentenceTransformerEmbedder
) -> None:
    quantized, full = int8.embed(PARAGRAPHS), embedder.embed(PARAGRAPHS)
    assert quantized.shape == full.shape == (len(PARAGRAPHS), 384)
    assert quantized.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(quantized, axis=1), 1.0, rtol=1e-5)
    assert cosines(quantized, full).min() > 0.97
    # One text alone and in a padded batch get nearly the same vector: the attention mask is
    # honoured, and only int8's activation scales (computed over each batch) differ.
    alone = np.stack([int8.embed([text])[0] for text in PARAGRAPHS])
    assert cosines(alone, quantized).min() > 0.98
    assert int8.embed([]).shape == (0, 384)
    assert (int8.dimension, int8.max_tokens) == (embedder.dimension, embedder.max_tokens)
    for text in PARAGRAPHS:
        assert int8.count(text) == embedder.count(text)
        assert int8.offsets(text) == embedder.offsets(text)


class CountingTokenizer:
    """The embedder's model tokenizer, remembering the size of every batch it tokenizes."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.batches: list[int] = []

    def __call__(self, texts: Sequence[str], **options: Any) -> Any:
        self.batches.append(len(texts))
        return self.tokenizer(texts, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


@pytest.fixture
def counted(int8: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch) -> CountingTokenizer:
    """Every batch the session's int8 embedder tokenizes for the graph, for one test."""
    counting = CountingTokenizer(int8._tokenizer)
    monkeypatch.setattr(int8, "_tokenizer", counting)
    return counting


def test_int8_embed_ids_gives_exactly_the_vectors_of_embed(
    int8: OnnxEmbedder, embedder: SentenceTransformerEmbedder, counted: CountingTokenizer
) -> None:
    # More texts than one model batch (64), of many lengths, so sorting and padding both matter.
    words = "the agent copies nightly snapshots to object storage while operators watch".split()
    texts = [" ".join(words[: 1 + i % len(words)]) * (1 + i % 7) for i in range(150)]
    texts += ["word " * 400]  # over the input limit: the tokenizer's truncation must apply
    ids: list[list[int] | None] = [int8.ids(text) for text in texts]
    for text, found in zip(texts[:20], ids[:20], strict=True):
        assert found == embedder.ids(text)  # the same tokenizer as torch's
        assert found == list(int8._tokenizer.tokenizer(text, add_special_tokens=False)["input_ids"])
    expected = int8.embed(texts)
    assert counted.batches == [64, 64, 23]
    counted.batches.clear()

    assert np.array_equal(int8.embed_ids(texts, ids), expected)
    # Only the batch with the text over the limit (the longest: the first) was tokenized.
    assert counted.batches == [64]
    counted.batches.clear()
    # A text without ids sends its own batch (the shortest text: the last) to the tokenizer.
    shortest = min(range(len(texts)), key=lambda i: len(texts[i]))
    one_missing = [None if i == shortest else found for i, found in enumerate(ids)]
    assert np.array_equal(int8.embed_ids(texts, one_missing), expected)
    assert counted.batches == [64, 23]
    counted.batches.clear()
    # Texts without ids in every batch: every batch is tokenized, as by embed.
    some = [found if i % 3 else None for i, found in enumerate(ids)]
    assert np.array_equal(int8.embed_ids(texts, some), expected)
    assert counted.batches == [64, 64, 23]
    counted.batches.clear()
    # The text over the limit alone, with its ids: cut by the tokenizer, as embed does.
    assert np.array_equal(int8.embed_ids(texts[-1:], ids[-1:]), int8.embed(texts[-1:]))

    assert int8.embed_ids([], []).shape == (0, 384)
    with pytest.raises(ValueError, match="token id lists"):
        int8.embed_ids(texts[:2], ids[:1])


def test_ingesting_with_int8_tokenizes_each_chunk_once(
    int8: OnnxEmbedder,
    counted: CountingTokenizer,
    settings: Settings,
    store: QdrantStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: list[tuple[list[ChunkRecord], np.ndarray]] = []
    upsert = store.upsert

    def recording(records: Sequence[ChunkRecord], dense: np.ndarray, *args: Any, **kwargs: Any) -> None:
        written.append((list(records), dense.copy()))
        upsert(records, dense, *args, **kwargs)

    monkeypatch.setattr(store, "upsert", recording)
    report = Ingestor(store, int8, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
        [MIXED / "guide.md", MIXED / "notes.txt"]
    )

    assert report.chunks_written > 0
    assert sum(len(records) for records, _ in written) == report.chunks_written
    # Chunking took each chunk's ids from the tokenizer; the model was given them, not the texts.
    assert counted.batches == []
    for records, dense in written:
        assert np.array_equal(dense, int8.embed([record.embedding_text() for record in records]))


def test_a_store_filled_by_one_backend_refuses_the_other(
    int8: OnnxEmbedder, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    for collection, writer, reader in (("by-torch", embedder, int8), ("by-int8", int8, embedder)):
        settings = settings_in(tmp_path, collection)
        store = open_store(settings)
        try:
            report = Ingestor(store, writer, chunking=settings.chunking, ingest=settings.ingest).ingest_paths(
                [MIXED / "guide.md"]
            )
            assert report.chunks_written > 0
        finally:
            store.close()
        with pytest.raises(ModelMismatchError) as refused:
            open_checked_store(settings, reader)
        message = refused.value.message
        assert repr(writer.model_name) in message and repr(reader.model_name) in message
        # The backend that filled it opens it as before.
        open_checked_store(settings, writer).close()


def test_kb_ingest_with_another_backend_is_refused_with_a_clear_error(
    int8: OnnxEmbedder, onnx_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(MIXED / "guide.md", docs)
    monkeypatch.setenv("KB_DATA_DIR", str(onnx_data))  # its models/ has the session's export
    monkeypatch.setenv("KB_STORE__COLLECTION", "cli-switch")
    monkeypatch.setenv("KB_EMBEDDING__BACKEND", "onnx-int8")
    first = CliRunner().invoke(cli, ["ingest", str(docs), "--json", "--quiet"])
    assert first.exit_code == 0, first.output
    assert msgspec.json.decode(first.stdout)["chunks_written"] > 0

    monkeypatch.setenv("KB_EMBEDDING__BACKEND", "torch")
    second = CliRunner().invoke(cli, ["ingest", str(docs), "--json", "--quiet"])
    assert second.exit_code == 1
    assert "'all-MiniLM-L6-v2 (onnx-int8)'" in second.output
    assert "the configured model is 'all-MiniLM-L6-v2'" in second.output


def test_an_interrupted_export_is_never_used(int8: OnnxEmbedder, tmp_path: Path) -> None:
    models = tmp_path / "models"
    folder = export_folder(models, "all-MiniLM-L6-v2", "onnx-int8")
    # What a crash can leave: a half-written temporary folder, with a manifest and all...
    leftover = models / f".{folder.name}.tmp-999999-dead"
    leftover.mkdir(parents=True)
    (leftover / MODEL_FILE).write_bytes(b"half an onnx graph")
    shutil.copy(int8.folder / MANIFEST_FILE, leftover / MANIFEST_FILE)
    # ... and, from a copy or a manual clean-up, a folder at the final place without its manifest.
    folder.mkdir()
    (folder / MODEL_FILE).write_bytes(b"not a model")

    rebuilt = OnnxEmbedder(INT8, models_dir=models)

    assert read_manifest(folder) is not None
    assert (folder / MODEL_FILE).stat().st_size > 1_000_000
    assert not leftover.exists()
    assert not [p for p in models.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert cosines(rebuilt.embed(PARAGRAPHS), int8.embed(PARAGRAPHS)).min() > 0.999


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Path]:
    """Another exporter of the same model, as far as the lock says."""
    models = tmp_path / "models"
    models.mkdir()
    folder = export_folder(models, "all-MiniLM-L6-v2", "onnx-int8")
    fd = os.open(models / f".{folder.name}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield models
    os.close(fd)


def test_an_export_held_by_another_process_times_out_with_a_clear_error(held_lock: Path) -> None:
    with pytest.raises(EmbeddingModelError, match="another process has been exporting"):
        OnnxEmbedder(INT8, models_dir=held_lock, lock_timeout_s=0.5)
    assert list(held_lock.iterdir()) == [next(held_lock.glob("*.lock"))]


def test_a_models_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data folder should be")
    with pytest.raises(EmbeddingModelError, match="cannot create the models folder"):
        build_embedder(settings_in(blocked, "unused", backend="onnx"))


def test_a_model_that_cannot_be_loaded_is_a_clear_error_and_leaves_no_export(tmp_path: Path) -> None:
    missing = EmbeddingSettings(model=str(tmp_path / "no-such-model"), backend="onnx")
    with pytest.raises(EmbeddingModelError, match="cannot load embedding model"):
        OnnxEmbedder(missing, models_dir=tmp_path / "models")
    assert [p.name for p in (tmp_path / "models").iterdir()] == [
        f".{export_folder(tmp_path / 'models', missing.model, 'onnx').name}.lock"
    ]
