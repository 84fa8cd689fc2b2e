"""Answer generation: providers behind one small interface (``ModelProvider.stream``)."""

from __future__ import annotations

from app.generation.base import ModelProvider, TextDelta, Usage
from app.generation.registry import PROVIDERS, build_provider

__all__ = ["PROVIDERS", "ModelProvider", "TextDelta", "Usage", "build_provider"]
