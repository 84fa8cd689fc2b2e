"""Request filters as Qdrant conditions, and the path prefixes they match against."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

import msgspec
from qdrant_client import models

__all__ = ["RetrievalFilters", "filter_for", "normalise_prefix", "path_prefixes"]


class RetrievalFilters(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Optional narrowing of the search."""

    source_prefix: str | None = None
    """Only documents under this folder (or this file), e.g. "docs/guide"."""

    doc_ids: list[str] | None = None
    """Only these documents."""


def path_prefixes(source: str) -> list[str]:
    """``"a/b/c.md"`` → ``["a", "a/b", "a/b/c.md"]``."""
    parts = PurePosixPath(source).parts
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def normalise_prefix(prefix: str) -> str:
    """The form a path-prefix filter is matched in: posix, no leading ./, no trailing /."""
    cleaned = str(PurePosixPath(prefix.strip().replace("\\", "/")))
    return cleaned.removeprefix("./").rstrip("/")


def filter_for(filters: RetrievalFilters | None) -> models.Filter | None:
    """A Qdrant filter for the optional request filters (folder or file granularity)."""
    if filters is None:
        return None
    return _conditions(source_prefix=filters.source_prefix, doc_ids=filters.doc_ids)


def _conditions(*, source_prefix: str | None, doc_ids: Iterable[str] | None) -> models.Filter | None:
    must: list[models.Condition] = []
    if doc_ids:
        must.append(models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(doc_ids))))
    if source_prefix:
        must.append(
            models.FieldCondition(
                key="path_prefixes", match=models.MatchValue(value=normalise_prefix(source_prefix))
            )
        )
    return models.Filter(must=must) if must else None
