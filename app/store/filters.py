"""Request filters as Qdrant conditions, and the path prefixes they match against.

Filters name documents the way responses show them: by their path (``sources[].source`` of an
answer, e.g. ``docs/ingestion.md``), whose first part is the named source (``docs``). They only
ever narrow the caller's tenant condition (``app.store.tenants``): every condition is a ``must``
beside it, so no filter reaches another tenant's documents, whatever paths it names.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated

import msgspec
from msgspec import Meta
from qdrant_client import models

from app.store.tenants import tenant_condition

__all__ = [
    "MAX_FILTER_PATH_CHARS",
    "MAX_FILTER_SOURCES",
    "RetrievalFilters",
    "filter_for",
    "normalise_prefix",
    "path_prefixes",
]

MAX_FILTER_SOURCES = 100
"""Most document paths one request may name; a longer list is a client bug, not a question."""

MAX_FILTER_PATH_CHARS = 1024
"""Longest path a filter may give."""

_Path = Annotated[str, Meta(min_length=1, max_length=MAX_FILTER_PATH_CHARS)]


class RetrievalFilters(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Optional narrowing of the search; when both are given, a chunk must pass both."""

    source_prefix: (
        Annotated[
            str,
            Meta(
                max_length=MAX_FILTER_PATH_CHARS,
                description='Only documents under this folder, or this one document: "docs/guide", '
                'or "docs" for every document of the source named docs.',
            ),
        ]
        | None
    ) = None

    sources: (
        Annotated[
            list[_Path],
            Meta(
                min_length=1,
                max_length=MAX_FILTER_SOURCES,
                description='Only these documents, by their path as answers show it in "sources[].source", '
                'e.g. ["docs/ingestion.md"].',
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        # Runs while a request body is decoded, so a blank path is refused with the other
        # malformed fields instead of matching nothing.
        if self.sources is not None and any(not path.strip() for path in self.sources):
            raise ValueError("filters.sources: a document path must not be blank")


def path_prefixes(source: str) -> list[str]:
    """``"a/b/c.md"`` → ``["a", "a/b", "a/b/c.md"]``."""
    parts = PurePosixPath(source).parts
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def normalise_prefix(prefix: str) -> str:
    """The form a path filter is matched in: posix, no leading ./, no trailing /."""
    cleaned = str(PurePosixPath(prefix.strip().replace("\\", "/")))
    return cleaned.removeprefix("./").rstrip("/")


def filter_for(filters: RetrievalFilters | None, *, tenant: str) -> models.Filter:
    """The Qdrant filter of a search by a caller of ``tenant``: its tenant's and the shared
    documents, narrowed by the optional request filters (all conditions must hold)."""
    must: list[models.Condition] = [tenant_condition(tenant)]
    if filters is None:
        return models.Filter(must=must)
    if filters.sources is not None:
        paths = sorted({normalise_prefix(path) for path in filters.sources})
        must.append(models.FieldCondition(key="source", match=models.MatchAny(any=paths)))
    if filters.source_prefix:
        must.append(
            models.FieldCondition(
                key="path_prefixes", match=models.MatchValue(value=normalise_prefix(filters.source_prefix))
            )
        )
    return models.Filter(must=must)
