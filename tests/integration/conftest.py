"""Fixtures for integration tests: real embedded Qdrant in a temp folder, real model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import load_settings
from app.settings import Settings
from app.store import QdrantStore, open_store
from tests.fakes.anthropic_server import fake_anthropic

__all__ = ["fake_anthropic"]  # the fixture, found by name in this folder's tests


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Project defaults with the data folder in a temp dir."""
    return load_settings(environ={"KB_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
def store(settings: Settings) -> Iterator[QdrantStore]:
    opened = open_store(settings)
    yield opened
    opened.close()
