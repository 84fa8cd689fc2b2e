"""Records shared by ingestion, the store, retrieval and the pipeline: the bottom of the import graph.

Nothing here imports anything else of the project.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
import numpy as np

__all__ = [
    "DEFAULT_TENANT",
    "Caller",
    "ChunkRecord",
    "RetrievalStatus",
    "Role",
    "ScoredChunk",
    "SearchHit",
    "SparseTerms",
    "embedding_text",
]

RetrievalStatus = Literal["ok", "empty", "timeout", "error"]
"""Outcome of retrieval, stated in the prompt and reported to the client: ``ok`` (relevant
chunks found), ``empty`` (nothing relevant), ``timeout``, ``error`` (the store or model failed)."""


Role = Literal["anonymous", "user", "widget", "admin"]
"""What a caller may do: ``user`` asks, ``widget`` asks from its configured origins only,
``admin`` also reaches the admin endpoints; ``anonymous`` is a caller without a key (allowed by
the local demo configuration only)."""


DEFAULT_TENANT = "default"
"""The tenant of runs that name none (``kb eval``'s system caller): the default of
``ingest.tenant`` and ``access.anonymous_tenant``, the tenant of a single-team install."""


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who is asking: resolved from the request's API key (``app.access``) before any work."""

    key_id: str | None
    """Stable id of the API key (not the key); None for an anonymous caller."""

    name: str
    """The key's name, for logs and traces."""

    tenant: str
    """The team or organisation whose documents this caller may retrieve."""

    role: Role
    tier: str = "default"
    """Limit tier (``limits.tiers``)."""

    client: str = ""
    """The client's address: what anonymous callers are limited by."""

    @property
    def subject(self) -> str:
        """What limits and ownership are keyed by: the key, or the address when anonymous."""
        return f"key:{self.key_id}" if self.key_id else f"ip:{self.client or 'unknown'}"


def embedding_text(heading_path: Sequence[str], text: str) -> str:
    """What is embedded and indexed for a chunk: the heading path gives a chunk its topic.

    The one place this string is built: chunking guarantees its token count against it, and
    ingestion embeds exactly it.
    """
    return " > ".join(heading_path) + "\n" + text if heading_path else text


@dataclass(frozen=True, slots=True)
class SparseTerms:
    """A sparse vector: parallel lists of term indices and weights."""

    indices: list[int]
    values: list[float]

    def __len__(self) -> int:
        return len(self.indices)


class ChunkRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One chunk as stored: the payload of a Qdrant point (its id is ``point_id``)."""

    point_id: str
    """Deterministic UUID of (doc_id, doc_hash, chunk_index)."""

    doc_id: str
    """Stable id of the source document (derived from its path)."""

    source: str
    """The document path shown to users: the source name plus the path inside its folder
    (``docs/guide/install.md``), or the id given by the caller (e.g. a BEIR corpus id)."""

    title: str
    heading_path: tuple[str, ...] = ()
    chunk_index: int
    chunk_count: int
    """Chunks the document had when this one was written; lets a run tell a complete document
    from one a killed run left half-written."""

    text: str
    """Chunk body as shown to the model (without the heading path)."""

    page: int | None = None
    doc_hash: str
    """Hash of the source bytes and the ingestion fingerprint (chunking settings, model)."""

    text_hash: str
    """Hash of ``text``."""

    ingested_at: str
    """ISO-8601 UTC time of the run that wrote the chunk."""

    source_name: str = ""
    """The named source the document belongs to (the first part of ``source``); empty for
    documents that do not come from a folder."""

    source_root: str = ""
    """The resolved folder that source stood for when the chunk was written."""

    @property
    def heading(self) -> str:
        return " > ".join(self.heading_path)

    def embedding_text(self) -> str:
        """What is embedded and indexed (``embedding_text`` of the heading path and text)."""
        return embedding_text(self.heading_path, self.text)


class ScoredChunk(msgspec.Struct, frozen=True, kw_only=True):
    """A retrieved chunk with the scores the ranking stage uses."""

    record: ChunkRecord
    score: float
    """Fused relevance used for ordering (higher is better)."""

    dense_score: float | None = None
    """Cosine similarity to the question, when the dense retriever saw this chunk."""

    lexical_score: float | None = None
    """BM25 score, when the lexical retriever saw this chunk."""

    vector: tuple[float, ...] | None = None
    """Dense vector, carried for duplicate detection and MMR."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A point returned by one retriever."""

    record: ChunkRecord
    score: float
    vector: np.ndarray | None
    sparse: SparseTerms | None = None
    """The point's BM25 term weights, when the search asked for them (query expansion reads them)."""
