"""The result of an ingestion run, as a struct, a JSON object and a human summary."""

from __future__ import annotations

import msgspec

from app.store import SHARED_TENANT

__all__ = ["FailedFile", "IngestReport"]


class FailedFile(msgspec.Struct, frozen=True):
    path: str
    reason: str


class IngestReport(msgspec.Struct, kw_only=True):
    tenant: str = ""
    """The tenant the documents were ingested for (``*``: shared with every tenant)."""
    files_seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: list[FailedFile] = msgspec.field(default_factory=list)
    pruned: int = 0
    chunks_written: int = 0
    embeddings_computed: int = 0
    seconds: float = 0.0
    chunks_per_second: float = 0.0
    unsupported: list[str] = msgspec.field(default_factory=list)
    """Files skipped because their type is not supported."""
    empty: list[str] = msgspec.field(default_factory=list)
    """Files with no text to index."""
    repaired: int = 0
    """Unchanged documents whose leftovers from an interrupted run were removed."""
    adopted: int = 0
    """Stored documents re-bound to the folder given with --adopt (a folder that moved, or
    documents written before sources were recorded)."""
    unrecorded: int = 0
    """Stored documents, outside this run's sources, written before sources were recorded."""
    claimed: int = 0
    """Stored chunks written before tenants were recorded, assigned to the default tenant
    (``ingest.tenant``) by this run."""
    dry_run: bool = False
    interrupted: bool = False
    plan: list[dict[str, str]] = msgspec.field(default_factory=list)
    """With --dry-run: what would happen to each document."""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    def summary_lines(self) -> list[str]:
        verb = "would write" if self.dry_run else "written"
        lines = [
            f"files seen {self.files_seen}: new {self.new}, changed {self.changed}, "
            f"unchanged {self.unchanged}, failed {len(self.failed)}, pruned {self.pruned}",
            f"chunks {verb} {self.chunks_written} in {self.seconds:.1f} s "
            f"({self.chunks_per_second:.1f} chunks/s)",
        ]
        if self.tenant:
            whose = "shared with every tenant" if self.tenant == SHARED_TENANT else f"of tenant {self.tenant}"
            lines.append(f"documents {whose}")
        if self.claimed:
            lines.append(
                f"assigned {self.claimed} stored chunk(s) written before tenants were recorded to the "
                "default tenant (ingest.tenant)"
            )
        if self.unsupported:
            lines.append(
                f"skipped {len(self.unsupported)} unsupported: "
                + ", ".join(self.unsupported[:10])
                + (" …" if len(self.unsupported) > 10 else "")
            )
        if self.empty:
            lines.append(f"no text in {len(self.empty)}: " + ", ".join(self.empty[:10]))
        if self.adopted:
            rebound = "would re-bind" if self.dry_run else "re-bound"
            lines.append(f"{rebound} {self.adopted} stored document(s) to the folder given (--adopt)")
        if self.unrecorded:
            lines.append(
                f"{self.unrecorded} stored document(s) were written by an older kb that did not record "
                "their folder: ingest that folder with --adopt to keep them (add --prune to drop the "
                "ones whose file is gone)"
            )
        if self.repaired:
            lines.append(f"cleaned up leftovers of an interrupted run in {self.repaired} document(s)")
        for failure in self.failed:
            lines.append(f"FAILED {failure.path}: {failure.reason}")
        if self.interrupted:
            lines.append(
                "interrupted: run `kb ingest` again to finish; nothing written is lost or duplicated"
            )
        return lines
