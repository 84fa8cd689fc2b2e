"""The ONNX export of a sentence-transformers model, made locally once and kept in the data folder.

``ensure_export`` returns ``<models_dir>/<model>-<backend>/`` holding ``model.onnx`` (the whole
model: transformer, pooling and normalisation, so ONNX Runtime returns sentence vectors), the
tokenizer's files and ``manifest.json``. The export is built in a temporary sibling folder and
renamed into place only when complete, so a crash or a kill never leaves a half export that a
later start would use: a folder without a valid manifest is not an export. One process exports at
a time (an ``flock`` per export, waited for up to ``lock_timeout_s``); the others find its result.

Why not sentence-transformers' own ``backend="onnx"``: it needs ``optimum-onnx``, whose
releases here pin transformers below the major version sentence-transformers requires. The same
two steps (``torch.onnx.export``, ONNX Runtime's dynamic quantization) are done here directly.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from app.embedding.sentence_transformers import load_sentence_transformer, resolve_model_location
from app.errors import EmbeddingModelError
from app.settings import EmbeddingSettings

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_LOCK_TIMEOUT_S",
    "MODEL_FILE",
    "ExportManifest",
    "ensure_export",
    "export_folder",
    "read_manifest",
]

EXPORT_FORMAT = 1
"""Raised when what an export holds changes, so older exports are made again."""

EXPORT_LOCK_TIMEOUT_S = 600.0
"""Longest wait for another process's export of the same model (an export takes seconds to a
few minutes on a loaded machine)."""

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
OUTPUT_NAME = "sentence_embedding"
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_OPSET = 17
# An export whose vectors for a sample sit this far from torch's is broken, not imprecise.
_MIN_SAMPLE_COSINE = {"onnx": 0.999, "onnx-int8": 0.9}
_SAMPLE = (
    "An export is checked on a sample before it is kept.",
    "Two texts of different lengths, so that the batch is padded and the mask matters.",
)


class ExportManifest(msgspec.Struct, frozen=True, kw_only=True):
    """What ``manifest.json`` records: written last, so its presence means the export is whole."""

    format: int
    model: str
    backend: str
    source: str
    """Fingerprint of the model the export was made from (its files' names and sizes)."""
    dimension: int
    max_seq_length: int
    input_names: tuple[str, ...]
    versions: dict[str, str]
    """Library versions that made it, for operators."""


def export_folder(models_dir: Path, model: str, backend: str) -> Path:
    """``<models_dir>/<model>-<backend>``, the model name made safe for a folder name."""
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in model).strip("-.") or "model"
    return models_dir / f"{safe[-80:]}-{backend}"


def source_fingerprint(location: str) -> str:
    """Names and sizes of the model's files (a local folder), or the hub name: a changed model
    (another package version) gets a new export, without hashing its weights at every start."""
    folder = Path(location)
    if not folder.is_dir():
        return f"name:{location}"
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder)}\0{path.stat().st_size}\0".encode())
    return "files:" + digest.hexdigest()[:16]


def read_manifest(folder: Path) -> ExportManifest | None:
    """The export's manifest, or None when ``folder`` holds no complete export."""
    try:
        manifest = msgspec.json.decode((folder / MANIFEST_FILE).read_bytes(), type=ExportManifest)
    except (OSError, msgspec.DecodeError):
        return None
    return manifest if (folder / MODEL_FILE).is_file() else None


def ensure_export(
    settings: EmbeddingSettings, models_dir: Path, *, lock_timeout_s: float = EXPORT_LOCK_TIMEOUT_S
) -> tuple[Path, ExportManifest]:
    """The export of ``settings.model`` for ``settings.backend``, made now if there is none.

    Raises ``EmbeddingModelError`` when the model cannot be loaded or exported, or when another
    process holds the export for longer than ``lock_timeout_s``.
    """
    backend = settings.backend
    if backend not in _MIN_SAMPLE_COSINE:
        raise EmbeddingModelError(f"embedding.backend = {backend!r} has no ONNX export")
    source = source_fingerprint(resolve_model_location(settings.model))
    folder = export_folder(models_dir, settings.model, backend)

    def usable() -> ExportManifest | None:
        found = read_manifest(folder)
        ok = (
            found is not None
            and found.format == EXPORT_FORMAT
            and (found.model, found.backend, found.source) == (settings.model, backend, source)
        )
        return found if ok else None

    found = usable()
    if found is not None:
        return folder, found
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddingModelError(f"cannot create the models folder {models_dir}: {exc}") from exc
    with _exclusive(models_dir / f".{folder.name}.lock", lock_timeout_s, folder):
        found = usable()  # made by the process we waited for
        if found is not None:
            return folder, found
        # Only the lock holder exports, so these are left by an export that was interrupted.
        for leftover in models_dir.glob(f".{folder.name}.tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        work = models_dir / f".{folder.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            work.mkdir()
            manifest = _export(settings, source, work)
            _replace(work, folder)
        except EmbeddingModelError:
            raise
        except Exception as exc:  # torch's exporter and ONNX Runtime raise many kinds
            raise EmbeddingModelError(
                f"cannot export embedding model {settings.model!r} to ONNX ({backend}) in {folder}: {exc}"
            ) from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return folder, manifest


@contextlib.contextmanager
def _exclusive(lock_path: Path, timeout_s: float, folder: Path) -> Iterator[None]:
    """Hold an ``flock`` on ``lock_path``, waiting up to ``timeout_s``; the kernel drops it when
    the process ends however it ends, so a crash leaves no stale lock."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EmbeddingModelError(
                        f"another process has been exporting the embedding model to {folder} for over "
                        f"{timeout_s:g} s (lock {lock_path}); let it finish, or stop it and start again"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def _replace(work: Path, folder: Path) -> None:
    """Put the finished export ``work`` at ``folder``; an outdated export there is removed."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        folder.rename(old)
    work.rename(folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _export(settings: EmbeddingSettings, source: str, work: Path) -> ExportManifest:
    import onnxruntime as ort
    import torch

    model = load_sentence_transformer(settings, device="cpu")
    tokenizer = model.tokenizer
    max_seq_length = model.max_seq_length
    dimension = model.get_embedding_dimension()
    if tokenizer is None or max_seq_length is None or dimension is None:
        raise EmbeddingModelError(
            f"embedding model {settings.model!r} is not a text model with a tokenizer, an input limit "
            "and a dimension; only such models have an ONNX backend here"
        )
    names = tuple(n for n in _INPUT_NAMES if n in tokenizer.model_input_names)
    if names[:2] != ("input_ids", "attention_mask"):
        raise EmbeddingModelError(
            f"embedding model {settings.model!r} takes {tokenizer.model_input_names}; the ONNX export "
            "needs input_ids and attention_mask"
        )

    class SentenceVectors(torch.nn.Module):
        """The whole sentence-transformers pipeline (transformer, pooling, normalisation) as one
        module of tensors, which is what ``torch.onnx.export`` traces."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, inputs, strict=True)))[OUTPUT_NAME]  # type: ignore[no-any-return]

    module = SentenceVectors().eval()
    sample = tokenizer(
        list(_SAMPLE),
        padding=True,
        truncation="longest_first",
        max_length=max_seq_length,
        return_tensors="pt",
    )
    inputs = tuple(sample[n] for n in names)
    fp32 = work / (MODEL_FILE if settings.backend == "onnx" else "model-fp32.onnx")
    dynamic: dict[str, Any] = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic[OUTPUT_NAME] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript-based exporter warns that it is the older of torch's two; it is the one
        # that needs nothing beyond torch and traces these models exactly.
        warnings.simplefilter("ignore")
        expected = module(*inputs).numpy()
        torch.onnx.export(
            module,
            inputs,
            str(fp32),
            input_names=list(names),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            opset_version=_OPSET,
            dynamo=False,
        )
    if settings.backend == "onnx-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-channel weight scales: per-tensor int8 moved all-MiniLM-L6-v2's vectors several
        # times further from fp32 (docs/embedding.md).
        root = logging.getLogger()
        # Its advice to pre-process first does not apply: that step's shape inference fails on
        # these graphs, and it is printed on the root logger around the structured logs.
        quiet = _DropMessage("pre-processing before quantization")
        root.addFilter(quiet)
        try:
            quantize_dynamic(fp32, work / MODEL_FILE, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.removeFilter(quiet)
        fp32.unlink()

    session = ort.InferenceSession(str(work / MODEL_FILE), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {n: sample[n].numpy().astype(np.int64) for n in names})
    cosine = float(np.min(_cosines(np.asarray(got), expected)))
    if not cosine >= _MIN_SAMPLE_COSINE[settings.backend]:
        raise EmbeddingModelError(
            f"the ONNX export of {settings.model!r} ({settings.backend}) does not reproduce the model: "
            f"cosine {cosine:.3f} to torch's vectors on a sample"
        )

    # With its normaliser: sentence-transformers puts a model's lower-casing there.
    tokenizer.save_pretrained(str(work))
    manifest = ExportManifest(
        format=EXPORT_FORMAT,
        model=settings.model,
        backend=settings.backend,
        source=source,
        dimension=int(dimension),
        max_seq_length=int(max_seq_length),
        input_names=names,
        versions={"torch": str(torch.__version__), "onnxruntime": str(ort.__version__)},
    )
    # Last, and atomically: the manifest is what makes the folder an export.
    partial = work / (MANIFEST_FILE + ".partial")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
    partial.rename(work / MANIFEST_FILE)
    return manifest


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.asarray(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12))
