"""Retrieve: embed the question, search dense + lexical, fuse; with a timeout and a status.

Hybrid search asks Qdrant for the dense top ``candidates`` and the BM25 top ``candidates``, each
hit with its vector, the same requests on the embedded store and on a server. With lexical
expansion on (hybrid mode, ``expansion_terms`` > 0) that is two round trips, dense then lexical:
the query policy (``app.retrieval.policy``) reads the question with its best dense hits, once,
and decides the dense weight, whether a lexical match counts alone, and whether the BM25 query is
expanded with terms of those hits (``app.retrieval.expansion``). Otherwise both searches go in one
``query_batch_points`` call and the policy reads the same texts after it. Fusion
(``app.retrieval.fusion``) then combines the two with the policy's weight; each candidate gets its
calibrated relevance (``app.retrieval.calibration``: the cosine and the share of the query's
attainable BM25 score, the same scale for every question), and the relevance floor
(``relevant_candidates``, the only one) drops what is no evidence. Rescoring the union with the sparse
query (``prefetch``) would give dense-only hits their true BM25 instead of 0; it measured no
better and tripled the embedded store's search time (docs/evaluation.md).

Every search is a tenant's: the caller's tenant condition (``app.store.tenants``, its documents
and the shared ones) is part of the store filter of the dense, the lexical and the expanded
lexical search alike, and the term statistics expansion weighs terms by are sampled from that
tenant's documents only. Request filters only narrow it.

Retrieval never fails a request. Its outcome is a ``RetrievalResult`` whose status is ``ok``,
``empty`` (nothing relevant came back), ``timeout`` or ``error``; on anything but ``ok`` the
pipeline goes on with an empty context and the prompt says why.

Under load (``retrieve``, docs/load.md): a retrieval is first admitted (``app.retrieval.admission``:
at most ``retrieval.queue_size`` in flight; one more gets ``timeout`` at once, saying the service
is busy). Its question is embedded by the ``EmbeddingBatcher`` (``app.embedding.batching``),
awaited on the event loop, so that questions arriving together share one model call; then its
search, with that vector, goes to a small pool of store workers (``retrieval.search_workers``:
Qdrant Edge and a server both take concurrent reads). Work still queued when the retrieval's
deadline passes or its client leaves is dropped unrun. Work already running (the store and the
model are blocking libraries) is abandoned, not killed: its thread finishes in the background,
and if it fails then, one structured warning says so. ``search`` and ``judge`` stay blocking
calls, for ``kb eval`` and the benchmarks.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import structlog
from qdrant_client import models

from app.embedding import Embedder, EmbeddingBatcher
from app.records import RetrievalStatus, ScoredChunk, SearchHit, SparseTerms
from app.retrieval.admission import AdmissionQueue, queue_for
from app.retrieval.bm25 import LexicalEncoder
from app.retrieval.calibration import RELEVANCE_MODEL, JudgedChunk, lexical_share, max_lexical_score
from app.retrieval.expansion import DocumentFrequencies, TermStatistics, expand_query
from app.retrieval.fusion import fuse, fusion_strategy
from app.retrieval.policy import LEXICAL_ALONE_MIN_SHARE, QueryProfile, profile_query, relevant_candidates
from app.settings import FusionName, RetrievalSettings, RetrieverMode
from app.store import DEFAULT_TENANT, RetrievalFilters, SearchStore, filter_for

__all__ = ["Judged", "RetrievalResult", "Retriever", "RetrieverMode"]

log = structlog.get_logger("kb.retrieval")

_READ_HITS = 3
"""Best dense hits whose texts the policy reads with the question to judge readability."""

_STATISTICS_TENANTS = 256
"""Tenants whose term statistics are kept at once; beyond it the least recently used is dropped."""

_Searched = tuple[list[ScoredChunk], dict[str, float]]


class Judged(msgspec.Struct, kw_only=True):
    """Fused candidates with their calibrated relevance, before the relevance floor."""

    candidates: list[JudgedChunk]
    lexical_alone: bool
    """Whether the query policy lets a lexical match alone make a chunk relevant."""
    min_share: float = LEXICAL_ALONE_MIN_SHARE
    """The least lexical share such a match needs (0 in lexical mode: BM25 is all there is)."""
    timings: dict[str, float]


class RetrievalResult(msgspec.Struct, kw_only=True):
    status: RetrievalStatus
    candidates: list[ScoredChunk] = msgspec.field(default_factory=list)
    took_ms: float = 0.0
    timings_ms: dict[str, float] = msgspec.field(default_factory=dict)
    detail: str | None = None
    """Why the status is not ok (for logs; not shown to end users verbatim)."""


class Retriever:
    """Hybrid retrieval over one store."""

    def __init__(
        self,
        store: SearchStore | None,
        embedder: Embedder,
        settings: RetrievalSettings,
        *,
        lexical: LexicalEncoder | None = None,
        queue: AdmissionQueue | None = None,
    ) -> None:
        """``embedder`` embeds questions: an ``EmbeddingBatcher`` (the service's, wired to its
        metrics), or any ``Embedder``, which ``retrieve`` then batches with one of its own.
        ``queue`` admits retrievals and runs their searches; by default one from ``settings``."""
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.lexical = lexical or LexicalEncoder()
        self.statistics = _StatisticsByTenant(settings)
        self.queue = queue or queue_for(settings)
        self._batcher = embedder if isinstance(embedder, EmbeddingBatcher) else None

    async def retrieve(
        self,
        question: str,
        *,
        filters: RetrievalFilters | None = None,
        limit: int | None = None,
        mode: RetrieverMode | None = None,
        fusion: FusionName | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> RetrievalResult:
        """Candidates for ``question`` among the documents of ``tenant`` (the caller's) and the
        shared ones, within the configured timeout. Never raises for store faults.

        ``mode`` and ``fusion`` default to the settings' (``retrieval.mode``, ``retrieval.fusion``).
        """
        started = time.perf_counter()
        s = self.settings
        try:
            slot = self.queue.admit(s.timeout_s)
        except RuntimeError as exc:  # closed: the service is shutting down
            return RetrievalResult(status="error", took_ms=_ms(started), detail=str(exc))
        if slot is None:
            return RetrievalResult(
                status="timeout",
                took_ms=_ms(started),
                detail=(
                    f"the service is busy: {self.queue.capacity} retrievals are in flight "
                    "(retrieval.queue_size); this one was refused at once, not queued"
                ),
            )
        call: Future[_Searched] | None = None
        cancelled = False
        try:
            async with asyncio.timeout(s.timeout_s):
                vector = None
                embed_ms = 0.0
                if (mode or s.mode) != "lexical":
                    vectors = await asyncio.wrap_future(
                        self._question_batcher().submit([question], deadline=slot.deadline)
                    )
                    vector = vectors[0]
                    embed_ms = (time.perf_counter() - started) * 1000
                search = functools.partial(
                    self._queued_search,
                    question,
                    filters,
                    limit,
                    mode=mode,
                    fusion=fusion,
                    tenant=tenant,
                    query_vector=vector,
                    queued=time.perf_counter(),
                )
                call = slot.submit(search)
                candidates, timings = await asyncio.wrap_future(call)
        except TimeoutError:
            if call is not None and not call.done():
                # Running (a queued one was just cancelled, unrun): abandoned. Collect its
                # outcome, or a store failure later would go unreported.
                call.add_done_callback(_report_abandoned)
            return RetrievalResult(
                status="timeout",
                took_ms=_ms(started),
                detail=f"retrieval exceeded {s.timeout_s:.1f} s",
            )
        except asyncio.CancelledError:
            cancelled = True
            raise
        except Exception as exc:  # any store/model failure becomes a status, by design
            return RetrievalResult(
                status="error", took_ms=_ms(started), detail=f"{type(exc).__name__}: {exc}"
            )
        finally:
            slot.release(cancelled=cancelled)
        # In the order they happened (traces lay the steps out so): the question's vector (its
        # batch included; the BM25 query, encoded on the worker, is counted with it), the wait
        # for a store worker, then the worker's steps.
        steps = {"embed": embed_ms + timings.pop("embed", 0.0), "queue": timings.pop("queue", 0.0)}
        status: RetrievalStatus = "ok" if candidates else "empty"
        return RetrievalResult(
            status=status, candidates=candidates, took_ms=_ms(started), timings_ms=steps | timings
        )

    def _question_batcher(self) -> EmbeddingBatcher:
        """The batcher ``retrieve`` embeds questions with: the one given, or one of its own
        (made on first use: a retriever only searched with blocking calls needs none)."""
        if self._batcher is None:
            s = self.settings
            self._batcher = EmbeddingBatcher(
                self.embedder, window_s=s.batch_window_ms / 1000, max_batch=s.batch_max
            )
        return self._batcher

    def _queued_search(
        self,
        question: str,
        filters: RetrievalFilters | None,
        limit: int | None,
        *,
        queued: float,
        **options: Any,
    ) -> _Searched:
        """``search`` on a store worker, with the time it waited for one (``queue``)."""
        waited = (time.perf_counter() - queued) * 1000
        candidates, timings = self.search(question, filters, limit, **options)
        timings["queue"] = waited
        return candidates, timings

    def search(
        self,
        question: str,
        filters: RetrievalFilters | None = None,
        limit: int | None = None,
        *,
        mode: RetrieverMode | None = None,
        fusion: FusionName | None = None,
        tenant: str = DEFAULT_TENANT,
        query_vector: np.ndarray | None = None,
    ) -> _Searched:
        """Blocking search: relevant fused candidates of ``tenant``'s and the shared documents,
        and per-step timings. Raises on store faults.

        ``mode`` and ``fusion`` default to the settings' (``retrieval.mode``, ``retrieval.fusion``);
        ``tenant`` to the single-team install's (``kb eval`` searches as it). ``query_vector``:
        the question's embedding when the caller has it already (``retrieve`` batches them).
        """
        judged = self.judge(
            question, filters, limit, mode=mode, fusion=fusion, tenant=tenant, query_vector=query_vector
        )
        relevant: list[ScoredChunk] = list(
            relevant_candidates(
                judged.candidates,
                floor=self.settings.relevance_floor,
                companion_floor=self.settings.companion_floor,
                lexical_alone=judged.lexical_alone,
                min_share=judged.min_share,
            )
        )
        return relevant, judged.timings

    def judge(
        self,
        question: str,
        filters: RetrievalFilters | None = None,
        limit: int | None = None,
        *,
        mode: RetrieverMode | None = None,
        fusion: FusionName | None = None,
        tenant: str = DEFAULT_TENANT,
        query_vector: np.ndarray | None = None,
    ) -> Judged:
        """Blocking: every fused candidate with its calibrated relevance, before the relevance
        floor, and whether the query policy lets a lexical match count alone. ``search`` is this
        with the floor applied; calibration (``bench/noanswer.py``) sweeps the floor over it.
        ``query_vector``: the question's embedding, if the caller has it (else embedded here)."""
        if self.store is None:
            raise ConnectionError("vector store is not open")
        s = self.settings
        mode = mode or s.mode
        strategy = fusion_strategy(fusion or s.fusion, s)
        limit = limit or s.candidates
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if mode == "lexical":
            query_vector = None
        elif query_vector is None:
            query_vector = self.embedder.embed([question])[0]
        sparse = self.lexical.encode_query(question) if mode != "dense" else None
        index_terms = len(sparse) if sparse is not None else 0  # before any expansion
        t1 = time.perf_counter()
        timings["embed"] = (t1 - t0) * 1000
        query_filter = filter_for(filters, tenant=tenant)
        if not self.store.exists():
            timings["search"] = (time.perf_counter() - t1) * 1000
            return Judged(candidates=[], lexical_alone=False, timings=timings)
        if mode == "hybrid" and s.expansion_terms > 0:
            # Expansion reads the sparse vectors of the best ``expansion_docs`` dense hits only.
            dense_hits, _ = self.store.search(
                dense=query_vector,
                sparse=None,
                limit=limit,
                query_filter=query_filter,
                with_sparse=True,
                sparse_limit=s.expansion_docs,
            )
            t_expand = time.perf_counter()
            profile = self._profile(question, index_terms, dense_hits, mode)
            if profile.expand and sparse is not None:
                sparse = self.expand(sparse, dense_hits, tenant=tenant)
            t_lexical = time.perf_counter()
            timings["expand"] = (t_lexical - t_expand) * 1000
            # The points both searches return are fetched once.
            _, lexical_hits = self.store.search(
                dense=None,
                sparse=sparse,
                limit=limit,
                query_filter=query_filter,
                known={hit.record.point_id: hit for hit in dense_hits},
            )
            t2 = time.perf_counter()
            timings["search"] = (t_expand - t1 + t2 - t_lexical) * 1000
        else:
            dense_hits, lexical_hits = self.store.search(
                dense=query_vector, sparse=sparse, limit=limit, query_filter=query_filter
            )
            t2 = time.perf_counter()
            timings["search"] = (t2 - t1) * 1000
            profile = self._profile(question, index_terms, dense_hits, mode)
        fused = fuse(
            dense_hits,
            lexical_hits,
            query_vector,
            strategy=strategy,
            dense_weight=profile.dense_weight,
            # Only the best ``limit`` go on: the union's tail (up to ``limit`` more) is what
            # neither retriever rated, and a long weak tail compresses the min-max relevance
            # the ranking stage's MMR works with.
            limit=limit,
        )
        judged = self._calibrate(fused, sparse, tenant=tenant)
        timings["fuse"] = (time.perf_counter() - t2) * 1000
        return Judged(
            candidates=judged,
            lexical_alone=profile.lexical_alone,
            min_share=0.0 if mode == "lexical" else LEXICAL_ALONE_MIN_SHARE,
            timings=timings,
        )

    def _calibrate(
        self, fused: list[ScoredChunk], query: SparseTerms | None, *, tenant: str
    ) -> list[JudgedChunk]:
        """``fused`` with each chunk's lexical share and calibrated relevance."""
        maximum = 0.0
        if query is not None and len(query) and any(c.lexical_score is not None for c in fused):
            frequencies = self._frequencies(tenant)
            if frequencies is not None:
                maximum = max_lexical_score(query, frequencies.idf, k1=self.lexical.k1)
        judged: list[JudgedChunk] = []
        for chunk in fused:
            share = lexical_share(chunk.lexical_score, maximum)
            judged.append(
                JudgedChunk(
                    record=chunk.record,
                    score=chunk.score,
                    dense_score=chunk.dense_score,
                    lexical_score=chunk.lexical_score,
                    vector=chunk.vector,
                    lexical_share=share,
                    relevance=RELEVANCE_MODEL.relevance(chunk.dense_score, share),
                )
            )
        return judged

    def _frequencies(self, tenant: str) -> DocumentFrequencies | None:
        """The sampled document frequencies of the documents ``tenant`` may see; None (and one
        warning) when they cannot be had: a store error costs expansion and the lexical
        evidence of relevance, never the search."""
        if self.store is None:
            return None
        try:
            sample = _TenantSample(self.store, filter_for(None, tenant=tenant))
            return self.statistics.of(tenant).get(sample)
        except Exception as exc:  # statistics are an optimisation: search on without them
            log.warning("term_statistics_unavailable", error=f"{type(exc).__name__}: {exc}")
            return None

    def _profile(
        self, question: str, index_terms: int, dense_hits: list[SearchHit], mode: RetrieverMode
    ) -> QueryProfile:
        texts = [hit.record.embedding_text() for hit in dense_hits[:_READ_HITS]] if mode == "hybrid" else []
        return profile_query(
            question,
            index_terms=index_terms,
            texts=texts,
            count=(self._batcher or self.embedder).count,  # the batcher remembers counts
            settings=self.settings,
            mode=mode,
        )

    def expand(
        self, query: SparseTerms, dense_hits: list[SearchHit], *, tenant: str = DEFAULT_TENANT
    ) -> SparseTerms:
        """``query`` with the terms that weigh most in the confident dense hits added, weighed by
        the term statistics of the documents ``tenant`` may see.

        Whether a question is expanded at all is the query policy's decision (``QueryProfile``);
        this is the mechanics. Only dense hits with a cosine of at least ``expansion_min_cosine``
        lend terms: in a small knowledge base the ten best hits of an unanswerable question are
        the whole corpus. A store error while sampling term statistics only costs the expansion,
        never the search.
        """
        s = self.settings
        feedback = [
            hit.sparse
            for hit in dense_hits[: s.expansion_docs]
            if hit.sparse is not None and hit.score >= s.expansion_min_cosine
        ]
        if not feedback:
            return query
        frequencies = self._frequencies(tenant)
        if frequencies is None:
            return query
        return expand_query(query, feedback, frequencies, terms=s.expansion_terms, weight=s.expansion_weight)

    async def ping(self) -> None:
        """Check the store answers, on the next free store worker (ahead of queued searches,
        and never refused for a full queue: it is no retrieval). Raises what the store raises,
        ``WorkExpired`` when no worker was free within the retrieval timeout."""
        if self.store is None:
            raise ConnectionError("vector store is not open")
        await asyncio.wrap_future(self.queue.submit(self.store.exists, timeout_s=self.settings.timeout_s))

    def close(self, *, wait_s: float | None = None) -> None:
        """Cancel what waits; wait up to ``wait_s`` (default: the retrieval timeout, the longest
        a retrieval's work should take) for what runs to finish, since a process exiting while
        a thread is inside the model or the store may abort in their native code."""
        budget = self.settings.timeout_s if wait_s is None else wait_s
        until = time.monotonic() + budget
        self.queue.close(wait_s=budget)
        if self._batcher is not None:
            self._batcher.close(wait_s=max(0.0, until - time.monotonic()))


@dataclass(frozen=True, slots=True)
class _TenantSample:
    """The store as ``TermStatistics`` samples it: only the points one tenant may see, so that no
    other tenant's documents weigh in a query's expansion."""

    store: SearchStore
    query_filter: models.Filter

    def sample_sparse(self, limit: int) -> list[SparseTerms]:
        return self.store.sample_sparse(limit, query_filter=self.query_filter)


class _StatisticsByTenant:
    """One ``TermStatistics`` per tenant, the most recently used ``_STATISTICS_TENANTS`` of them.
    Thread-safe: retrieval workers share it."""

    def __init__(self, settings: RetrievalSettings) -> None:
        self._settings = settings
        self._by_tenant: OrderedDict[str, TermStatistics] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, tenant: str) -> TermStatistics:
        with self._lock:
            statistics = self._by_tenant.get(tenant)
            if statistics is None:
                statistics = TermStatistics(
                    sample_size=self._settings.statistics_sample, ttl_s=self._settings.statistics_ttl_s
                )
                self._by_tenant[tenant] = statistics
                if len(self._by_tenant) > _STATISTICS_TENANTS:
                    self._by_tenant.popitem(last=False)
            else:
                self._by_tenant.move_to_end(tenant)
            return statistics


def _report_abandoned(call: Future[_Searched]) -> None:
    """Collect the outcome of a store call nobody waits for any more; log its failure once."""
    if call.cancelled():
        return
    exc = call.exception()
    if exc is not None:
        log.warning("abandoned_retrieval_failed", error=f"{type(exc).__name__}: {exc}")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
