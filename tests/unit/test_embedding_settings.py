"""``embedding.backend`` and ``embedding.device``: refused early when wrong, resolved before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.config import load_settings
from app.embedding import SentenceTransformerEmbedder, build_embedder
from app.embedding.device import onnx_providers, torch_device
from app.embedding.export import export_folder
from app.embedding.onnx import backend_model_name
from app.errors import ConfigError, EmbeddingModelError
from app.settings import EmbeddingSettings

pytestmark = pytest.mark.unit

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def test_the_defaults_are_torch_on_the_cpu() -> None:
    settings = load_settings(environ={})
    assert (settings.embedding.backend, settings.embedding.device) == ("torch", "cpu")


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_each_backend_is_accepted(backend: str) -> None:
    assert load_settings(environ={"KB_EMBEDDING__BACKEND": backend}).embedding.backend == backend


@pytest.mark.parametrize("backend", ["openvino", "int8", "ONNX", ""])
def test_an_unknown_backend_fails_when_the_settings_load(backend: str) -> None:
    with pytest.raises(ConfigError, match=r"embedding\.backend"):
        load_settings(environ={"KB_EMBEDDING__BACKEND": backend})


@pytest.mark.parametrize("device", ["cpu", "auto", "cuda", "cuda:0", "cuda:12", "mps"])
def test_each_device_form_is_accepted(device: str) -> None:
    assert load_settings(environ={"KB_EMBEDDING__DEVICE": device}).embedding.device == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CUDA", "cpu ", "xla", "cuda:0,1"])
def test_a_malformed_device_fails_when_the_settings_load(device: str) -> None:
    with pytest.raises(ConfigError, match=r"embedding\.device"):
        load_settings(environ={"KB_EMBEDDING__DEVICE": device})


def test_cpu_and_auto_resolve_to_what_torch_has() -> None:
    assert torch_device("cpu") == "cpu"
    assert torch_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_a_cuda_device_torch_does_not_have_is_a_clear_error() -> None:
    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last device, on any machine
    with pytest.raises(EmbeddingModelError, match=rf"embedding\.device = '{absent}'.*set embedding\.device"):
        torch_device(absent)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_where_there_is_none_is_a_clear_error() -> None:
    with pytest.raises(EmbeddingModelError, match="no MPS device"):
        torch_device("mps")


def test_the_torch_embedder_refuses_a_missing_device_before_loading_the_model() -> None:
    absent = f"cuda:{torch.cuda.device_count()}"
    # A model that does not exist: had it tried to load, the error would be about the model.
    settings = EmbeddingSettings(model="/nonexistent/model", device=absent)
    with pytest.raises(EmbeddingModelError, match=r"embedding\.device"):
        SentenceTransformerEmbedder(settings)


def test_onnx_runs_on_the_cpu_unless_cuda_is_offered() -> None:
    assert onnx_providers("cpu", [CUDA, CPU]) == [CPU]
    assert onnx_providers("auto", [CPU]) == [CPU]
    assert onnx_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert onnx_providers("cuda:1", [CUDA, CPU]) == [(CUDA, {"device_id": 1}), CPU]


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_onnx_on_a_device_onnx_runtime_does_not_offer_is_a_clear_error(device: str) -> None:
    with pytest.raises(EmbeddingModelError, match=rf"embedding\.device = '{device}'"):
        onnx_providers(device, [CPU])


def test_an_onnx_backend_on_a_missing_device_fails_before_exporting(tmp_path: Path) -> None:
    import onnxruntime

    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    settings = load_settings(
        environ={
            "KB_DATA_DIR": str(tmp_path),
            "KB_EMBEDDING__BACKEND": "onnx-int8",
            "KB_EMBEDDING__DEVICE": "cuda",
        }
    )
    with pytest.raises(EmbeddingModelError, match="onnxruntime-gpu"):
        build_embedder(settings)
    assert not (tmp_path / "models").exists()


def test_the_recorded_model_name_carries_the_backend_except_torch() -> None:
    assert backend_model_name("all-MiniLM-L6-v2", "torch") == "all-MiniLM-L6-v2"
    assert backend_model_name("all-MiniLM-L6-v2", "onnx") == "all-MiniLM-L6-v2 (onnx)"
    assert backend_model_name("all-MiniLM-L6-v2", "onnx-int8") == "all-MiniLM-L6-v2 (onnx-int8)"


def test_an_export_folder_is_one_safe_name_per_model_and_backend(tmp_path: Path) -> None:
    assert export_folder(tmp_path, "all-MiniLM-L6-v2", "onnx-int8") == tmp_path / "all-MiniLM-L6-v2-onnx-int8"
    hub = export_folder(tmp_path, "sentence-transformers/all-MiniLM-L6-v2", "onnx")
    local = export_folder(tmp_path, "/srv/models/e5 small", "onnx")
    assert hub.parent == local.parent == tmp_path
    assert "/" not in hub.name and " " not in local.name
    assert hub != export_folder(tmp_path, "sentence-transformers/all-MiniLM-L6-v2", "onnx-int8")
