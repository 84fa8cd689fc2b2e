"""Answer generation: providers behind one small interface."""

from __future__ import annotations

from app.generation.base import Message, ModelProvider, Prompt, RetrievalStatus, TextDelta, Usage

__all__ = ["Message", "ModelProvider", "Prompt", "RetrievalStatus", "TextDelta", "Usage"]
