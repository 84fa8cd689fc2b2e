"""What one prompt version file holds, validated when it is loaded.

A version file (``prompts/<name>/<version>.toml``) is one of two kinds, chosen by the prompt's
name (``KINDS``): an ``answer`` prompt (``PromptTemplate``: system text, the user message, one
source, one status wording per retrieval status) or a ``condense`` prompt (``CondenseTemplate``:
system text, the user message and one earlier turn, to make a follow-up standalone). Both may
carry model ``[parameters]`` (temperature, max_tokens) that the provider applies.

Placeholders are ``{name}``; each field accepts a fixed set, checked at load time so that a typo
fails at start-up, not on the first question.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

import msgspec

__all__ = [
    "KINDS",
    "PLACEHOLDER_RE",
    "AnyTemplate",
    "CondenseTemplate",
    "ModelParameters",
    "PromptTemplate",
    "StatusWording",
]

PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Version = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,40}$")]

# field -> (allowed placeholders, required placeholders)
Placeholders = dict[str, tuple[frozenset[str], frozenset[str]]]


class ModelParameters(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Model settings a version asks for; unset ones come from ``generation`` settings."""

    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    """Sampling temperature; wins over ``generation.temperature``."""

    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=64_000)] | None = None
    """Longest reply in tokens; capped by ``generation.max_tokens`` (a version may ask for less
    than the deployment allows, never more)."""

    def temperature_or(self, configured: float) -> float:
        return configured if self.temperature is None else self.temperature

    def output_tokens(self, ceiling: int) -> int:
        return ceiling if self.max_tokens is None else min(self.max_tokens, ceiling)


class StatusWording(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the model is told about retrieval, one wording per ``RetrievalStatus``."""

    ok: NonEmpty
    empty: NonEmpty
    timeout: NonEmpty
    error: NonEmpty


class _Checked(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A version file: its placeholders are checked as it is decoded."""

    placeholders: ClassVar[Placeholders] = {}

    def __post_init__(self) -> None:
        # Raised as ValueError so that msgspec.convert reports it as a ValidationError too.
        for field, (allowed, required) in self.placeholders.items():
            obj: object = self
            for part in field.split("."):
                obj = getattr(obj, part)
            found = set(PLACEHOLDER_RE.findall(str(obj)))
            if unknown := found - allowed:
                accepted = _braced(allowed) or "none"
                raise ValueError(
                    f"`{field}` has unknown placeholder(s) {_braced(unknown)} (accepted: {accepted})"
                )
            if missing := required - found:
                raise ValueError(f"`{field}` lacks required placeholder(s) {_braced(missing)}")


class PromptTemplate(_Checked, frozen=True):
    """One version of an ``answer`` prompt, as loaded from ``prompts/answer/<version>.toml``."""

    placeholders: ClassVar[Placeholders] = {
        "system": (frozenset(), frozenset()),
        "user": (frozenset({"status_block", "documents", "question"}),) * 2,
        "document": (
            frozenset({"index", "title", "source", "heading", "page", "text"}),
            frozenset({"index", "text"}),
        ),
        "status.ok": (frozenset({"count"}), frozenset()),
        "status.empty": (frozenset(), frozenset()),
        "status.timeout": (frozenset(), frozenset()),
        "status.error": (frozenset(), frozenset()),
    }

    version: Version
    description: str
    system: NonEmpty
    user: NonEmpty
    document: NonEmpty
    status: StatusWording
    parameters: ModelParameters = msgspec.field(default_factory=ModelParameters)


class CondenseTemplate(_Checked, frozen=True):
    """One version of a ``condense`` prompt: a follow-up question made standalone from the
    conversation's earlier turns (``build_condense_prompt``)."""

    placeholders: ClassVar[Placeholders] = {
        "system": (frozenset(), frozenset()),
        "user": (frozenset({"history", "question"}),) * 2,
        "turn": (frozenset({"question", "answer"}),) * 2,
    }

    version: Version
    description: str
    system: NonEmpty
    user: NonEmpty
    turn: NonEmpty
    parameters: ModelParameters = msgspec.field(default_factory=ModelParameters)


AnyTemplate = PromptTemplate | CondenseTemplate

KINDS: dict[str, type[PromptTemplate] | type[CondenseTemplate]] = {
    "answer": PromptTemplate,
    "condense": CondenseTemplate,
}
"""Prompt name -> the struct its version files are read as. A folder under ``prompts/`` with
another name is a load error: each prompt has one job, and the code that renders it."""


def _braced(names: set[str] | frozenset[str]) -> str:
    return ", ".join("{" + n + "}" for n in sorted(names))
