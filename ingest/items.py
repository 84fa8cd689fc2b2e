"""What a run ingests, and the ids it stores it under.

An item is one document: a name, the bytes that identify its content, and a way to parse them.
Its document id comes from its tenant and path (``doc_id_for``) and its point ids from
(document, content hash, chunk index) (``point_id_for``), so writing the same content twice
overwrites instead of duplicating, and the same path of two tenants is two documents.
The same identity splits a corpus into shards (``Shard``), so N runs at once need no coordinator.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ingest.discovery import DiscoveredFile
from ingest.documents import LoadedDocument
from ingest.loaders import load_document
from ingest.report import FailedFile, IngestReport

__all__ = ["IngestItem", "Shard", "doc_id_for", "file_items", "point_id_for"]

_ID_NAMESPACE = uuid.UUID("6f1c8f5e-7a3b-4c61-9d0e-2b8a4e5f7c10")


def doc_id_for(source: str, *, tenant: str) -> str:
    """The id of a new document of ``tenant`` at this path (``docs/guide/install.md``).

    The path is unambiguous within a tenant because a source name stands for one folder only
    (``ingest.sources``); the tenant makes the same path of two tenants two documents, with
    their own point ids. Documents stored by older versions keep the ids they have (derived from
    the path alone): a run looks a document up by its path first.
    """
    return str(uuid.uuid5(uuid.uuid5(_ID_NAMESPACE, f"tenant:{tenant}"), source))


def point_id_for(doc_id: str, doc_hash: str, index: int) -> str:
    """The id of chunk ``index`` of one version (``doc_hash``) of a document."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{doc_id}/{doc_hash}/{index}"))


@dataclass(frozen=True, slots=True)
class Shard:
    """Part ``index`` of ``count`` of a corpus (``kb ingest --shard K/N``).

    A document belongs to one shard, decided by its identity alone (``doc_id_for`` its tenant
    and path, whatever id it is stored under), so every run computes the same split from nothing
    but the path: N runs at once share the work without talking to each other.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= K < N and N >= 1")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` (``"0/3"``, ``"2/3"``); ``ValueError`` with a message for anything else."""
        index, sep, count = text.strip().partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"shard {text!r}: expected K/N with whole numbers, such as 0/3")
        return cls(int(index), int(count))

    def owns(self, source: str, *, tenant: str) -> bool:
        """Whether the document of ``tenant`` at ``source`` is this shard's."""
        # uuid5 is a SHA-1 digest, so its bits spread documents evenly over the shards.
        return uuid.UUID(doc_id_for(source, tenant=tenant)).int % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True, slots=True)
class IngestItem:
    """One document to ingest: a name, the bytes that identify its content, a way to parse it."""

    source: str
    content: bytes
    load: Callable[[], LoadedDocument]
    source_name: str = ""
    """The named source it belongs to; empty for documents that do not come from a folder."""
    source_root: str = ""
    """The resolved folder of that source."""


def file_items(files: Iterable[DiscoveredFile], report: IngestReport) -> list[IngestItem]:
    """Read each file once; unreadable files go straight to ``report.failed``."""
    items: list[IngestItem] = []
    for found in files:
        try:
            data = found.path.read_bytes()
        except OSError as exc:
            report.failed.append(FailedFile(found.source, f"cannot read: {exc.strerror or exc}"))
            continue
        items.append(
            IngestItem(
                source=found.source,
                content=data,
                load=functools.partial(load_document, found.path, data),
                source_name=found.root.name,
                source_root=str(found.root.folder),
            )
        )
    return items
