"""Small builders of domain records for tests."""

from __future__ import annotations

from app.records import ChunkRecord


def chunk_record(
    point_id: str, *, text: str, title: str, source: str, heading_path: tuple[str, ...] = ()
) -> ChunkRecord:
    """A one-chunk document's record; the fields a test does not care about are fixed."""
    return ChunkRecord(
        point_id=point_id,
        doc_id=f"doc-{point_id}",
        source=source,
        title=title,
        heading_path=heading_path,
        chunk_index=0,
        chunk_count=1,
        text=text,
        doc_hash="h",
        text_hash=f"t-{point_id}",
        ingested_at="2024-01-01T00:00:00Z",
    )
