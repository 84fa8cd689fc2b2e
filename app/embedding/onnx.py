"""``OnnxEmbedder``: the model's ONNX export (fp32 or int8) run by ONNX Runtime.

The export is made once into the data folder (``app.embedding.export``); after that a start
loads only the tokenizer and the ONNX graph, not the torch weights. Vectors match the torch
backend's closely but not exactly, so the embedder's ``model_name`` carries the backend
(``all-MiniLM-L6-v2 (onnx-int8)``): a collection filled by one backend refuses the other
(``ModelMismatchError``) instead of mixing their vectors.

Like the torch backend, it takes the token ids ingestion has already counted (``embed_ids``) and
builds the graph's inputs from them (``TokenFrame``) instead of tokenizing those texts again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.embedding.device import onnx_providers
from app.embedding.export import EXPORT_LOCK_TIMEOUT_S, MODEL_FILE, OUTPUT_NAME, ensure_export
from app.embedding.tokens import TextTokenizer, token_frame
from app.errors import EmbeddingModelError
from app.settings import EmbeddingSettings

__all__ = ["OnnxEmbedder", "backend_model_name"]


def backend_model_name(model: str, backend: str) -> str:
    """The name a collection records: the model, and the backend unless it is torch (whose
    name stays the bare model name, as stores made before backends existed recorded it)."""
    return model if backend == "torch" else f"{model} ({backend})"


class OnnxEmbedder:
    """``Embedder`` for ``embedding.backend = onnx | onnx-int8``."""

    def __init__(
        self,
        settings: EmbeddingSettings,
        *,
        models_dir: Path,
        lock_timeout_s: float = EXPORT_LOCK_TIMEOUT_S,
    ) -> None:
        """``models_dir`` holds the exports (``<data_dir>/models``); ``lock_timeout_s`` bounds the
        wait for another process exporting the same model."""
        if settings.backend == "torch":
            raise ValueError("OnnxEmbedder runs the ONNX backends; torch is SentenceTransformerEmbedder")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EmbeddingModelError(
                f"embedding.backend = {settings.backend!r} needs onnxruntime and onnx, which are not "
                f"installed ({exc}); run scripts/setup, or set embedding.backend = 'torch'"
            ) from exc
        # Checked before exporting: a device that is not there must not cost an export first.
        providers = onnx_providers(settings.device, list(ort.get_available_providers()))
        folder, manifest = ensure_export(settings, models_dir, lock_timeout_s=lock_timeout_s)
        try:
            from transformers import AutoTokenizer

            options = ort.SessionOptions()
            options.log_severity_level = 3  # its warnings go to stderr, around the structured logs
            self._session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=providers)
            self._tokenizer: Any = AutoTokenizer.from_pretrained(str(folder))
        except Exception as exc:  # a damaged export (the folder is only ever complete or absent)
            raise EmbeddingModelError(
                f"cannot load the ONNX export of {settings.model!r} at {folder}: {exc}; delete that "
                "folder and start again to export it afresh"
            ) from exc
        self.backend = settings.backend
        self.folder = folder
        self.providers: list[str] = list(self._session.get_providers())
        self.model_name = backend_model_name(settings.model, settings.backend)
        self.dimension = manifest.dimension
        self._max_length = manifest.max_seq_length
        self.max_tokens = manifest.max_seq_length - self._tokenizer.num_special_tokens_to_add(pair=False)
        self._input_names = manifest.input_names
        self._batch_size = settings.batch_size
        # The fast tokenizer is not safe to share between threads ("Already borrowed"); one lock
        # serialises the model's calls, as in the torch backend, and counts use their own copy.
        self._lock = threading.Lock()
        self._text = TextTokenizer(self._tokenizer)
        self._frame = token_frame(self._tokenizer)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, None)

    def embed_ids(self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]) -> np.ndarray:
        """``embed(texts)``, given the token ids (no special tokens, as ``ids`` returns them) of
        any of ``texts`` that the caller has already tokenized: ingestion counts every chunk
        with the model's tokenizer, and tokenizing it again here would repeat that work. A batch
        with a text without ids, or with one over the model's input limit, is tokenized as
        ``embed`` does; the vectors are the same either way (same inputs, same batches, same
        order)."""
        if len(token_ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(token_ids)} token id lists")
        return self._embed(texts, token_ids)

    def _embed(self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None] | None) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        # Longest first, as sentence-transformers does, so each batch pads to similar lengths.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        with self._lock:
            for start in range(0, len(order), self._batch_size):
                picked = order[start : start + self._batch_size]
                feeds = self._feeds_from_ids(picked, token_ids) if token_ids is not None else None
                if feeds is None:
                    encoded = self._tokenizer(
                        [texts[i] for i in picked],
                        padding=True,
                        truncation="longest_first",
                        max_length=self._max_length,
                        return_tensors="np",
                    )
                    feeds = {name: encoded[name].astype(np.int64, copy=False) for name in self._input_names}
                (batch,) = self._session.run([OUTPUT_NAME], feeds)
                vectors[picked] = batch
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    def _feeds_from_ids(
        self, picked: np.ndarray, token_ids: Sequence[Sequence[int] | None]
    ) -> dict[str, np.ndarray] | None:
        """The graph's feeds for the texts at ``picked``, built from their ids as the tokenizer
        would build them, or ``None`` (tokenize this batch) when one has no ids, one is over the
        input limit, or the tokenizer is not one ``TokenFrame`` reproduces."""
        if self._frame is None:
            return None
        batch = [token_ids[i] for i in picked]
        known = [ids for ids in batch if ids is not None]
        if len(known) < len(batch):
            return None
        inputs = self._frame.inputs(known, limit=self._max_length)
        if inputs is None or any(name not in inputs for name in self._input_names):
            return None
        return {name: inputs[name] for name in self._input_names}

    def count(self, text: str) -> int:
        return self._text.count(text)

    def ids(self, text: str) -> list[int]:
        return self._text.ids(text)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self._text.offsets(text)
