"""Shared fixtures and the rules the markers stand for.

* The folder decides the layer marker: ``tests/unit`` are ``unit`` (no model, no store),
  ``tests/integration`` are ``integration`` (real model, real embedded Qdrant, wire-level fakes),
  ``tests/e2e`` are ``e2e`` (HTTP over loopback).
* Every test that uses the real embedding model is ``slow``; a unit test that asks for it is a
  collection error, so ``-m unit`` stays model-free by construction.
* The real model is loaded once per test session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.embedding import SentenceTransformerEmbedder
from app.settings import EmbeddingSettings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

_TESTS = Path(__file__).resolve().parent
_LAYERS = ("unit", "integration", "e2e")
_MODEL_FIXTURES = {"embedder"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced: list[str] = []
    for item in items:
        try:
            layer = Path(str(item.path)).resolve().relative_to(_TESTS).parts[0]
        except ValueError:
            continue
        if layer in _LAYERS and item.get_closest_marker(layer) is None:
            item.add_marker(layer)
        uses_model = bool(_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())))
        if uses_model:
            item.add_marker(pytest.mark.slow)
            if layer == "unit":
                misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(
            "unit tests must not load the embedding model (move them to tests/integration): "
            + ", ".join(misplaced)
        )


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real default model (all-MiniLM-L6-v2 from the offline package)."""
    return SentenceTransformerEmbedder(EmbeddingSettings())
