"""An ingestion run: plan what changed, chunk it, embed it, write it, clean up after it.

Safety rests on three rules:

* Point ids are derived from (document, content hash, chunk index), so writing the same
  content twice overwrites instead of duplicating.
* A document's new chunks are written before its old ones are deleted, and every chunk records
  how many chunks its version has. A run killed half-way leaves either the old version, or the
  old version plus part of the new one; the next run sees the new version incomplete, writes it
  again (same ids) and only then deletes the old one. Nothing is lost, nothing is duplicated.
* Files are read once: the bytes that are hashed are the bytes that are parsed.

A document is named by its tenant and its source (``ingest.sources``): the source name plus its
path inside the folder that name stands for. Each tenant is a namespace of its own: a run is for
one tenant (``ingest.tenant``, ``kb ingest --tenant``, or the shared documents), reads the states
of that tenant's documents only, and writes, re-binds, replaces and prunes only those, so the same
path ingested for two tenants is two documents that never touch each other. Within a tenant, a
name stands for one folder; ``prune`` only ever considers the documents of the sources given to
the run. A document keeps the id it was first stored with (documents written before tenants were
recorded keep their old ids); a new one gets ``doc_id_for`` its tenant and path.

A run may be one ``Shard`` of the corpus: it reads, writes and prunes only the documents whose
identity (tenant and path) falls in that shard, so N runs at once over the same folders, against
one store, split the work between them and never touch each other's documents.

The counts of a report say what happened, not what was planned: a new or changed document is
counted once its last chunk is written (with ``dry_run``, once planned), so the summary of an
interrupted run agrees with what the next run finds complete.

Embedding is the only expensive step, so chunks of many documents are pooled into large
batches for the model, and the store writes of one batch overlap the encoding of the next.
Chunking counts every chunk with the model's tokenizer; an embedder that takes token ids
(``embed_ids``) gets those ids with the texts, so no chunk is tokenized twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, cast

import msgspec
import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

from app.embedding import Embedder
from app.records import ChunkRecord
from app.retrieval.bm25 import LEXICAL_VERSION, LexicalEncoder
from app.settings import ChunkingSettings, IngestSettings
from app.store import SHARED_TENANT, DocumentState, QdrantStore, valid_tenant
from ingest.chunking import chunk_document_ids
from ingest.discovery import discover
from ingest.documents import LoadedDocument, Section
from ingest.items import IngestItem, Shard, doc_id_for, file_items, point_id_for
from ingest.loaders import SUPPORTED_FORMATS, LoadError
from ingest.progress import Progress, QuietProgress
from ingest.report import FailedFile, IngestReport
from ingest.sources import Root, SourcePlan, check_sources, known_folders, resolve_roots

__all__ = ["IngestItem", "Ingestor", "doc_id_for", "file_items"]


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
    token_ids: list[list[int] | None] = field(default_factory=list)
    """Per record, the ids chunking counted its embedding text with (``None``: not known)."""
    finished_docs: list[_Pending] = field(default_factory=list)


class _EmbedsIds(Protocol):
    """An embedder that can be given the token ids of texts it would otherwise tokenize itself."""

    def embed_ids(self, texts: Sequence[str], token_ids: Sequence[Sequence[int] | None]) -> np.ndarray: ...


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
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunking = chunking
        self.settings = ingest
        valid_tenant(ingest.tenant)  # the default tenant must be one a key can have
        self.lexical = lexical or LexicalEncoder()
        self.progress = progress or QuietProgress()
        # Spans of a run (ingest > load, chunk per document; encode, upsert per batch), exported
        # where the CLI's OTEL_* variables say; a no-op without them.
        self.tracer = tracer or trace.NoOpTracer()
        self.max_tokens = min(chunking.max_tokens, embedder.max_tokens)
        # Asked of the class: a wrapper that forwards unknown attributes to the embedder it wraps
        # would otherwise route encoding around its own ``embed``.
        self._embeds_ids = callable(getattr(type(embedder), "embed_ids", None))
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
        tenant: str | None = None,
        shard: Shard | None = None,
    ) -> IngestReport:
        """Ingest the files under ``paths`` (folders or files), each as part of a named source,
        as documents of ``tenant`` (by default ``ingest.tenant``; ``SHARED_TENANT`` for the
        documents every tenant sees). Raises ``TenantError`` for a name no tenant can have.

        A path inside a folder the store already knows belongs to that folder's source; any other
        path is a new source named after its folder, or ``source`` (see ``resolve_roots``). With
        ``prune``, documents of these roots whose file is gone are removed, and only those. A name
        the store records for another folder is refused (``SourceError``) unless ``adopt`` says
        the folder moved here. Nothing is written before these checks pass.

        With ``shard``, only the files of that shard are ingested (and counted), and ``prune``
        considers only the stored documents of that shard.
        """
        started = time.perf_counter()
        tenant = self._tenant(tenant)
        report = IngestReport(dry_run=dry_run, tenant=tenant)
        states = self._states(tenant)
        roots, missing = resolve_roots(paths, source=source, known=known_folders(states))
        for path in missing:
            report.failed.append(FailedFile(path, "no such file or folder"))
        found = discover(
            roots, include=self.settings.include, exclude=self.settings.exclude, supported=SUPPORTED_FORMATS
        )
        if shard is not None:
            found.files = [f for f in found.files if shard.owns(f.source, tenant=tenant)]
            found.unsupported = [u for u in found.unsupported if shard.owns(u, tenant=tenant)]
        report.unsupported = found.unsupported
        report.files_seen = len(found.files) + len(found.unsupported)
        oversized = {f for f in found.files if _size(f.path) > self.settings.max_file_bytes}
        for f in sorted(oversized, key=lambda f: f.source):
            report.failed.append(
                FailedFile(f.source, f"larger than ingest.max_file_bytes ({self.settings.max_file_bytes})")
            )
        items = file_items((f for f in found.files if f not in oversized), report)
        return self._run(
            items,
            report,
            states,
            started=started,
            roots=roots,
            prune=prune,
            adopt=adopt,
            dry_run=dry_run,
            tenant=tenant,
            shard=shard,
        )

    def ingest_items(
        self, items: Sequence[IngestItem], *, dry_run: bool = False, tenant: str | None = None
    ) -> IngestReport:
        """Ingest documents that do not come from files (evaluation corpora, tools), as
        documents of ``tenant`` (by default ``ingest.tenant``)."""
        tenant = self._tenant(tenant)
        report = IngestReport(dry_run=dry_run, files_seen=len(items), tenant=tenant)
        return self._run(
            list(items),
            report,
            self._states(tenant),
            started=time.perf_counter(),
            roots=[],
            prune=False,
            adopt=False,
            dry_run=dry_run,
            tenant=tenant,
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
        tenant: str,
        shard: Shard | None = None,
    ) -> IngestReport:
        sources = check_sources(roots, states, adopt=adopt)  # refuses before anything is written
        if not dry_run:
            self.store.ensure_collection(
                model_name=self.embedder.model_name,
                dimension=self.embedder.dimension,
                lexical_version=LEXICAL_VERSION,
            )
            # Before any write of the run: a changed document's stale chunks must be its tenant's
            # for the delete that follows its new version to find them.
            report.claimed = self.store.claim_untenanted(self.settings.tenant)
        self._adopt(sources, states, report, dry_run, tenant)
        report.unrecorded = len(sources.unrecorded)
        self.progress.start(len(items))
        run_span = self.tracer.start_span("ingest", attributes={"kb.tenant": tenant, "kb.dry_run": dry_run})
        attached = otel_context.attach(trace.set_span_in_context(run_span))
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-store-writer")
        in_flight: Future[None] | None = None
        batch = _Batch()
        seen: set[str] = set()
        stored_ids = {state.source: doc_id for doc_id, state in states.items()}
        try:
            for item in items:
                doc_id = stored_ids.get(item.source) or doc_id_for(item.source, tenant=tenant)
                seen.add(doc_id)
                doc_hash = hashlib.sha256(self._fingerprint + b"\0" + item.content).hexdigest()[:32]
                state = states.get(doc_id)
                if state is not None and state.is_complete(doc_hash):
                    if state.has_stale(doc_hash):
                        report.repaired += 1
                        if not dry_run:
                            self.store.delete_document(doc_id, tenant=tenant, keep_hash=doc_hash)
                    report.unchanged += 1
                    self._done(report, item.source, "unchanged", dry_run)
                    continue
                outcome = "changed" if state is not None else "new"
                try:
                    with self.tracer.start_as_current_span("load", attributes={"kb.source": item.source}):
                        document = item.load()
                except LoadError as exc:
                    report.failed.append(FailedFile(item.source, exc.message))
                    self.progress.file_done(item.source, "failed")
                    continue
                with self.tracer.start_as_current_span(
                    "chunk", attributes={"kb.source": item.source}
                ) as span:
                    records, token_ids = self._encoded_records(document, item, doc_id, doc_hash)
                    span.set_attribute("kb.chunks", len(records))
                if not records:
                    report.empty.append(item.source)
                    if state is not None and not dry_run:
                        self.store.delete_document(doc_id, tenant=tenant)
                    self.progress.file_done(item.source, "empty")
                    continue
                if dry_run:
                    setattr(report, outcome, getattr(report, outcome) + 1)
                    self._done(report, item.source, outcome, dry_run, chunks=len(records))
                    report.chunks_written += len(records)
                    continue
                # Counted by the writer once its last chunk is in the store (see _flush).
                pending = _Pending(doc_id, doc_hash, len(records), item.source, outcome)
                for record, ids in zip(records, token_ids, strict=True):
                    batch.records.append(record)
                    batch.token_ids.append(ids)
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        batch.finished_docs.append(pending)
                    if len(batch.records) >= self.settings.encode_batch_size:
                        in_flight = self._flush(batch, writer, in_flight, report, tenant)
                        batch = _Batch()
            if batch.records or batch.finished_docs:
                in_flight = self._flush(batch, writer, in_flight, report, tenant)
            if in_flight is not None:
                in_flight.result()
                in_flight = None
            if prune:
                self._prune(states, seen, roots, report, dry_run, tenant, shard)
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
            otel_context.detach(attached)
            run_span.set_attributes(
                {"kb.ingest.chunks": report.chunks_written, "kb.ingest.failed": len(report.failed)}
            )
            run_span.end()
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

    def _tenant(self, tenant: str | None) -> str:
        """The tenant a run is for: the one given, or the default; checked."""
        if tenant is None:
            return self.settings.tenant
        return tenant if tenant == SHARED_TENANT else valid_tenant(tenant)

    def _states(self, tenant: str) -> dict[str, DocumentState]:
        """What the store holds of ``tenant``, once it is known to hold this model's vectors.

        Chunks written before tenants were recorded are the default tenant's, claimed or not yet
        (a run claims them before it writes; a dry run never does)."""
        if self.store.exists():
            self.store.check_model(model_name=self.embedder.model_name, dimension=self.embedder.dimension)
        return self.store.document_states(tenant=tenant, include_untenanted=tenant == self.settings.tenant)

    def _adopt(
        self,
        sources: SourcePlan,
        states: dict[str, DocumentState],
        report: IngestReport,
        dry_run: bool,
        tenant: str,
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
                self.store.set_source(
                    adoption.doc_ids, name=adoption.name, root=str(adoption.folder), tenant=tenant
                )
            for doc_id in adoption.doc_ids:
                states[doc_id].source_name = adoption.name
                states[doc_id].source_root = str(adoption.folder)

    def _encoded_records(
        self, document: LoadedDocument, item: IngestItem, doc_id: str, doc_hash: str
    ) -> tuple[list[ChunkRecord], list[list[int] | None]]:
        """The document's chunk records, and per record the token ids of its embedding text."""
        encoded = chunk_document_ids(
            _titled(document),
            self.embedder,
            max_tokens=self.max_tokens,
            overlap_tokens=self.chunking.overlap_tokens,
            min_tokens=self.chunking.min_tokens,
        )
        drafts = [draft for draft, _ in encoded]
        now = datetime.now(UTC).isoformat(timespec="seconds")
        records = [
            ChunkRecord(
                point_id=point_id_for(doc_id, doc_hash, index),
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
        return records, [ids for _, ids in encoded]

    def _flush(
        self,
        batch: _Batch,
        writer: ThreadPoolExecutor,
        in_flight: Future[None] | None,
        report: IngestReport,
        tenant: str,
    ) -> Future[None]:
        texts = [record.embedding_text() for record in batch.records]
        with self.tracer.start_as_current_span("encode", attributes={"kb.chunks": len(texts)}):
            if self._embeds_ids and any(ids is not None for ids in batch.token_ids):
                dense = cast(_EmbedsIds, self.embedder).embed_ids(texts, batch.token_ids)
            else:
                dense = self.embedder.embed(texts)
            sparse = [self.lexical.encode_document(text) for text in texts]
        parent = otel_context.get_current()  # the writer thread has a context of its own
        report.embeddings_computed += len(texts)
        if in_flight is not None:
            in_flight.result()  # one batch in the writer at a time; surfaces its errors here

        def write() -> None:
            if batch.records:
                with self.tracer.start_as_current_span(
                    "upsert", context=parent, attributes={"kb.chunks": len(batch.records)}
                ):
                    self.store.upsert(batch.records, dense, sparse, tenant=tenant)
            report.chunks_written += len(batch.records)
            self.progress.chunks_done(len(batch.records))
            for done in batch.finished_docs:
                self.store.delete_document(done.doc_id, tenant=tenant, keep_hash=done.doc_hash)
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
        tenant: str,
        shard: Shard | None,
    ) -> None:
        """Remove documents of this run's tenant, sources and shard whose file is gone from their folder.

        ``check_sources`` made sure each name in ``roots`` stands for the folder given (or
        adopted it), so a document of another folder cannot be mistaken for one of these.
        """
        for doc_id, state in states.items():
            if doc_id in seen or state.source_root is None:
                continue
            if shard is not None and not shard.owns(state.source, tenant=tenant):
                continue  # another shard's run decides about it
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
                self.store.delete_document(doc_id, tenant=tenant)


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
