"""What loaders produce and the chunker consumes."""

from __future__ import annotations

import msgspec

__all__ = ["LoadedDocument", "Section"]


class Section(msgspec.Struct, frozen=True, kw_only=True):
    """A run of body text under one heading path (or one PDF page, or one slide)."""

    heading_path: tuple[str, ...] = ()
    """Headings above this text, outermost first, e.g. ("Guide", "Install", "Linux")."""

    text: str
    """Body text; paragraphs separated by blank lines."""

    page: int | None = None
    """1-based page number (PDF) or slide number (PowerPoint); None for other formats."""


class LoadedDocument(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed source file."""

    title: str
    """Document title: first H1 / <title> / PDF metadata / Word Title paragraph / first slide's
    title, else the file stem."""

    format: str
    """One of "markdown", "text", "html", "pdf", "docx", "pptx"."""

    sections: tuple[Section, ...]
    """Body in reading order."""
