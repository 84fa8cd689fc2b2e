"""Records shared by ingestion, the store and retrieval."""

from __future__ import annotations

import msgspec

__all__ = ["ChunkRecord", "ScoredChunk"]


class ChunkRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One chunk as stored: the payload of a Qdrant point (its id is ``point_id``)."""

    point_id: str
    """Deterministic UUID of (doc_id, doc_hash, chunk_index)."""

    doc_id: str
    """Stable id of the source document (derived from its path)."""

    source: str
    """Absolute path of the source file (or the id given by the caller, e.g. a BEIR corpus id)."""

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

    @property
    def heading(self) -> str:
        return " > ".join(self.heading_path)

    def embedding_text(self) -> str:
        """What is embedded and indexed: the heading path gives a chunk its topic."""
        return f"{self.heading}\n{self.text}" if self.heading_path else self.text


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
