"""``embedding.device`` made concrete: a torch device, or ONNX Runtime execution providers.

Checked before the model loads, so a device that is not there is one clear
``EmbeddingModelError`` at start, not a torch traceback on the first ``encode``.
"""

from __future__ import annotations

from typing import Any

from app.errors import EmbeddingModelError

__all__ = ["onnx_providers", "torch_device"]

_CPU_PROVIDER = "CPUExecutionProvider"
_CUDA_PROVIDER = "CUDAExecutionProvider"


def torch_device(requested: str) -> str:
    """The torch device for ``requested`` (``cpu``, ``auto``, ``cuda``, ``cuda:N``, ``mps``).

    ``auto`` is the first CUDA device when torch sees one, else the CPU (never MPS: ask for it).
    """
    if requested == "cpu":
        return "cpu"
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if cuda else "cpu"
    if requested == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise EmbeddingModelError(
                f"embedding.device = 'mps' but torch {torch.__version__} has no MPS device here "
                "(Apple silicon only); set embedding.device to 'cpu' or 'auto'"
            )
        return "mps"
    if requested.startswith("cuda"):
        index = int(requested.partition(":")[2] or 0)
        count = torch.cuda.device_count() if cuda else 0
        if index >= count:
            seen = f"{count} CUDA device(s)" if count else "no CUDA device"
            build = " (a CPU-only build)" if torch.version.cuda is None else ""
            raise EmbeddingModelError(
                f"embedding.device = {requested!r} but torch {torch.__version__}{build} sees {seen}; "
                "set embedding.device to 'cpu' or 'auto'"
            )
        return requested
    raise EmbeddingModelError(f"embedding.device = {requested!r} is not a device this project knows")


def onnx_providers(requested: str, available: list[str]) -> list[Any]:
    """ONNX Runtime execution providers for ``requested``, given the ``available`` ones.

    The ONNX backends run on the CPU. ``auto`` uses CUDA only where ONNX Runtime offers its CUDA
    provider (the ``onnxruntime-gpu`` build); ``cuda``/``cuda:N`` require it; there is no MPS.
    The CPU provider is always listed last, for the operators CUDA does not implement.
    """
    has_cuda = _CUDA_PROVIDER in available
    if requested == "cpu" or (requested == "auto" and not has_cuda):
        return [_CPU_PROVIDER]
    if requested == "auto":
        return [_CUDA_PROVIDER, _CPU_PROVIDER]
    if requested.startswith("cuda"):
        if not has_cuda:
            raise EmbeddingModelError(
                f"embedding.device = {requested!r} with an ONNX backend needs ONNX Runtime's "
                f"{_CUDA_PROVIDER} (the onnxruntime-gpu package); this ONNX Runtime offers "
                f"{', '.join(available) or 'none'}. Set embedding.device to 'cpu', or "
                "embedding.backend to 'torch'"
            )
        index = int(requested.partition(":")[2] or 0)
        return [(_CUDA_PROVIDER, {"device_id": index}), _CPU_PROVIDER]
    raise EmbeddingModelError(
        f"embedding.device = {requested!r} is not available to the ONNX backends (CPU, or CUDA "
        "with onnxruntime-gpu); use embedding.backend = 'torch' for it"
    )
