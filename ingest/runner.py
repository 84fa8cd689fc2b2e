"""An ingestion run: plan what changed, chunk it, embed it, write it, clean up after it.

Safety rests on three rules:

* Point ids are derived from (document, content hash, chunk index), so writing the same
  content twice overwrites instead of duplicating.
* A document's new chunks are written before its old ones are deleted, and every chunk records
  how many chunks its version has. A run killed half-way leaves either the old version, or the
  old version plus part of the new one; the next run sees the new version incomplete, writes it
  again (same ids) and only then deletes the old one. Nothing is lost, nothing is duplicated.
* Files are read once: the bytes that are hashed are the bytes that are parsed.

A document is named by its source (``ingest.sources``): the source name plus its path inside the
folder that name stands for. A name stands for one folder; ``prune`` only ever considers the
documents of the sources given to the run.

The counts of a report say what happened, not what was planned: a new or changed document is
counted once its last chunk is written (with ``dry_run``, once planned), so the summary of an
interrupted run agrees with what the next run finds complete.

Embedding is the only expensive step, so chunks of many documents are pooled into large
batches for the model, and the store writes of one batch overlap the encoding of the next.
"""

from __future__ import annotations

import contextlib
import functools
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
from app.store import DocumentState, QdrantStore
from ingest.chunking import chunk_document
from ingest.discovery import DiscoveredFile, discover
from ingest.documents import LoadedDocument, Section
from ingest.loaders import SUPPORTED_FORMATS, LoadError, load_document
from ingest.progress import Progress, QuietProgress
from ingest.report import FailedFile, IngestReport
from ingest.sources import Root, SourcePlan, check_sources, known_folders, resolve_roots

__all__ = ["IngestItem", "Ingestor", "doc_id_for", "file_items"]

_ID_NAMESPACE = uuid.UUID("6f1c8f5e-7a3b-4c61-9d0e-2b8a4e5f7c10")


def doc_id_for(source: str) -> str:
    """The id of the document at this path (``docs/guide/install.md``).

    The path is unambiguous because a source name stands for one folder only (``ingest.sources``);
    it is also what older versions derived the id from, so their documents keep their ids.
    """
    return str(uuid.uuid5(_ID_NAMESPACE, source))


def _point_id(doc_id: str, doc_hash: str, index: int) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{doc_id}/{doc_hash}/{index}"))


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


@dataclass(slots=True)
class _Pending:
    """A document whose chunks are on their way to the store."""

    doc_id: str
    doc_hash: str
    remaining: int
    source: str
    outcome: str
    """"new" or "changed": what the report counts once the last chunk is written."""


@dataclass(slots=True)
class _Batch:
    records: list[ChunkRecord] = field(default_factory=list)
    finished_docs: list[_Pending] = field(default_factory=list)


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
        self,
        paths: Sequence[Path],
        *,
        prune: bool = False,
        dry_run: bool = False,
        source: str | None = None,
        adopt: bool = False,
    ) -> IngestReport:
        """Ingest the files under ``paths`` (folders or files), each as part of a named source.

        A path inside a folder the store already knows belongs to that folder's source; any other
        path is a new source named after its folder, or ``source`` (see ``resolve_roots``). With
        ``prune``, documents of these roots whose file is gone are removed, and only those. A name
        the store records for another folder is refused (``SourceError``) unless ``adopt`` says
        the folder moved here. Nothing is written before these checks pass.
        """
        started = time.perf_counter()
        report = IngestReport(dry_run=dry_run)
        states = self._states()
        roots, missing = resolve_roots(paths, source=source, known=known_folders(states))
        for path in missing:
            report.failed.append(FailedFile(path, "no such file or folder"))
        found = discover(
            roots, include=self.settings.include, exclude=self.settings.exclude, supported=SUPPORTED_FORMATS
        )
        report.unsupported = found.unsupported
        report.files_seen = len(found.files) + len(found.unsupported)
        oversized = {f for f in found.files if _size(f.path) > self.settings.max_file_bytes}
        for f in sorted(oversized, key=lambda f: f.source):
            report.failed.append(
                FailedFile(f.source, f"larger than ingest.max_file_bytes ({self.settings.max_file_bytes})")
            )
        items = file_items((f for f in found.files if f not in oversized), report)
        return self._run(
            items, report, states, started=started, roots=roots, prune=prune, adopt=adopt, dry_run=dry_run
        )

    def ingest_items(self, items: Sequence[IngestItem], *, dry_run: bool = False) -> IngestReport:
        """Ingest documents that do not come from files (evaluation corpora, tools)."""
        report = IngestReport(dry_run=dry_run, files_seen=len(items))
        return self._run(
            list(items),
            report,
            self._states(),
            started=time.perf_counter(),
            roots=[],
            prune=False,
            adopt=False,
            dry_run=dry_run,
        )

    # -- the run --------------------------------------------------------------------------

    def _run(
        self,
        items: list[IngestItem],
        report: IngestReport,
        states: dict[str, DocumentState],
        *,
        started: float,
        roots: list[Root],
        prune: bool,
        adopt: bool,
        dry_run: bool,
    ) -> IngestReport:
        sources = check_sources(roots, states, adopt=adopt)  # refuses before anything is written
        if not dry_run:
            self.store.ensure_collection(
                model_name=self.embedder.model_name,
                dimension=self.embedder.dimension,
                lexical_version=LEXICAL_VERSION,
            )
        self._adopt(sources, states, report, dry_run)
        report.unrecorded = len(sources.unrecorded)
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
                records = self._records(document, item, doc_id, doc_hash)
                if not records:
                    report.empty.append(item.source)
                    if state is not None and not dry_run:
                        self.store.delete_document(doc_id)
                    self.progress.file_done(item.source, "empty")
                    continue
                if dry_run:
                    setattr(report, outcome, getattr(report, outcome) + 1)
                    self._done(report, item.source, outcome, dry_run, chunks=len(records))
                    report.chunks_written += len(records)
                    continue
                # Counted by the writer once its last chunk is in the store (see _flush).
                pending = _Pending(doc_id, doc_hash, len(records), item.source, outcome)
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
            if prune:
                self._prune(states, seen, roots, report, dry_run)
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

    def _states(self) -> dict[str, DocumentState]:
        """What the store holds, once it is known to hold this model's vectors."""
        if self.store.exists():
            self.store.check_model(model_name=self.embedder.model_name, dimension=self.embedder.dimension)
        return self.store.document_states()

    def _adopt(
        self, sources: SourcePlan, states: dict[str, DocumentState], report: IngestReport, dry_run: bool
    ) -> None:
        """Re-bind the stored documents of a source to the folder given in this run."""
        for adoption in sources.adoptions:
            report.adopted += len(adoption.doc_ids)
            if dry_run:
                report.plan.append(
                    {
                        "source": f"{adoption.name}/",
                        "action": "adopt",
                        "documents": str(len(adoption.doc_ids)),
                        "folder": str(adoption.folder),
                    }
                )
            else:
                self.store.set_source(adoption.doc_ids, name=adoption.name, root=str(adoption.folder))
            for doc_id in adoption.doc_ids:
                states[doc_id].source_name = adoption.name
                states[doc_id].source_root = str(adoption.folder)

    def _records(
        self, document: LoadedDocument, item: IngestItem, doc_id: str, doc_hash: str
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
                source=item.source,
                source_name=item.source_name,
                source_root=item.source_root,
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
            report.chunks_written += len(batch.records)
            self.progress.chunks_done(len(batch.records))
            for done in batch.finished_docs:
                self.store.delete_document(done.doc_id, keep_hash=done.doc_hash)
                # Only the writer touches these counts while a run is writing.
                setattr(report, done.outcome, getattr(report, done.outcome) + 1)
                self.progress.file_done(done.source, done.outcome)

        return writer.submit(write)

    def _prune(
        self,
        states: dict[str, DocumentState],
        seen: set[str],
        roots: list[Root],
        report: IngestReport,
        dry_run: bool,
    ) -> None:
        """Remove documents of this run's sources whose file is gone from their folder.

        ``check_sources`` made sure each name in ``roots`` stands for the folder given (or
        adopted it), so a document of another folder cannot be mistaken for one of these.
        """
        for doc_id, state in states.items():
            if doc_id in seen or state.source_root is None:
                continue
            path = next(
                (
                    found
                    for root in roots
                    if state.source_name == root.name and (found := root.file_of(state.source)) is not None
                ),
                None,
            )
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
