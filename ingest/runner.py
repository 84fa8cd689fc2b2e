"""An ingestion run: plan what changed, chunk it, embed it, write it, clean up after it.

Safety rests on three rules:

* Point ids are derived from (document, content hash, chunk index), so writing the same
  content twice overwrites instead of duplicating.
* A document's new chunks are written before its old ones are deleted, and every chunk records
  how many chunks its version has. A run killed half-way leaves either the old version, or the
  old version plus part of the new one; the next run sees the new version incomplete, writes it
  again (same ids) and only then deletes the old one. Nothing is lost, nothing is duplicated.
* Files are read once: the bytes that are hashed are the bytes that are parsed.

Embedding is the only expensive step, so chunks of many documents are pooled into large
batches for the model, and the store writes of one batch overlap the encoding of the next.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from app.embedding import Embedder
from app.records import ChunkRecord
from app.retrieval.bm25 import LEXICAL_VERSION, LexicalEncoder
from app.settings import ChunkingSettings, IngestSettings
from app.store import QdrantStore
from ingest.chunking import chunk_document
from ingest.discovery import discover
from ingest.documents import LoadedDocument, Section
from ingest.loaders import SUPPORTED_FORMATS, LoadError, load_document
from ingest.progress import Progress, QuietProgress
from ingest.report import FailedFile, IngestReport

__all__ = ["IngestItem", "Ingestor", "doc_id_for", "file_items"]

_ID_NAMESPACE = uuid.UUID("6f1c8f5e-7a3b-4c61-9d0e-2b8a4e5f7c10")


def doc_id_for(source: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, source))


def _point_id(doc_id: str, doc_hash: str, index: int) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{doc_id}/{doc_hash}/{index}"))


@dataclass(frozen=True, slots=True)
class IngestItem:
    """One document to ingest: a name, the bytes that identify its content, a way to parse it."""

    source: str
    content: bytes
    load: Callable[[], LoadedDocument]


@dataclass(slots=True)
class _Pending:
    """A document whose chunks are on their way to the store."""

    doc_id: str
    doc_hash: str
    remaining: int


@dataclass(slots=True)
class _Batch:
    records: list[ChunkRecord] = field(default_factory=list)
    finished_docs: list[_Pending] = field(default_factory=list)


def file_items(paths: Iterable[tuple[Path, str]], report: IngestReport) -> list[IngestItem]:
    """Read each file once; unreadable files go straight to ``report.failed``."""
    items: list[IngestItem] = []
    for path, source in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.failed.append(FailedFile(source, f"cannot read: {exc.strerror or exc}"))
            continue
        items.append(IngestItem(source=source, content=data, load=lambda p=path, d=data: load_document(p, d)))
    return items


class Ingestor:
    """Runs ingestion against one store with one embedder."""

    def __init__(
        self,
        store: QdrantStore,
        embedder: Embedder,
        *,
        chunking: ChunkingSettings,
        ingest: IngestSettings,
        lexical: LexicalEncoder | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunking = chunking
        self.settings = ingest
        self.lexical = lexical or LexicalEncoder()
        self.progress = progress or QuietProgress()
        self.max_tokens = min(chunking.max_tokens, embedder.max_tokens)
        self._fingerprint = msgspec.json.encode(
            {
                "chunking": chunking,
                "max_tokens": self.max_tokens,
                "model": embedder.model_name,
                "lexical": LEXICAL_VERSION,
            }
        )

    # -- entry points ---------------------------------------------------------------------

    def ingest_paths(
        self, roots: Sequence[Path], *, prune: bool = False, dry_run: bool = False
    ) -> IngestReport:
        """Ingest files under ``roots``; with ``prune``, drop documents whose file is gone."""
        started = time.perf_counter()
        report = IngestReport(dry_run=dry_run)
        found = discover(
            roots, include=self.settings.include, exclude=self.settings.exclude, supported=SUPPORTED_FORMATS
        )
        for root in found.missing_roots:
            report.failed.append(FailedFile(root, "no such file or folder"))
        report.unsupported = found.unsupported
        report.files_seen = len(found.files) + len(found.unsupported)
        oversized = {f for f in found.files if _size(f.path) > self.settings.max_file_bytes}
        for f in sorted(oversized, key=lambda f: f.source):
            report.failed.append(
                FailedFile(f.source, f"larger than ingest.max_file_bytes ({self.settings.max_file_bytes})")
            )
        items = file_items(((f.path, f.source) for f in found.files if f not in oversized), report)
        prune_roots = [r.resolve() for r in roots if r.exists()] if prune else []
        return self._run(items, report, started=started, prune_roots=prune_roots, dry_run=dry_run)

    def ingest_items(self, items: Sequence[IngestItem], *, dry_run: bool = False) -> IngestReport:
        """Ingest documents that do not come from files (evaluation corpora, tools)."""
        report = IngestReport(dry_run=dry_run, files_seen=len(items))
        return self._run(list(items), report, started=time.perf_counter(), prune_roots=[], dry_run=dry_run)

    # -- the run --------------------------------------------------------------------------

    def _run(
        self,
        items: list[IngestItem],
        report: IngestReport,
        *,
        started: float,
        prune_roots: list[Path],
        dry_run: bool,
    ) -> IngestReport:
        if not dry_run:
            self.store.ensure_collection(
                model_name=self.embedder.model_name,
                dimension=self.embedder.dimension,
                lexical_version=LEXICAL_VERSION,
            )
        elif self.store.exists():
            self.store.check_model(model_name=self.embedder.model_name, dimension=self.embedder.dimension)
        states = self.store.document_states()
        self.progress.start(len(items))
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-store-writer")
        in_flight: Future[None] | None = None
        batch = _Batch()
        seen: set[str] = set()
        try:
            for item in items:
                doc_id = doc_id_for(item.source)
                seen.add(doc_id)
                doc_hash = hashlib.sha256(self._fingerprint + b"\0" + item.content).hexdigest()[:32]
                state = states.get(doc_id)
                if state is not None and state.is_complete(doc_hash):
                    if state.has_stale(doc_hash):
                        report.repaired += 1
                        if not dry_run:
                            self.store.delete_document(doc_id, keep_hash=doc_hash)
                    report.unchanged += 1
                    self._done(report, item.source, "unchanged", dry_run)
                    continue
                outcome = "changed" if state is not None else "new"
                try:
                    document = item.load()
                except LoadError as exc:
                    report.failed.append(FailedFile(item.source, exc.message))
                    self.progress.file_done(item.source, "failed")
                    continue
                records = self._records(document, item.source, doc_id, doc_hash)
                if not records:
                    report.empty.append(item.source)
                    if state is not None and not dry_run:
                        self.store.delete_document(doc_id)
                    self.progress.file_done(item.source, "empty")
                    continue
                setattr(report, outcome, getattr(report, outcome) + 1)
                self._done(report, item.source, outcome, dry_run, chunks=len(records))
                if dry_run:
                    report.chunks_written += len(records)
                    continue
                pending = _Pending(doc_id, doc_hash, len(records))
                for record in records:
                    batch.records.append(record)
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        batch.finished_docs.append(pending)
                    if len(batch.records) >= self.settings.encode_batch_size:
                        in_flight = self._flush(batch, writer, in_flight, report)
                        batch = _Batch()
            if batch.records or batch.finished_docs:
                in_flight = self._flush(batch, writer, in_flight, report)
            if in_flight is not None:
                in_flight.result()
                in_flight = None
            self._prune(states, seen, prune_roots, report, dry_run)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            if in_flight is not None:
                # Let the batch already handed to the store finish: a half-sent batch is safe,
                # but waiting makes the next run's work smaller.
                with contextlib.suppress(Exception):
                    in_flight.result()
            writer.shutdown(wait=True)
            self.progress.close()
        report.seconds = round(time.perf_counter() - started, 3)
        report.chunks_per_second = (
            round(report.chunks_written / report.seconds, 1) if report.seconds > 0 else 0.0
        )
        return report

    def _done(self, report: IngestReport, source: str, outcome: str, dry_run: bool, chunks: int = 0) -> None:
        if dry_run:
            entry = {"source": source, "action": outcome}
            if chunks:
                entry["chunks"] = str(chunks)
            report.plan.append(entry)
        self.progress.file_done(source, outcome)

    def _records(
        self, document: LoadedDocument, source: str, doc_id: str, doc_hash: str
    ) -> list[ChunkRecord]:
        drafts = chunk_document(
            _titled(document),
            self.embedder,
            max_tokens=self.max_tokens,
            overlap_tokens=self.chunking.overlap_tokens,
            min_tokens=self.chunking.min_tokens,
        )
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return [
            ChunkRecord(
                point_id=_point_id(doc_id, doc_hash, index),
                doc_id=doc_id,
                source=source,
                title=document.title,
                heading_path=draft.heading_path,
                chunk_index=index,
                chunk_count=len(drafts),
                text=draft.text,
                page=draft.page,
                doc_hash=doc_hash,
                text_hash=hashlib.sha256(draft.text.encode()).hexdigest()[:32],
                ingested_at=now,
            )
            for index, draft in enumerate(drafts)
        ]

    def _flush(
        self, batch: _Batch, writer: ThreadPoolExecutor, in_flight: Future[None] | None, report: IngestReport
    ) -> Future[None]:
        texts = [record.embedding_text() for record in batch.records]
        dense = self.embedder.embed(texts)
        sparse = [self.lexical.encode_document(text) for text in texts]
        report.embeddings_computed += len(texts)
        if in_flight is not None:
            in_flight.result()  # one batch in the writer at a time; surfaces its errors here

        def write() -> None:
            if batch.records:
                self.store.upsert(batch.records, dense, sparse)
            for done in batch.finished_docs:
                self.store.delete_document(done.doc_id, keep_hash=done.doc_hash)
            report.chunks_written += len(batch.records)
            self.progress.chunks_done(len(batch.records))

        return writer.submit(write)

    def _prune(
        self, states: dict, seen: set[str], roots: list[Path], report: IngestReport, dry_run: bool
    ) -> None:
        if not roots:
            return
        for doc_id, state in states.items():
            if doc_id in seen:
                continue
            path = _path_of(state.source, roots)
            if path is None or path.exists():
                continue
            report.pruned += 1
            if dry_run:
                report.plan.append({"source": state.source, "action": "prune"})
            else:
                self.store.delete_document(doc_id)


def _titled(document: LoadedDocument) -> LoadedDocument:
    """Root every heading path at the document title, so each chunk says which document it is from."""
    title = document.title.strip()
    if not title:
        return document
    sections = tuple(
        section
        if section.heading_path[:1] == (title,)
        else Section(heading_path=(title, *section.heading_path), text=section.text, page=section.page)
        for section in document.sections
    )
    return msgspec.structs.replace(document, sections=sections)


def _path_of(source: str, roots: list[Path]) -> Path | None:
    """The file a source name refers to under one of ``roots``, or None when it is not under them."""
    head, _, rest = source.partition("/")
    for root in roots:
        if root.is_file():
            if source == root.name:
                return root
        elif head == root.name and rest:
            return root / rest
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
